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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Seconds before a task's time limit at which Slurm sends it SIGUSR1
    /// (`#SBATCH --signal=B:USR1@<s>`): the run checkpoints, requeues its task and resumes in
    /// the next attempt. Default [`DEFAULT_SIGNAL_GRACE`]; 0: no warning signal.
    #[serde(default = "default_signal_grace")]
    pub signal_grace: u32,
}

impl Default for SlurmConfig {
    fn default() -> Self {
        SlurmConfig {
            partition: None,
            time: None,
            cpus_per_task: None,
            mem: None,
            gpus: None,
            account: None,
            max_parallel: None,
            sbatch: Vec::new(),
            setup: Vec::new(),
            signal_grace: DEFAULT_SIGNAL_GRACE,
        }
    }
}

fn default_signal_grace() -> u32 {
    DEFAULT_SIGNAL_GRACE
}

/// `launcher.slurm.signal_grace` when the spec leaves it out, in seconds.
pub const DEFAULT_SIGNAL_GRACE: u32 = 120;
/// The most Slurm accepts for `--signal=…@<s>` (a 16-bit field).
const MAX_SIGNAL_GRACE: u32 = 65535;

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
        if self.signal_grace > MAX_SIGNAL_GRACE {
            bail!(
                "launcher.slurm.signal_grace: {} s is more than Slurm accepts ({MAX_SIGNAL_GRACE}); \
                 0 turns the warning signal off",
                self.signal_grace
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_grace_defaults_to_120_s_and_is_bounded() {
        let config: LauncherConfig =
            serde_norway::from_str("kind: slurm\nslurm: {time: '1:00:00'}\n").unwrap();
        assert_eq!(config.slurm.signal_grace, DEFAULT_SIGNAL_GRACE);
        assert_eq!(
            LauncherConfig::default().slurm.signal_grace,
            DEFAULT_SIGNAL_GRACE
        );
        config.slurm.check().unwrap();
        let config: LauncherConfig = serde_norway::from_str("slurm: {signal_grace: 0}\n").unwrap();
        assert_eq!(config.slurm.signal_grace, 0);
        config.slurm.check().unwrap();
        let too_long = SlurmConfig {
            signal_grace: 70_000,
            ..Default::default()
        };
        let error = format!("{:#}", too_long.check().unwrap_err());
        assert!(error.contains("launcher.slurm.signal_grace"), "{error}");
        assert!(serde_norway::from_str::<LauncherConfig>("slurm: {signal_grace: -1}\n").is_err());
    }
}
