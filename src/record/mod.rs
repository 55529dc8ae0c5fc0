//! The run record: what a finished run leaves behind and what every table is built from.
//!
//! A run directory (`<experiment>/runs/<id>/`) holds the full record: resolved spec, `meta.json`,
//! `test_metrics.json`, `split.csv`, per-epoch `metrics.csv`, `predictions.csv`, checkpoints,
//! TensorBoard events. [`state`] says whether such a directory is a finished run that can be
//! trusted. [`archive`] keeps the part the tables and the report need, compactly, in
//! `<experiment>/records/` (Parquet, committed beside the tables), so that a fresh clone rebuilds
//! every committed table byte for byte, and the report, without the run directories.

use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;

pub mod archive;
pub mod predictions;
pub mod state;

/// `test_metrics.json`: the test metrics of the best-validation checkpoint, and how it was chosen.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestMetrics {
    pub r2: f64,
    pub rmse: f64,
    pub mae: f64,
    pub mape: f64,
    pub n: usize,
    pub best_epoch: usize,
    pub valid: Metrics,
    pub epochs_run: usize,
    pub stopped_early: bool,
    /// Stopped by a search's pruner (a trial run, issue 31); left out of the file otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pruned: bool,
    pub train_seconds: f64,
}

impl TestMetrics {
    /// The test value of `metric` (`r2`, `rmse`, `mae`, else `mape`).
    pub fn value(&self, metric: &str) -> f64 {
        match metric {
            "r2" => self.r2,
            "rmse" => self.rmse,
            "mae" => self.mae,
            _ => self.mape,
        }
    }
}
