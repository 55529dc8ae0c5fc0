//! `meta.json`: what produced a run (code version, backend, device, seed, timing, status) and
//! what its floats depend on (the binary's commit, CPU/GPU, threads, numerics environment, data).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::backend::DeviceChoice;

/// Environment variables that change a run's numbers; every meta.json records each one's value
/// (`(unset)` when unset). A variable added anywhere that changes computation belongs here.
pub const NUMERICS_ENV: &[&str] = &[
    // `burn`: burn's Adam update instead of the fused one (libtorch or flex; src/train/adam).
    "OPENCARBON_ADAM",
    // `burn`: burn's convolution routes instead of libtorch's kernels (vendor/burn-tch) or flex's
    // gemm kernels (vendor/burn-flex).
    "OPENCARBON_CONV_GRAD",
    // `burn`: burn's BatchNorm arithmetic instead of libtorch's fused kernels (vendor/burn-tch).
    "OPENCARBON_TCH_BATCH_NORM",
    // `burn`: burn's BatchNorm compositions instead of flex's fused kernels (vendor/burn-flex).
    "OPENCARBON_FLEX_BATCH_NORM",
    // Fault injection (src/fault.rs): `nan:batch` poisons a training batch.
    "OPENCARBON_FAULT",
    // rayon's pool (flex's kernels, data preparation, baselines): how parallel sums are split.
    "RAYON_NUM_THREADS",
    // libtorch's CPU intra-op threads, and MKL's under it: the order of reductions.
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    // `0` turns TF32 off on CUDA whatever `--precision` asks.
    "NVIDIA_TF32_OVERRIDE",
    // cuBLAS's workspaces: set, its reductions are deterministic.
    "CUBLAS_WORKSPACE_CONFIG",
    // Which physical GPU `cuda:N` is.
    "CUDA_VISIBLE_DEVICES",
];

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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
    /// running | done | failed | preempted (stopped by a signal after a resumable checkpoint)
    pub status: String,
    pub failure: Option<String>,
    pub epochs_run: Option<usize>,
    pub best_epoch: Option<usize>,
    pub train_seconds: Option<f64>,
    /// The commit the binary was built from and whether its sources differed from it (build.rs);
    /// `git_commit` is the working directory's. Absent in older runs, as is everything below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_dirty: Option<bool>,
    /// Both commits known and different: the code that ran is not the checkout's.
    #[serde(default)]
    pub commit_mismatch: bool,
    /// CPU model (another CPU gives other floats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// CUDA device name, on CUDA runs only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
    /// rayon's threads (flex's kernels, data preparation, baselines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// libtorch's intra-op threads, on libtorch backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub libtorch_threads: Option<usize>,
    /// [`NUMERICS_ENV`] as the run saw it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub numerics: BTreeMap<String, String>,
    /// Content hashes of the data read (`data::fingerprint`): path → SHA-256.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Where this attempt continued an earlier one's resumable checkpoint (`train::resume`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<String>,
    /// Resumable checkpoints this attempt wrote and their wall time (`[count, seconds]`): what
    /// checkpointing cost (`scripts/bench-checkpoint.sh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<(usize, f64)>,
}

impl RunMeta {
    /// Fills in what the run's numbers depend on, apart from its data (hashed once it is loaded).
    pub fn record_provenance(&mut self, device: &DeviceChoice) {
        let (commit, dirty) = build_state();
        self.commit_mismatch = matches!((&commit, &self.git_commit), (Some(b), Some(w)) if b != w);
        self.build_commit = commit;
        self.build_dirty = dirty;
        self.cpu = cpu_model();
        self.gpu = gpu_name(device);
        self.threads = Some(rayon::current_num_threads());
        self.libtorch_threads = libtorch_threads(device);
        self.numerics = numerics_env();
    }
}

/// The variables of [`NUMERICS_ENV`] with their values, `(unset)` for those not set.
pub fn numerics_env() -> BTreeMap<String, String> {
    NUMERICS_ENV
        .iter()
        .map(|&name| {
            let value = std::env::var(name).unwrap_or_else(|_| "(unset)".into());
            (name.to_string(), value)
        })
        .collect()
}

/// (commit, dirty) the binary was built from (build.rs), if it was built in a git checkout.
pub fn build_state() -> (Option<String>, Option<bool>) {
    let commit = env!("OPENCARBON_BUILD_COMMIT");
    let dirty = env!("OPENCARBON_BUILD_DIRTY");
    (
        (commit != "unknown").then(|| commit.to_string()),
        dirty.parse().ok(),
    )
}

/// The CPU's model name from /proc/cpuinfo (Linux x86; `None` where it has none).
pub fn cpu_model() -> Option<String> {
    cpuinfo_field(
        &std::fs::read_to_string("/proc/cpuinfo").ok()?,
        "model name",
    )
}

/// The first value of `name` in the text of /proc/cpuinfo.
pub fn cpuinfo_field(cpuinfo: &str, name: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim().to_string())
    })
}

/// The CUDA device's name, from `nvidia-smi` (libtorch's C API has no such query); `None` off CUDA.
/// CUDA numbers the visible devices, nvidia-smi all of them: the index goes through
/// `CUDA_VISIBLE_DEVICES` (indices or UUIDs, both of which `-i` takes).
pub fn gpu_name(device: &DeviceChoice) -> Option<String> {
    let DeviceChoice::Cuda(index) = device else {
        return None;
    };
    let physical = match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(list) => list.split(',').nth(*index)?.trim().to_string(),
        Err(_) => index.to_string(),
    };
    let output = Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader", "-i", &physical])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let name = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (!name.is_empty()).then_some(name)
}

/// libtorch's intra-op thread count, on the libtorch backends.
fn libtorch_threads(device: &DeviceChoice) -> Option<usize> {
    #[cfg(feature = "tch")]
    {
        if crate::backend::backend_name(device) != "flex" {
            return usize::try_from(tch::get_num_threads()).ok();
        }
    }
    let _ = device;
    None
}

/// Whether the data a done run recorded (`data`) has changed on disk since: the first such file.
/// Kept out of `resume::check`, which the tables call on every run: this reads every data file.
/// A run recorded before data hashes (or with an unreadable meta.json) is never stale.
pub fn data_changed(run_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(run_dir.join("meta.json")).ok()?;
    let meta: RunMeta = serde_json::from_str(&text).ok()?;
    crate::data::fingerprint::changed(&meta.data)
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

#[cfg(test)]
mod tests {
    use super::cpuinfo_field;

    #[test]
    fn cpuinfo_fields_are_the_first_processors() {
        let info = "processor\t: 0\ncpu family\t: 6\nmodel\t\t: 167\nmodel name\t: Intel(R) Xeon(R)\n\nprocessor\t: 1\nmodel\t\t: 1\n";
        assert_eq!(cpuinfo_field(info, "model").as_deref(), Some("167"));
        assert_eq!(
            cpuinfo_field(info, "model name").as_deref(),
            Some("Intel(R) Xeon(R)")
        );
        assert_eq!(cpuinfo_field(info, "flags"), None);
    }
}
