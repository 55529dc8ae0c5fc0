//! Training: configuration, losses, the loop, evaluation and checkpoints.

pub mod adam;
pub mod config;
pub mod loss;
pub mod normalization;
pub mod order;
pub mod resume;
pub mod trainer;

pub use config::TrainConfig;
pub use trainer::{evaluate, fine_tune, fit, predict, train, Hooks, Prepared, TrainReport};
