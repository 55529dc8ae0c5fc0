//! `meta.json`: what produced a run (code version, backend, device, seed, timing, status).

use std::process::Command;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMeta {
    pub run_id: String,
    pub git_commit: Option<String>,
    pub git_dirty: Option<bool>,
    pub opencarbon_version: String,
    pub burn_version: String,
    pub polars_version: String,
    pub tensorboard_rs_version: String,
    pub backend: String,
    pub device: String,
    pub libtorch_version: Option<String>,
    /// Float32 arithmetic on CUDA (`default`, `fp32` or `tf32`); absent in older runs.
    #[serde(default)]
    pub precision: crate::backend::Precision,
    pub seed: u64,
    pub started: String,
    pub finished: Option<String>,
    /// running | done | failed
    pub status: String,
    pub failure: Option<String>,
    pub epochs_run: Option<usize>,
    pub best_epoch: Option<usize>,
    pub train_seconds: Option<f64>,
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// (commit, dirty) of the working tree the binary runs in, if it is a git checkout.
pub fn git_state() -> (Option<String>, Option<bool>) {
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = run(&["rev-parse", "HEAD"]);
    let dirty = commit
        .as_ref()
        .and_then(|_| run(&["status", "--porcelain", "--untracked-files=no"]))
        .map(|s| !s.is_empty());
    (commit, dirty)
}
