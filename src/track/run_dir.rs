//! The run directory of DESIGN.md:
//! `spec.resolved.yaml`, `meta.json`, `metrics.csv`, `tb/` (TensorBoard), `checkpoints/best.*`,
//! `predictions.csv`, and `test_metrics.json`, whose existence means the run is done.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

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

    /// A run is done when its test metrics exist.
    pub fn is_done(path: &Path) -> bool {
        path.join("test_metrics.json").exists()
    }

    /// Writes `name` atomically (temporary file, then rename), so a killed run never leaves a
    /// half-written file that looks finished.
    pub fn write_atomic(&self, name: &str, contents: &[u8]) -> Result<()> {
        let target = self.file(name);
        let tmp = self.file(&format!(".{name}.tmp"));
        fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &target)
            .with_context(|| format!("renaming {} to {}", tmp.display(), target.display()))?;
        Ok(())
    }

    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let mut text = serde_json::to_string_pretty(value)?;
        text.push('\n');
        self.write_atomic(name, text.as_bytes())
    }
}
