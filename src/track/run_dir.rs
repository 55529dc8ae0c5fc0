//! The run directory of DESIGN.md:
//! `spec.resolved.yaml`, `meta.json`, `metrics.csv`, `tb/` (TensorBoard), `checkpoints/best.*`,
//! `predictions.csv`, and `test_metrics.json`, whose existence marks the run as done (checked by
//! `record::state` before it is trusted).

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;

use super::atomic;

pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    pub fn create(path: PathBuf) -> Result<Self> {
        fs::create_dir_all(path.join("checkpoints"))
            .with_context(|| format!("creating run directory {}", path.display()))?;
        Ok(Self { path })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn tensorboard_dir(&self) -> PathBuf {
        self.path.join("tb")
    }

    pub fn best_checkpoint(&self) -> PathBuf {
        self.path.join("checkpoints").join("best.safetensors")
    }

    /// Writes `name` atomically (see [`atomic::write`]), so a killed run never leaves a
    /// half-written file that looks finished.
    pub fn write_atomic(&self, name: &str, contents: &[u8]) -> Result<()> {
        atomic::write(&self.file(name), contents)
    }

    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let mut text = serde_json::to_string_pretty(value)?;
        text.push('\n');
        self.write_atomic(name, text.as_bytes())
    }
}
