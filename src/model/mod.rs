//! The network of MODEL.md, one file per block, assembled in `network.rs`.

pub mod aggregate_attention;
pub mod batch_norm;
pub mod config;
pub mod image_encoder;
pub mod neighbourhood_cnn;
pub mod network;
pub mod poi_encoder;
pub mod regressor;
pub mod se;
pub mod tabular_encoder;
pub mod token_attention;

pub use config::{InputShapes, Modality, ModelConfig};
pub use network::{BatchLayout, OpenCarbon, Output, TileBatch};
