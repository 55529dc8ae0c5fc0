//! The `launcher:` section of an experiment: how its runs are launched (`launch` reads it). It
//! lives here, not in `launch`, because `launch` runs experiments and so sits above `spec`.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// `launcher:` in a spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LauncherConfig {
    /// local (default) or slurm.
    #[serde(default)]
    pub kind: LauncherKind,
    /// Runs at once under the local launcher (default 1: in this process, one after another).
    pub jobs: Option<usize>,
    #[serde(default)]
    pub slurm: SlurmConfig,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LauncherKind {
    #[default]
    Local,
    Slurm,
}

/// `launcher.slurm`: what each array task asks Slurm for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    pub partition: Option<String>,
    /// Wall-time limit per task, in Slurm's syntax (`30`, `1:00:00`, `1-00:00:00`).
    pub time: Option<String>,
    pub cpus_per_task: Option<u32>,
    /// Memory per task (`8G`).
    pub mem: Option<String>,
    /// GPUs per task (`--gres=gpu:N`); run with `--device cuda` to use them.
    pub gpus: Option<u32>,
    pub account: Option<String>,
    /// Array tasks running at once (`%M`).
    pub max_parallel: Option<usize>,
    /// Further `#SBATCH` options, each as on the command line (`--qos=long`).
    #[serde(default)]
    pub sbatch: Vec<String>,
    /// Shell lines run before each task and the finishing job (`module load cuda/12.4`).
    #[serde(default)]
    pub setup: Vec<String>,
}

impl SlurmConfig {
    /// Rejects values that would break the generated script.
    pub fn check(&self) -> Result<()> {
        let fields = [
            ("partition", &self.partition),
            ("time", &self.time),
            ("mem", &self.mem),
            ("account", &self.account),
        ];
        for (key, value) in fields {
            if let Some(v) = value {
                if v.is_empty()
                    || !v
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.:,".contains(c))
                {
                    bail!("launcher.slurm.{key}: `{v}` is not a valid Slurm value");
                }
            }
        }
        for line in self.sbatch.iter().chain(&self.setup) {
            if line.contains('\n') || line.contains('\r') {
                bail!(
                    "launcher.slurm: `{}` spans lines; give one line per entry",
                    line.escape_debug()
                );
            }
        }
        for line in &self.sbatch {
            if !line.starts_with('-') {
                bail!(
                    "launcher.slurm.sbatch: `{line}` is not an option (expected e.g. `--qos=long`)"
                );
            }
        }
        if self.max_parallel == Some(0) {
            bail!("launcher.slurm.max_parallel must be at least 1");
        }
        Ok(())
    }
}
