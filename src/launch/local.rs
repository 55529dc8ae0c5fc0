//! `run --jobs N`: the pending runs as N worker processes at once (each `run --manifest M --task
//! I`), with one progress line per worker (its run and epoch, read from the run's `metrics.csv`)
//! and each worker's output in `<out>/logs/<run-id>.log`.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::Invocation;
use crate::track::preempt;

/// A run to hand out: its manifest line, id, label and epoch count (0: a baseline).
pub struct Job {
    pub task: usize,
    pub id: String,
    pub label: String,
    pub epochs: usize,
}

/// What the workers did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub done: usize,
    /// (label, why) per failed worker.
    pub failed: Vec<(String, String)>,
    /// Workers a signal stopped after their checkpoint (exit 75): they resume on the next start.
    pub preempted: Vec<String>,
}

struct Worker {
    job: Job,
    child: Child,
    bar: Option<ProgressBar>,
    log: PathBuf,
    started: Instant,
}

/// Runs `jobs` (listed in `manifest`) with at most `parallel` workers at once.
pub fn run(
    inv: &Invocation,
    manifest: &Path,
    jobs: Vec<Job>,
    parallel: usize,
    progress: bool,
) -> Result<Outcome> {
    let logs = inv.out.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    // Bars on a terminal; plain lines elsewhere (a hidden MultiProgress would swallow them).
    let multi = progress.then(MultiProgress::new).filter(|m| !m.is_hidden());
    let total = jobs.len();
    let overall = multi.as_ref().map(|m| {
        let bar = m.add(ProgressBar::new(total as u64));
        bar.set_style(
            ProgressStyle::with_template("sweep {pos}/{len} [{bar:30}] {elapsed}")
                .expect("template")
                .progress_chars("=> "),
        );
        bar
    });
    let mut queue: VecDeque<Job> = jobs.into();
    let mut running: Vec<Worker> = Vec::new();
    let mut outcome = Outcome::default();
    let mut forwarded = false;
    while !queue.is_empty() || !running.is_empty() {
        // A signal to this process goes to every worker (each checkpoints and exits 75); no new
        // worker starts.
        if let Some(signal) = preempt::requested() {
            if !forwarded {
                forwarded = true;
                queue.clear();
                for w in &running {
                    forward(&w.child, signal);
                }
            }
        }
        while running.len() < parallel.max(1) {
            let Some(job) = queue.pop_front() else { break };
            let log = logs.join(format!("{}.log", job.id));
            let file = std::fs::File::create(&log)
                .with_context(|| format!("creating {}", log.display()))?;
            let child = Command::new(&inv.program)
                .args(inv.task_args(manifest, &job.task.to_string()))
                .stdin(Stdio::null())
                .stdout(file.try_clone()?)
                .stderr(file)
                .spawn()
                .with_context(|| format!("starting {}", inv.program.display()))?;
            let bar = multi.as_ref().map(|m| {
                let bar = m.add(ProgressBar::new(job.epochs.max(1) as u64));
                bar.set_style(
                    ProgressStyle::with_template("  {msg:50} [{bar:20}] {pos}/{len} epochs")
                        .expect("template")
                        .progress_chars("=> "),
                );
                bar.set_message(job.label.clone());
                bar
            });
            running.push(Worker {
                job,
                child,
                bar,
                log,
                started: Instant::now(),
            });
        }
        std::thread::sleep(Duration::from_millis(300));
        let mut still = Vec::new();
        for mut w in running.drain(..) {
            match w.child.try_wait()? {
                None => {
                    if let Some(bar) = &w.bar {
                        bar.set_position(epochs_logged(&inv.out, &w.job.id) as u64);
                    }
                    still.push(w);
                }
                Some(status) => {
                    if let Some(bar) = w.bar.take() {
                        bar.finish_and_clear();
                    }
                    let seconds = w.started.elapsed().as_secs_f64();
                    if status.code() == Some(preempt::EXIT_CODE) {
                        let line = format!("preempted {} (resumes on the next start)", w.job.label);
                        match &multi {
                            Some(m) => m.println(line)?,
                            None => eprintln!("{line}"),
                        }
                        outcome.preempted.push(w.job.label.clone());
                    } else if status.success() {
                        outcome.done += 1;
                        let line = format!("done   {} ({seconds:.0} s)", w.job.label);
                        match &multi {
                            Some(m) => m.println(line)?,
                            None => println!("{line}"),
                        }
                    } else {
                        let why = format!(
                            "{status}; last line of {}: {}",
                            w.log.display(),
                            last_line(&w.log)
                        );
                        let line = format!("failed {}: {why}", w.job.label);
                        match &multi {
                            Some(m) => m.println(line)?,
                            None => eprintln!("{line}"),
                        }
                        outcome.failed.push((w.job.label.clone(), why));
                    }
                    if let Some(bar) = &overall {
                        bar.inc(1);
                    }
                }
            }
        }
        running = still;
    }
    if let Some(bar) = overall {
        bar.finish_and_clear();
    }
    Ok(outcome)
}

/// Sends `signal` (SIGTERM or SIGUSR1, by name) to a worker.
fn forward(child: &Child, signal: &str) {
    #[cfg(unix)]
    {
        let number = if signal == "SIGUSR1" {
            libc::SIGUSR1
        } else {
            libc::SIGTERM
        };
        // SAFETY: signals a child this process started and has not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, number) };
    }
}

/// The highest training epoch a run has logged so far.
fn epochs_logged(out: &Path, id: &str) -> usize {
    std::fs::read_to_string(out.join("runs").join(id).join("metrics.csv"))
        .map(|text| {
            text.lines()
                .filter(|l| l.contains(",train,"))
                .filter_map(|l| l.split(',').next()?.parse().ok())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

fn last_line(log: &Path) -> String {
    std::fs::read_to_string(log)
        .ok()
        .and_then(|t| {
            t.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "(empty)".into())
}
