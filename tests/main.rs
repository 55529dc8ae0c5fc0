//! Every integration test, as modules of one test binary (`cargo test --test integration`).
//!
//! One binary, not one per file: each test binary links all of burn and polars (about 700 MB
//! with line tables), so twenty of them cost minutes of linking and gigabytes of disk per
//! backend. Select a file's tests by module path: `cargo test --test integration parity::`.

mod common;

mod blocks;
mod build_sharing;
mod conclusions;
mod conformal;
mod data;
mod docs;
mod ensembles;
mod experiment;
// The vendored burn-flex's kernels (only in builds with flex): BatchNorm, convolutions.
#[cfg(feature = "flex")]
mod flex_batch_norm;
#[cfg(feature = "flex")]
mod flex_kernels;
#[cfg(feature = "flex")]
mod flex_pool;
mod fuzz;
mod gbt_reference;
mod kernels;
mod launch;
mod layers;
mod mlflow;
mod nested_search;
mod opencarbon_release;
mod parity;
mod predict;
mod predict_baselines;
mod provenance;
mod reliability;
mod report;
mod resume;
mod spec;
mod stats;
mod training;
mod transfer;
mod trust;
mod tuning;
mod variogram;
