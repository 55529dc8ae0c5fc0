//! `run --launcher slurm`: the pending runs as one Slurm job array, and a finishing job after it.
//!
//! Under `<out>/slurm/`, submission n writes `manifest-n.txt` (its pending runs, by run id),
//! `task-n.sbatch` (array task i runs manifest line i: `run --manifest … --task i`) and
//! `finish-n.sbatch`, and appends both job ids to `jobs.json`. The finishing job depends on the
//! array with `afterany` (a whole-array `afterok` never fires once any attempt failed, even after
//! a requeue succeeds); it rebuilds the tables and report from the finished runs and then fails,
//! naming them, if any run of its manifest is not done. Submitting again after cancelled, failed or
//! preempted tasks writes a new manifest of what is still missing: only those run.
//! Task states come from `scontrol -o show job` (no slurmdbd needed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{shell_quote, write_manifest, Invocation, SlurmConfig};
use crate::track::atomic;

/// One submission, as `jobs.json` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submission {
    pub array_job: String,
    pub finish_job: String,
    pub manifest: PathBuf,
    pub tasks: usize,
    pub submitted: String,
}

pub const JOBS: &str = "jobs.json";

pub fn dir(out: &Path) -> PathBuf {
    out.join("slurm")
}

/// Every submission so far (none: an empty list).
pub fn submissions(out: &Path) -> Result<Vec<Submission>> {
    let path = dir(out).join(JOBS);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The text of task-n.sbatch.
pub fn task_script(
    inv: &Invocation,
    config: &SlurmConfig,
    name: &str,
    manifest: &Path,
    logs: &Path,
) -> String {
    let mut s = script_head(
        config,
        &format!("oc-{name}"),
        &logs.join("task-%A_%a.log"),
        true,
    );
    let mut command = vec![shell_quote(&inv.program.display().to_string())];
    for a in inv.task_args(manifest, "TASK") {
        command.push(if a == "TASK" {
            "\"$SLURM_ARRAY_TASK_ID\"".into()
        } else {
            shell_quote(&a)
        });
    }
    s.push_str(&format!("exec {}\n", command.join(" ")));
    s
}

/// The text of finish-n.sbatch: tables, report, then a check that every run of the manifest is done.
pub fn finish_script(
    inv: &Invocation,
    config: &SlurmConfig,
    name: &str,
    manifest: &Path,
    logs: &Path,
) -> String {
    let mut s = script_head(
        config,
        &format!("oc-{name}-finish"),
        &logs.join("finish-%j.log"),
        false,
    );
    let bin = shell_quote(&inv.program.display().to_string());
    let out = shell_quote(&inv.out.display().to_string());
    s.push_str(&format!("{bin} results {out} || exit 1\n"));
    s.push_str(&format!(
        "{bin} report {out} || echo 'warning: report not written' >&2\n"
    ));
    s.push_str(&format!(
        "exec {bin} status {out} --require-done {}\n",
        shell_quote(&manifest.display().to_string())
    ));
    s
}

/// A script's first lines: the `#SBATCH` options (an array task's with `--requeue`, the warning
/// signal before its time limit and the per-task resources), the shell's error options, then the
/// spec's setup lines.
fn script_head(config: &SlurmConfig, job_name: &str, output: &Path, task: bool) -> String {
    let mut s = String::from("#!/bin/bash\n");
    s.push_str(&format!("#SBATCH --job-name={}\n", shell_quote(job_name)));
    s.push_str(&format!("#SBATCH --output={}\n", output.display()));
    if task {
        s.push_str("#SBATCH --requeue\n");
        // SIGUSR1 to the batch shell (`B:`), which `exec`s opencarbon: the run checkpoints,
        // requeues its own task and exits 75 before the time limit kills it.
        let grace = config.signal_grace;
        if grace > 0 {
            s.push_str(&format!("#SBATCH --signal=B:USR1@{grace}\n"));
        }
    }
    push_resources(&mut s, config, task);
    // A task stops at its first error; the finishing job checks each step's status itself.
    s.push_str(if task {
        "set -euo pipefail\n"
    } else {
        "set -uo pipefail\n"
    });
    for line in &config.setup {
        s.push_str(line);
        s.push('\n');
    }
    s
}

fn push_resources(s: &mut String, config: &SlurmConfig, task: bool) {
    // Relative paths inside the spec (a city directory, say) resolve as they did at submission.
    if let Ok(dir) = std::env::current_dir() {
        s.push_str(&format!("#SBATCH --chdir={}\n", dir.display()));
    }
    if let Some(p) = &config.partition {
        s.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    if let Some(a) = &config.account {
        s.push_str(&format!("#SBATCH --account={a}\n"));
    }
    if task {
        if let Some(t) = &config.time {
            s.push_str(&format!("#SBATCH --time={t}\n"));
        }
        if let Some(c) = config.cpus_per_task {
            s.push_str(&format!("#SBATCH --cpus-per-task={c}\n"));
        }
        if let Some(m) = &config.mem {
            s.push_str(&format!("#SBATCH --mem={m}\n"));
        }
        if let Some(g) = config.gpus {
            s.push_str(&format!("#SBATCH --gres=gpu:{g}\n"));
        }
        for line in &config.sbatch {
            s.push_str(&format!("#SBATCH {line}\n"));
        }
    }
}

/// Submits the array for `ids` and its finishing job; records both in `jobs.json`.
pub fn submit(
    inv: &Invocation,
    config: &SlurmConfig,
    name: &str,
    ids: &[String],
) -> Result<Submission> {
    let (n, manifest, array_job) = submit_array(inv, config, name, ids)?;
    let slurm = dir(&inv.out);
    let logs = slurm.join("logs");
    let finish = slurm.join(format!("finish-{n}.sbatch"));
    atomic::write(
        &finish,
        finish_script(inv, config, name, &manifest, &logs).as_bytes(),
    )?;
    let finish_job = sbatch(&[
        &format!("--dependency=afterany:{array_job}"),
        "--kill-on-invalid-dep=no",
        &finish.display().to_string(),
    ])?;
    record(
        &inv.out,
        Submission {
            array_job,
            finish_job,
            manifest,
            tasks: ids.len(),
            submitted: crate::track::meta::now(),
        },
    )
}

/// A search round (`launch::search`): the array for `ids` alone, no finishing job (the search
/// reads its trials itself); returns the array job id once every task has ended.
pub fn run_array(
    inv: &Invocation,
    config: &SlurmConfig,
    name: &str,
    ids: &[String],
    every: Duration,
) -> Result<String> {
    let (_, manifest, array_job) = submit_array(inv, config, name, ids)?;
    record(
        &inv.out,
        Submission {
            array_job: array_job.clone(),
            finish_job: String::new(),
            manifest,
            tasks: ids.len(),
            submitted: crate::track::meta::now(),
        },
    )?;
    loop {
        let states = job_states(&array_job)?;
        let active = states.iter().any(|s| s.active() || s.requeued());
        if !active {
            return Ok(array_job);
        }
        std::thread::sleep(every);
    }
}

/// Writes manifest-n and task-n for `ids` and submits the array: (n, manifest, array job id).
fn submit_array(
    inv: &Invocation,
    config: &SlurmConfig,
    name: &str,
    ids: &[String],
) -> Result<(usize, PathBuf, String)> {
    config.check()?;
    let slurm = dir(&inv.out);
    let logs = slurm.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let n = submissions(&inv.out)?.len() + 1;
    let manifest = slurm.join(format!("manifest-{n}.txt"));
    write_manifest(&manifest, ids)?;
    let task = slurm.join(format!("task-{n}.sbatch"));
    atomic::write(
        &task,
        task_script(inv, config, name, &manifest, &logs).as_bytes(),
    )?;
    let mut array = format!("--array=0-{}", ids.len() - 1);
    if let Some(m) = config.max_parallel {
        array.push_str(&format!("%{m}"));
    }
    let array_job = sbatch(&[&array, &task.display().to_string()])?;
    Ok((n, manifest, array_job))
}

/// Adds a submission to `jobs.json`.
fn record(out: &Path, submission: Submission) -> Result<Submission> {
    let mut all = submissions(out)?;
    all.push(submission.clone());
    atomic::write(
        &dir(out).join(JOBS),
        serde_json::to_string_pretty(&all)?.as_bytes(),
    )?;
    Ok(submission)
}

/// `sbatch --parsable ARGS`: the job id.
fn sbatch(args: &[&str]) -> Result<String> {
    let out = slurm_command("sbatch", &[&["--parsable"], args].concat())?;
    let id = out.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        bail!("sbatch printed `{}`, not a job id", out.trim());
    }
    Ok(id)
}

/// Runs a Slurm client command (bounded: with the controller down, each call retries for long).
fn slurm_command(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("timeout")
        .arg("60")
        .arg(program)
        .args(args)
        .output()
        .with_context(|| {
            format!("running {program} (is Slurm's client installed, and SLURM_CONF set?)")
        })?;
    if !out.status.success() {
        bail!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One job (or array task) as `scontrol -o show job` describes it.
#[derive(Debug, Clone, Default)]
pub struct JobState {
    pub array_task: Option<usize>,
    pub state: String,
    pub exit_code: String,
    pub reason: String,
    pub start: String,
    pub end: String,
    /// Times Slurm requeued it (`Restarts`).
    pub restarts: u32,
}

impl JobState {
    /// Not ended yet: waiting, running, finishing, requeued or suspended.
    pub fn active(&self) -> bool {
        [
            "PENDING",
            "RUNNING",
            "CONFIGURING",
            "COMPLETING",
            "REQUEUED",
            "SUSPENDED",
        ]
        .contains(&self.state.as_str())
    }

    /// Requeued and waiting to run again (`REQUEUED`, a held requeue, or pending after a restart).
    pub fn requeued(&self) -> bool {
        self.state.starts_with("REQUEUE") || (self.state == "PENDING" && self.restarts > 0)
    }
}

/// The states of a job's tasks (one entry for a plain job); empty once Slurm has forgotten it.
pub fn job_states(job: &str) -> Result<Vec<JobState>> {
    let text = match slurm_command("scontrol", &["-o", "show", "job", job]) {
        Ok(text) => text,
        Err(e) if format!("{e:#}").contains("Invalid job id") => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let fields: BTreeMap<&str, &str> = line
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .collect();
            let get = |k: &str| fields.get(k).map_or(String::new(), |v| v.to_string());
            JobState {
                array_task: fields.get("ArrayTaskId").and_then(|v| v.parse().ok()),
                state: get("JobState"),
                exit_code: get("ExitCode"),
                reason: get("Reason"),
                start: get("StartTime"),
                end: get("EndTime"),
                restarts: fields
                    .get("Restarts")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            }
        })
        .collect())
}

/// Waits until `job` has ended (polling every `every`); its final state.
pub fn wait(job: &str, every: Duration) -> Result<JobState> {
    loop {
        let states = job_states(job)?;
        match states.first() {
            None => bail!("Slurm no longer knows job {job}"),
            Some(s) if !s.active() => return Ok(s.clone()),
            _ => std::thread::sleep(every),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation() -> Invocation {
        Invocation {
            program: "/bin/opencarbon".into(),
            spec: "/x/spec.yaml".into(),
            out: "/x/out".into(),
            overrides: vec![],
            device: "cpu".into(),
            precision: "f32".into(),
        }
    }

    #[test]
    fn a_task_asks_for_a_requeue_and_a_warning_signal_before_its_time_limit() {
        let (m, logs) = (Path::new("/x/m.txt"), Path::new("/x/logs"));
        let config = SlurmConfig::default();
        let script = task_script(&invocation(), &config, "e", m, logs);
        assert!(script.contains("#SBATCH --requeue\n"), "{script}");
        assert!(script.contains("#SBATCH --signal=B:USR1@120\n"), "{script}");
        // The batch shell gets the signal: it must be opencarbon itself.
        assert!(script.contains("\nexec /bin/opencarbon run "), "{script}");
        let config = SlurmConfig {
            signal_grace: 300,
            ..Default::default()
        };
        let script = task_script(&invocation(), &config, "e", m, logs);
        assert!(script.contains("#SBATCH --signal=B:USR1@300\n"), "{script}");
        let config = SlurmConfig {
            signal_grace: 0,
            ..Default::default()
        };
        let script = task_script(&invocation(), &config, "e", m, logs);
        assert!(!script.contains("--signal"), "{script}");
        // The finishing job is neither requeued nor warned.
        let finish = finish_script(&invocation(), &SlurmConfig::default(), "e", m, logs);
        assert!(
            !finish.contains("--requeue") && !finish.contains("--signal"),
            "{finish}"
        );
    }

    #[test]
    fn a_requeued_task_is_told_apart() {
        let pending = |restarts| JobState {
            state: "PENDING".into(),
            restarts,
            ..Default::default()
        };
        assert!(!pending(0).requeued());
        assert!(pending(1).requeued());
        for state in ["REQUEUED", "REQUEUE_HOLD"] {
            let s = JobState {
                state: state.into(),
                ..Default::default()
            };
            assert!(s.requeued(), "{state}");
        }
    }
}
