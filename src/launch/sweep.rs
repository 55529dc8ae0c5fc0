//! The launchers' side of `opencarbon run`: a worker's one task, a parallel local sweep, and a
//! Slurm submission.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{local, pending, read_manifest, slurm, write_manifest, Invocation};
use crate::runner::{self, RunOptions, RunOutcome};
use crate::spec::Experiment;

/// Worker mode (`run --manifest M --task I`): runs manifest line I, unless done; waits for a run
/// another worker holds. Fails when the run fails, so that the launcher sees it.
pub fn run_task(
    experiment: &Experiment,
    options: &RunOptions,
    manifest: &Path,
    task: usize,
) -> Result<()> {
    let ids = read_manifest(manifest)?;
    let Some(id) = ids.get(task) else {
        bail!(
            "{}: task {task} is out of range ({} runs listed)",
            manifest.display(),
            ids.len()
        );
    };
    // A search's trials and refits are not in the spec's expansion: their specs lie beside the
    // manifest (`launch::search`).
    let beside;
    let spec = match experiment.runs.iter().find(|r| &r.run_id() == id) {
        Some(spec) => spec,
        None => match super::search::spec_beside(manifest, &options.out, id)? {
            Some(spec) => {
                beside = spec;
                &beside
            }
            None => bail!(
                "{}: run {id} (task {task}) is not a run of this spec (was the spec or a --set changed since?)",
                manifest.display()
            ),
        },
    };
    let (dir, outcome) = runner::run_waiting(spec, options)?;
    match outcome {
        RunOutcome::Done(m) => {
            println!("run {id} finished: {} (test R² {:.4})", dir.display(), m.r2)
        }
        RunOutcome::Skipped(m) => println!("run {id} already done (test R² {:.4})", m.r2),
        RunOutcome::Busy(holder) => bail!("run {id} is held by {holder}"),
    }
    Ok(())
}

/// A sweep handed to a launcher.
pub struct Sweep<'a> {
    pub experiment: &'a Experiment,
    pub invocation: Invocation,
    pub only: Vec<(String, String)>,
    pub progress: bool,
}

impl Sweep<'_> {
    fn label(&self, id: &str) -> (String, usize) {
        match self.experiment.runs.iter().find(|r| r.run_id() == id) {
            Some(r) => (
                r.label(),
                if r.baseline.is_some() {
                    0
                } else {
                    r.train.epochs
                },
            ),
            None => (id.to_string(), 0),
        }
    }

    /// `--jobs N`: the pending runs as N processes at once; then the tables, report and
    /// expectations, as a sequential sweep ends.
    pub fn local(&self, jobs: usize, report: bool, junit: Option<&Path>) -> Result<()> {
        let out = &self.invocation.out;
        let ids = pending(self.experiment, out, &self.only);
        let manifest = out.join("launch").join("manifest.txt");
        write_manifest(&manifest, &ids)?;
        let work: Vec<local::Job> = ids
            .iter()
            .enumerate()
            .map(|(task, id)| {
                let (label, epochs) = self.label(id);
                local::Job {
                    task,
                    id: id.clone(),
                    label,
                    epochs,
                }
            })
            .collect();
        let total = self
            .experiment
            .runs
            .iter()
            .filter(|r| r.matches(&self.only))
            .count();
        println!("{} runs, {} to run, {jobs} at a time", total, work.len());
        let outcome = local::run(&self.invocation, &manifest, work, jobs, self.progress)?;
        if crate::track::preempt::requested().is_some() {
            return Err(crate::track::preempt::Preempted::now(&format!(
                "during the sweep: {} worker(s) checkpointed ({}); starting the sweep again resumes them",
                outcome.preempted.len(),
                outcome.preempted.join(", ")
            ))
            .into());
        }
        finish(
            self.experiment,
            out,
            Tally {
                done: outcome.done,
                skipped: total - ids.len(),
                // A worker stopped by a signal this process did not get: not done, not lost.
                failed: outcome
                    .failed
                    .into_iter()
                    .chain(outcome.preempted.into_iter().map(|label| {
                        (
                            label,
                            "preempted: resumes from its checkpoint on the next start".into(),
                        )
                    }))
                    .collect(),
            },
            report,
            junit,
        )
    }

    /// `--launcher slurm`: one array task per pending run and a finishing job; with `wait`,
    /// blocks until the finishing job ends and prints the summary.
    pub fn slurm(&self, wait: bool, junit: Option<&Path>) -> Result<()> {
        let out = &self.invocation.out;
        let ids = pending(self.experiment, out, &self.only);
        // The tables' options (variant order, reference, expectations, run ids) for the
        // finishing job, which runs `opencarbon results`.
        table_options(self.experiment).write(out)?;
        if ids.is_empty() {
            println!(
                "{}: every run is done; nothing to submit",
                self.experiment.name
            );
            return Ok(());
        }
        let config = &self.experiment.launcher.slurm;
        let s = slurm::submit(&self.invocation, config, &self.experiment.name, &ids)
            .context("submitting to Slurm")?;
        println!(
            "submitted {} runs as array job {} (manifest {}); finishing job {} after it",
            s.tasks,
            s.array_job,
            s.manifest.display(),
            s.finish_job
        );
        println!("follow with: opencarbon status {}", out.display());
        if !wait {
            return Ok(());
        }
        let end = slurm::wait(&s.finish_job, Duration::from_secs(2))?;
        let summary = std::fs::read_to_string(out.join("summary.md")).unwrap_or_default();
        println!("{summary}");
        if end.state != "COMPLETED" {
            bail!(
                "finishing job {} ended {} (exit {}): some runs are not done; see `opencarbon status {}` and {}",
                s.finish_job,
                end.state,
                end.exit_code,
                out.display(),
                slurm::dir(out).join("logs").display()
            );
        }
        if !self.experiment.expect.is_empty() {
            crate::results::cli::check_expectations(out, junit)?;
        }
        Ok(())
    }
}

