//! Cities as data: the tile store, synthetic cities, splits, neighbourhoods and batches.

pub mod batch;
pub mod canonical;
pub mod city;
pub mod csv;
pub mod dataset;
pub mod fingerprint;
pub mod load;
pub mod neighbourhood;
pub mod normalize;
pub mod odiac;
pub mod preview;
pub mod root;
pub mod split;
pub mod synthetic;
pub mod tile_reader;
pub mod union;
pub mod variogram;

pub use batch::{BatchPlan, DeviceTiles, Standardizer};
pub use city::{City, ImageStack, PoiStack, Tabular, TileKey};
pub use dataset::{DatasetSpec, NamedDataset};
pub use load::{load_city, CityOptions};
pub use neighbourhood::NeighbourIndex;
pub use split::{InnerFold, Split, SplitConfig};
