//! `opencarbon status results/<exp>`: each run done, failed (with why), running (who holds it)
//! or pending, from the run directories, the launchers' manifests and, where the experiment was
//! submitted to Slurm and Slurm still knows the jobs, `scontrol`.

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
    /// done | failed | running | pending
    pub state: &'static str,
    pub detail: String,
}

/// The state of one run from its directory alone.
pub fn from_disk(run_dir: &Path) -> RunStatus {
    let run_id = run_dir
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    let (state, detail) = match resume::check(run_dir, None) {
        resume::State::Done(m) => ("done", format!("test R² {:.4}", m.r2)),
        resume::State::Broken(why) => ("failed", format!("not trusted: {why}")),
        resume::State::NotDone(status) => match lock::holder(run_dir) {
            Some(holder) => ("running", holder),
            None if status == "failed" => {
                let why = std::fs::read_to_string(run_dir.join("meta.json"))
                    .ok()
                    .and_then(|t| serde_json::from_str::<RunMeta>(&t).ok())
                    .and_then(|m| m.failure)
                    .unwrap_or_else(|| "see meta.json".into());
                ("failed", why)
            }
            None if status == "running" => {
                ("failed", "interrupted (its process died mid-run)".into())
            }
            None if run_dir.exists() => ("pending", format!("not finished ({status})")),
            None => ("pending", "not started".into()),
        },
    };
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
    // Slurm's word on each run: the state of the latest array task that ran it.
    let mut from_slurm: BTreeMap<String, String> = BTreeMap::new();
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
                        from_slurm.insert(id.clone(), text);
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
            if let Some(s) = from_slurm.get(&id) {
                if status.state != "done" {
                    if s.contains(": RUNNING") {
                        status.state = "running";
                    } else if s.contains(": PENDING") {
                        status.state = "pending";
                    } else if [
                        "CANCELLED",
                        "FAILED",
                        "TIMEOUT",
                        "NODE_FAIL",
                        "PREEMPTED",
                        "OUT_OF_MEMORY",
                    ]
                    .iter()
                    .any(|f| s.contains(f))
                    {
                        status.state = "failed";
                    }
                }
                status.detail = format!("{}; {s}", status.detail);
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
        println!("{:<24} {:<8} {}", r.run_id, r.state, r.detail);
    }
    let line: Vec<String> = ["done", "failed", "running", "pending"]
        .iter()
        .map(|s| format!("{} {s}", counts.get(s).copied().unwrap_or(0)))
        .collect();
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