/// What a sweep did: runs finished now, found finished, and failed (label, why).
#[derive(Debug, Default)]
pub struct Tally {
    pub done: usize,
    pub skipped: usize,
    pub failed: Vec<(String, String)>,
}

/// The end of every sweep, whichever launcher ran it: the tables (refused, changing nothing, if
/// they would hold fewer runs than before), the record archive, the report, then failures and
/// expectations decide the exit status.
pub fn finish(
    experiment: &Experiment,
    out: &Path,
    tally: Tally,
    report: bool,
    junit: Option<&Path>,
) -> Result<()> {
    let tables = write_tables(experiment, out);
    match &tables {
        Ok(summary) => println!("{summary}"),
        Err(e) => eprintln!("tables not written: {e:#}"),
    }
    println!(
        "{}: {} run, {} already done, {} failed → {}",
        experiment.name,
        tally.done,
        tally.skipped,
        tally.failed.len(),
        out.join("summary.md").display()
    );
    if report && tables.is_ok() {
        crate::report::refresh(out);
    }
    if !tally.failed.is_empty() {
        let labels: Vec<&str> = tally.failed.iter().map(|(l, _)| l.as_str()).collect();
        bail!("{} run(s) failed: {}", labels.len(), labels.join("; "));
    }
    tables?;
    if !experiment.expect.is_empty() {
        crate::results::cli::check_expectations(out, junit)?;
    }
    Ok(())
}

/// Rebuilds an experiment's tables from its finished runs (variants in the spec's order, its
/// reference, expectations and run ids saved beside them), then archives the runs' records
/// (`records/`); returns the Markdown summary. Refuses, writing nothing, to replace tables with
/// ones built from fewer runs (see `results::write_summary_with`).
pub fn write_tables(experiment: &Experiment, out: &Path) -> Result<String> {
    let summary = crate::results::write_summary_with(out, &table_options(experiment), false)?;
    crate::record::archive::export(out)
        .context("the tables are written, but archiving the run records (records/) failed")?;
    Ok(summary)
}

/// What the tables of `experiment` are built with.
pub fn table_options(experiment: &Experiment) -> crate::results::TableOptions {
    let mut order: Vec<String> = experiment.variant_order.clone();
    for r in &experiment.runs {
        if !order.contains(&r.variant) {
            order.push(r.variant.clone());
        }
    }
    let mut runs: Vec<String> = experiment.runs.iter().map(|r| r.run_id()).collect();
    runs.sort();
    runs.dedup();
    crate::results::TableOptions {
        variants: order,
        reference: experiment.reference.clone(),
        expect: experiment.expect.clone(),
        runs,
        ensembles: experiment
            .ensembles
            .iter()
            .map(|(name, e)| (name.clone(), e.members.clone()))
            .collect(),
    }
}
