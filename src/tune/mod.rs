//! Hyperparameter search (issue 31, first half): the `search:` section ([`config`]), its space
//! in Hydra's sweeper syntax ([`space`]), seeded samplers (`random`, `grid`, and Optuna's TPE
//! in [`tpe`] over [`parzen`] estimators), and Optuna's median pruner ([`pruner`]). Nothing here
//! runs a model: the runner feeds trials in and takes suggestions out (docs/tuning.md).
//!
//! This module sits below `spec` and imports nothing of it: the spec composes `SearchConfig`
//! and passes its own dotted keys to [`space::Space::check_keys`].

pub mod config;
mod erf;
pub mod parzen;
pub mod prune_file;
pub mod pruner;
pub mod role;
pub mod sampler;
pub mod space;
pub mod tpe;
pub mod trial;
pub mod truncnorm;

pub use config::{PruningConfig, Search, SearchConfig};
pub use prune_file::PruneFile;
pub use pruner::MedianPruner;
pub use role::Tuning;
pub use sampler::{Params, Sampler, SamplerConfig};
pub use space::{Domain, Space, Value};
pub use trial::{Direction, State, Trial};
