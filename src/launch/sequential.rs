//! The sequential launcher: every run of a sweep in this process, one after another (the default;
//! `--jobs N` and Slurm start worker processes instead).

use std::path::PathBuf;

use anyhow::Result;

use super::Tally;
use crate::checked::Checked;
use crate::runner::{self, RunOptions, RunOutcome};
use crate::spec::{Experiment, RunSpec};
use crate::track::preempt::{self, Preempted};

impl Tally {
    fn record(&mut self, label: &str, outcome: Result<(PathBuf, RunOutcome)>) {
        match outcome {
            Ok((_, RunOutcome::Done(_))) => self.done += 1,
            Ok((_, RunOutcome::Skipped(_))) => self.skipped += 1,
            Ok((_, RunOutcome::Busy(holder))) => self
                .failed
                .push((label.into(), format!("still held by {holder}"))),
            Err(e) => {
                eprintln!("run {label} failed: {e:#}");
                self.failed.push((label.into(), format!("{e:#}")));
            }
        }
    }
}

/// Runs every run of an experiment that `only` selects (skipping finished ones), records failures
/// and goes on. The tables are the caller's ([`super::finish`]).
pub fn run_sweep(
    experiment: &Experiment,
    options: &RunOptions,
    only: &[(String, String)],
) -> Result<Tally> {
    let runs: Vec<&Checked<RunSpec>> = experiment.runs.iter().filter(|r| r.matches(only)).collect();
    let sweep_bar = options.progress.then(|| {
        let bar = indicatif::ProgressBar::new(runs.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("sweep {pos}/{len} [{bar:30}] {msg}")
                .expect("template")
                .progress_chars("=> "),
        );
        bar
    });
    let mut tally = Tally::default();
    let mut busy = Vec::new();
    for spec in runs {
        // A signal between runs (or during a baseline, which has no checkpoint) stops the sweep
        // before the next run; a run it reached mid-training stopped with a checkpoint.
        if preempt::requested().is_some() {
            return Err(Preempted::now(
                "between runs: the sweep stops; starting it again continues",
            )
            .into());
        }
        let label = spec.label();
        if let Some(bar) = &sweep_bar {
            bar.set_message(label.clone());
        }
        match runner::run(spec, options) {
            Err(e) if preempt::is_preempted(&e) => return Err(e),
            Ok((_, RunOutcome::Busy(holder))) => {
                eprintln!("run {label}: {holder} is running it; coming back to it at the end");
                busy.push(spec);
                continue;
            }
            outcome => tally.record(&label, outcome),
        }
        if let Some(bar) = &sweep_bar {
            bar.inc(1);
        }
    }
    // Runs another process held: wait for each, then run it unless that process finished it.
    for spec in busy {
        let outcome = runner::run_waiting(spec, options);
        if matches!(&outcome, Err(e) if preempt::is_preempted(e)) {
            return outcome.map(|_| tally);
        }
        tally.record(&spec.label(), outcome);
        if let Some(bar) = &sweep_bar {
            bar.inc(1);
        }
    }
    if let Some(bar) = sweep_bar {
        bar.finish_and_clear();
    }
    Ok(tally)
}
