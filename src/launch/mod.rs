//! How a sweep's runs are run: one after another in this process (`local`, the default), as N
//! processes at once (`local` with `--jobs N`), or as a Slurm job array (`slurm`). Both parallel
//! launchers hand each worker one run through a *manifest* (the pending run ids, one per line, in
//! run-id order) and `run --manifest FILE --task I`; a worker takes its run's lock, so two workers
//! never train one run, and skips a run that is already done, so re-launching runs only what is
//! missing. The summary, comparison and report are rebuilt from finished runs only, afterwards.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::record::state as resume;
use crate::spec::Experiment;
use crate::track::atomic;

pub mod cli;
pub mod local;
pub mod search;
mod sequential;
pub mod slurm;
pub mod status;
mod sweep;

pub use crate::spec::launcher::{LauncherConfig, LauncherKind, SlurmConfig};
pub use sequential::run_sweep;
pub use sweep::{finish, run_task, table_options, write_tables, Sweep, Tally};

/// How a worker process is started: the program, and the `run` options every worker repeats.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub program: PathBuf,
    pub spec: PathBuf,
    pub out: PathBuf,
    pub overrides: Vec<String>,
    pub device: String,
    pub precision: String,
}

impl Invocation {
    /// `run SPEC --out OUT --manifest M --task I --quiet --no-report ...` (absolute paths, so
    /// that a worker may start in another directory).
    pub fn task_args(&self, manifest: &Path, task: &str) -> Vec<String> {
        let mut args = vec![
            "run".to_string(),
            self.spec.display().to_string(),
            "--out".into(),
            self.out.display().to_string(),
            "--manifest".into(),
            manifest.display().to_string(),
            "--task".into(),
            task.to_string(),
            "--quiet".into(),
            "--no-report".into(),
            "--device".into(),
            self.device.clone(),
            "--precision".into(),
            self.precision.clone(),
        ];
        for o in &self.overrides {
            args.push("--set".into());
            args.push(o.clone());
        }
        args
    }
}

/// An absolute form of `path` (relative to the current directory), without touching the disk.
pub fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("reading the current directory")?
        .join(path))
}

/// The runs of `experiment` (after `--only`) that are not done under `out`, in run-id order.
pub fn pending(experiment: &Experiment, out: &Path, only: &[(String, String)]) -> Vec<String> {
    let mut ids: Vec<String> = experiment
        .runs
        .iter()
        .filter(|r| r.matches(only))
        .filter(|r| {
            let dir = out.join("runs").join(r.run_id());
            match resume::check(&dir, Some(r)) {
                resume::State::Done(_) => crate::track::meta::data_changed(&dir).is_some(),
                _ => true,
            }
        })
        .map(|r| r.run_id())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

const MANIFEST_HEADER: &str = "# opencarbon manifest: one run id per line; task i runs line i";

/// Writes a manifest (atomically).
pub fn write_manifest(path: &Path, ids: &[String]) -> Result<()> {
    let mut text = format!("{MANIFEST_HEADER}\n");
    for id in ids {
        text.push_str(id);
        text.push('\n');
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    atomic::write(path, text.as_bytes())
}

/// The run ids of a manifest.
pub fn read_manifest(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading manifest {}", path.display()))?;
    let mut lines = text.lines();
    if lines.next() != Some(MANIFEST_HEADER) {
        bail!(
            "{}: not an opencarbon manifest (its first line differs)",
            path.display()
        );
    }
    let ids: Vec<String> = lines
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    for (i, id) in ids.iter().enumerate() {
        if !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!("{} line {}: `{id}` is not a run id", path.display(), i + 2);
        }
    }
    Ok(ids)
}

/// Quotes `s` for a POSIX shell (single quotes; an embedded quote becomes '\'').
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_quotes_spaces_and_expansions() {
        assert_eq!(shell_quote("train.lr=5e-4"), "train.lr=5e-4");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("$HOME`x`"), "'$HOME`x`'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn a_manifest_reads_back_and_a_foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.txt");
        let ids = vec!["s1-abc".to_string(), "s2-f0-def".to_string()];
        write_manifest(&path, &ids).unwrap();
        assert_eq!(read_manifest(&path).unwrap(), ids);
        std::fs::write(&path, "s1-abc\n").unwrap();
        assert!(format!("{:#}", read_manifest(&path).unwrap_err())
            .contains("not an opencarbon manifest"));
        std::fs::write(&path, format!("{MANIFEST_HEADER}\nok\n$(rm -rf x)\n")).unwrap();
        assert!(format!("{:#}", read_manifest(&path).unwrap_err()).contains("line 3"));
    }

    #[test]
    fn slurm_values_that_would_break_the_script_are_refused() {
        let ok = SlurmConfig {
            partition: Some("gpu".into()),
            time: Some("1:00:00".into()),
            ..Default::default()
        };
        ok.check().unwrap();
        let bad = SlurmConfig {
            partition: Some("gpu; rm -rf /".into()),
            ..Default::default()
        };
        assert!(format!("{:#}", bad.check().unwrap_err()).contains("launcher.slurm.partition"));
        let bad = SlurmConfig {
            sbatch: vec!["qos=long".into()],
            ..Default::default()
        };
        assert!(bad.check().is_err());
    }
}
