//! `opencarbon status results/<exp>`: each run done, failed (with why), running (who holds it),
//! pending, preempted (stopped by a signal after a resumable checkpoint) or requeued (Slurm runs
//! its task again), and from where a resumed run went on; from the run directories, the
//! launchers' manifests and, where the experiment was submitted to Slurm and Slurm still knows the
//! jobs, `scontrol`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::{read_manifest, slurm};
use crate::record::state as resume;
use crate::track::{lock, meta::RunMeta};

#[derive(clap::Args)]
pub struct StatusArgs {
    /// Experiment directory (results/<name>)
    dir: PathBuf,
    /// Exit non-zero unless every run of this manifest is done (the Slurm finishing job uses it)
    #[arg(long, value_name = "MANIFEST")]
    require_done: Option<PathBuf>,
    /// Do not ask Slurm (only the run directories)
    #[arg(long)]
    no_slurm: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunStatus {
    pub run_id: String,
    /// done | failed | running | pending | preempted (stopped by a signal after a resumable
    /// checkpoint: it resumes when launched again) | requeued (Slurm runs its task again)
    pub state: &'static str,
    pub detail: String,
}

/// Slurm states of a task that ended without finishing its run.
const SLURM_ENDED: [&str; 8] = [
    "CANCELLED",
    "FAILED",
    "TIMEOUT",
    "NODE_FAIL",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
    "OUT_OF_MEMORY",
];

/// The state of one run from its directory alone.
pub fn from_disk(run_dir: &Path) -> RunStatus {
    let run_id = run_dir
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    let meta = || {
        std::fs::read_to_string(run_dir.join("meta.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<RunMeta>(&t).ok())
    };
    let (state, mut detail) = match resume::check(run_dir, None) {
        resume::State::Done(m) => ("done", format!("test R² {:.4}", m.r2)),
        resume::State::Broken(why) => ("failed", format!("not trusted: {why}")),
        resume::State::NotDone(status) => match lock::holder(run_dir) {
            Some(holder) => ("running", holder),
            None if status == "failed" => {
                let why = meta()
                    .and_then(|m| m.failure)
                    .unwrap_or_else(|| "see meta.json".into());
                ("failed", why)
            }
            None if status == "preempted" => {
                let why = meta().and_then(|m| m.failure).unwrap_or_else(|| {
                    "stopped by a signal; it resumes from its checkpoint".into()
                });
                ("preempted", why)
            }
            None if status == "running" => {
                ("failed", "interrupted (its process died mid-run)".into())
            }
            None if run_dir.exists() => ("pending", format!("not finished ({status})")),
            None => ("pending", "not started".into()),
        },
    };
    if let Some(at) = meta().and_then(|m| m.resumed_from) {
        detail.push_str(&format!("; resumed from {at}"));
    }
    RunStatus {
        run_id,
        state,
        detail,
    }
}

/// Every run the experiment directory knows of: run directories and manifest entries.
pub fn collect(dir: &Path, ask_slurm: bool) -> Result<Vec<RunStatus>> {
    let mut ids: Vec<String> = std::fs::read_dir(dir.join("runs"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let local = dir.join("launch").join("manifest.txt");
    if local.exists() {
        ids.extend(read_manifest(&local)?);
    }
    let submissions = slurm::submissions(dir)?;
    // Slurm's word on each run: the latest array task that ran it, and how to say it.
    let mut from_slurm: BTreeMap<String, (slurm::JobState, String)> = BTreeMap::new();
    for s in &submissions {
        let manifest = read_manifest(&s.manifest)?;
        ids.extend(manifest.iter().cloned());
        if !ask_slurm {
            continue;
        }
        match slurm::job_states(&s.array_job) {
            Ok(states) => {
                for t in states {
                    if let Some(id) = t.array_task.and_then(|i| manifest.get(i)) {
                        let mut text = format!(
                            "slurm {}_{}: {}",
                            s.array_job,
                            t.array_task.unwrap_or(0),
                            t.state
                        );
                        if t.exit_code != "0:0" && !t.exit_code.is_empty() {
                            text.push_str(&format!(", exit {}", t.exit_code));
                        }
                        if !t.reason.is_empty() && t.reason != "None" {
                            text.push_str(&format!(", {}", t.reason));
                        }
                        if t.restarts > 0 {
                            text.push_str(&format!(", requeued {}×", t.restarts));
                        }
                        from_slurm.insert(id.clone(), (t, text));
                    }
                }
            }
            Err(e) => eprintln!(
                "warning: could not ask Slurm about job {}: {e:#}",
                s.array_job
            ),
        }
    }
    ids.sort();
    ids.dedup();
    Ok(ids
        .into_iter()
        .map(|id| {
            let mut status = from_disk(&dir.join("runs").join(&id));
            if let Some((task, text)) = from_slurm.get(&id) {
                if status.state != "done" {
                    let ended = SLURM_ENDED.contains(&task.state.as_str());
                    if task.state == "RUNNING" {
                        status.state = "running";
                    } else if task.requeued() {
                        status.state = "requeued";
                    } else if task.state == "PENDING" {
                        status.state = "pending";
                    } else if task.state == "PREEMPTED" || (ended && status.state == "preempted") {
                        // Stopped, not broken: submitting again resumes it from its checkpoint.
                        status.state = "preempted";
                    } else if ended {
                        status.state = "failed";
                    }
                }
                status.detail = format!("{}; {text}", status.detail);
            }
            status
        })
        .collect())
}

pub fn main(args: StatusArgs) -> Result<()> {
    if !args.dir.is_dir() {
        bail!("{}: no such experiment directory", args.dir.display());
    }
    let runs = collect(
        &args.dir,
        !args.no_slurm && !slurm::submissions(&args.dir)?.is_empty(),
    )?;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &runs {
        *counts.entry(r.state).or_default() += 1;
        println!("{:<24} {:<9} {}", r.run_id, r.state, r.detail);
    }
    let count = |s: &str| counts.get(s).copied().unwrap_or(0);
    let mut line: Vec<String> = ["done", "failed", "running", "pending"]
        .iter()
        .map(|s| format!("{} {s}", count(s)))
        .collect();
    // Only where there are some: a local sweep is rarely preempted and never requeued.
    for s in ["preempted", "requeued"] {
        if count(s) > 0 {
            line.push(format!("{} {s}", count(s)));
        }
    }
    println!("{}: {}", args.dir.display(), line.join(", "));
    if let Some(manifest) = &args.require_done {
        let wanted = read_manifest(manifest)?;
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|id| from_disk(&args.dir.join("runs").join(id)).state != "done")
            .collect();
        if !missing.is_empty() {
            bail!(
                "{} of {} runs of {} are not done: {}",
                missing.len(),
                wanted.len(),
                manifest.display(),
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preempted_run_is_not_a_failed_one_and_a_resumed_one_says_from_where() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("s1-abc");
        std::fs::create_dir_all(&run).unwrap();
        let write = |meta: &RunMeta| {
            std::fs::write(run.join("meta.json"), serde_json::to_string(meta).unwrap()).unwrap()
        };
        write(&RunMeta {
            status: "preempted".into(),
            failure: Some("preempted by SIGTERM at epoch 3, batch 2".into()),
            resumed_from: Some("epoch 2, batch 1".into()),
            ..Default::default()
        });
        let s = from_disk(&run);
        assert_eq!(s.state, "preempted", "{s:?}");
        assert!(s.detail.contains("by SIGTERM at epoch 3"), "{s:?}");
        assert!(
            s.detail.ends_with("; resumed from epoch 2, batch 1"),
            "{s:?}"
        );
        write(&RunMeta {
            status: "failed".into(),
            failure: Some("out of memory".into()),
            ..Default::default()
        });
        let s = from_disk(&run);
        assert_eq!((s.state, s.detail.as_str()), ("failed", "out of memory"));
    }
}
