//! Nested search (issue 31): for each searched variant and each dataset × seed × outer fold, a
//! search over the variant's space on inner spatial folds of the outer fold's training tiles,
//! then the best setting refitted on the outer fold, as that variant's run in the tables.
//!
//! Trials are runs: each trial is one run per inner fold, with its own id, lock and resume, in
//! `<out>/search/runs/`. The searches advance in rounds: every unfinished search adds its next
//! trial's runs, and the round runs them all (`--jobs` workers, or in this process). A trial's
//! setting depends only on the sampler's seed and the finished trials before it, so the choices
//! are the same whatever `--jobs` is, and an interrupted search resumes where it stopped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::{local, write_manifest, Invocation};
use crate::checked::Checked;
use crate::record::state::{self, State as RunState};
use crate::runner::{self, RunOptions};
use crate::spec::search::{refit_run, trial_run, SearchedVariant};
use crate::spec::{Experiment, RunSpec};
use crate::tune::{PruneFile, Sampler, State, Trial, Tuning};

/// Where a sweep's trial runs live: beside the experiment's runs, not among them, so that the
/// tables never see a trial.
pub fn dir(out: &Path) -> PathBuf {
    out.join("search")
}

/// How the rounds run: in this process, as local worker processes, or as one Slurm job array
/// per round (this process submits it and waits for its tasks, so it must outlive the search).
pub enum Rounds<'a> {
    InProcess(&'a RunOptions),
    Workers {
        invocation: &'a Invocation,
        jobs: usize,
        progress: bool,
    },
    Slurm {
        invocation: &'a Invocation,
        config: &'a super::SlurmConfig,
        name: &'a str,
    },
}

/// One search: a searched variant on one dataset, seed and outer fold.
struct Study<'a> {
    variant: &'a SearchedVariant,
    template: &'a Checked<RunSpec>,
    sampler: Sampler,
}

/// A trial as the search saw it, for `search/trials.csv`.
struct TrialRow {
    number: usize,
    params: crate::tune::Params,
    /// The objective per inner fold (None: that run failed).
    inner: Vec<Option<f64>>,
    state: State,
}

impl<'a> Study<'a> {
    fn new(variant: &'a SearchedVariant, template: &'a Checked<RunSpec>) -> Self {
        // Each search draws on its own streams: the same seed for every outer fold would try
        // the same first settings everywhere.
        let key = format!(
            "{}/{}/{}/{:?}",
            variant.name,
            template.dataset_label(),
            template.seed,
            template.split.fold()
        );
        let digest = Sha256::digest(key.as_bytes());
        let salt = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
        Study {
            variant,
            template,
            sampler: variant.search.sampler.reseeded(salt),
        }
    }

    fn label(&self) -> String {
        self.template.label()
    }

    /// Walks the trials in order, each suggested from the finished ones before it: the
    /// finished trials, and the runs of the first unfinished one (none once the budget is
    /// spent), each with what it needs to be pruned when the search prunes. A trial whose run
    /// failed (a diverged learning rate, say) counts as pruned: the worst, as Optuna counts a
    /// failed trial out of the good ones, and it is not retried. A trial a pruner stopped on any
    /// inner fold is pruned, with that fold's validation curve.
    fn walk(&self, runs_dir: &Path) -> Result<(Vec<TrialRow>, Vec<PendingRun>)> {
        let search = &self.variant.search;
        let mut rows: Vec<TrialRow> = Vec::new();
        let mut history: Vec<Trial> = Vec::new();
        // Per inner fold, the validation curves of the finished trials (for the pruner).
        let mut curves: Vec<Vec<BTreeMap<u64, f64>>> = vec![Vec::new(); search.inner_folds];
        for number in 0..search.trials {
            let params = self
                .sampler
                .suggest(&search.space, &history, search.direction)
                .with_context(|| format!("{}: trial {number}", self.label()))?;
            let mut todo = Vec::new();
            let mut inner = Vec::new();
            let mut pruned_curve = None;
            let mut fold_curves = Vec::new();
            for (k, finished) in curves.iter().enumerate() {
                let run = trial_run(self.template, &params, number, search.inner_folds, k)
                    .with_context(|| format!("{}: trial {number}", self.label()))?;
                let dir = runs_dir.join(run.run_id());
                match state::check(&dir, Some(&run)) {
                    RunState::Done(m) => {
                        let curve = read_curve(&dir, search.metric);
                        if m.pruned {
                            inner.push(None);
                            pruned_curve.get_or_insert(curve.clone());
                        } else {
                            inner.push(Some(m.value(search.metric)));
                        }
                        fold_curves.push(curve);
                    }
                    RunState::NotDone(status) if status == "failed" => {
                        inner.push(None);
                        fold_curves.push(BTreeMap::new());
                    }
                    _ => {
                        let prune = search.pruner.map(|pruner| PruneFile {
                            pruner,
                            metric: search.metric.to_string(),
                            direction: search.direction,
                            finished: finished.clone(),
                        });
                        todo.push(PendingRun { run, prune });
                    }
                }
            }
            if !todo.is_empty() {
                return Ok((rows, todo));
            }
            let state = if inner.iter().all(Option::is_some) {
                let values: Vec<f64> = inner.iter().flatten().copied().collect();
                for (k, c) in fold_curves.into_iter().enumerate() {
                    curves[k].push(c);
                }
                State::Complete(values.iter().sum::<f64>() / values.len() as f64)
            } else {
                State::Pruned
            };
            history.push(Trial {
                number,
                params: params.clone(),
                state: state.clone(),
                curve: pruned_curve.unwrap_or_default(),
            });
            rows.push(TrialRow {
                number,
                params,
                inner,
                state,
            });
        }
        Ok((rows, vec![]))
    }

    /// The refit of the best finished trial (the first of equals).
    fn refit(&self, rows: &[TrialRow]) -> Result<Checked<RunSpec>> {
        let search = &self.variant.search;
        let mut best: Option<(&TrialRow, f64)> = None;
        for row in rows {
            if let State::Complete(v) = row.state {
                if best.is_none_or(|(_, b)| search.direction.better(v, b)) {
                    best = Some((row, v));
                }
            }
        }
        let Some((row, value)) = best else {
            bail!(
                "{}: every one of the {} trials failed; see the runs in the search directory",
                self.label(),
                rows.len()
            );
        };
        let finished = rows
            .iter()
            .filter(|r| matches!(r.state, State::Complete(_)))
            .count();
        refit_run(
            self.template,
            Tuning::Refit {
                params: row.params.clone(),
                best_trial: row.number,
                trials: finished,
                inner_best: value,
                metric: search.metric.to_string(),
            },
        )
    }
}

/// A trial run waiting to run, and its pruning context (None: the search does not prune).
struct PendingRun {
    run: Checked<RunSpec>,
    prune: Option<PruneFile>,
}

/// The validation curve (epoch → `metric`) of a finished run, from its `metrics.csv` (read as
/// the MLflow sync reads it).
fn read_curve(dir: &Path, metric: &str) -> BTreeMap<u64, f64> {
    let key = crate::track::mlflow::record::metric_key("valid", metric);
    std::fs::read_to_string(dir.join("metrics.csv"))
        .ok()
        .and_then(|text| crate::track::mlflow::record::parse_metrics(&text).ok())
        .and_then(|mut all| all.remove(&key))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(epoch, v)| u64::try_from(epoch).ok().map(|e| (e, v)))
        .collect()
}

/// Runs every search of `experiment` that `only` selects to its budget, then adds each refit to
/// `experiment.runs` (and its spec to `<out>/launch/specs/`, where workers find it). Writes
/// `<out>/search/trials.csv`. Returns how many trial runs ran now.
pub fn run_searches(
    experiment: &mut Experiment,
    out: &Path,
    only: &[(String, String)],
    rounds: Rounds<'_>,
) -> Result<usize> {
    if experiment.searches.is_empty() {
        return Ok(0);
    }
    let search_dir = dir(out);
    let runs_dir = search_dir.join("runs");
    let searches = experiment.searches.clone();
    // Every search, and those `--only` selects to run: a finished search that is not selected
    // still gives its refit, so that the tables keep it.
    let all: Vec<Study> = searches
        .iter()
        .flat_map(|v| v.templates.iter().map(move |t| Study::new(v, t)))
        .collect();
    let studies: Vec<&Study> = all.iter().filter(|s| s.template.matches(only)).collect();
    let total: usize = studies
        .iter()
        .map(|s| s.variant.search.trials * s.variant.search.inner_folds)
        .sum();
    println!(
        "{} searches ({} trial runs at most) in {}",
        studies.len(),
        total,
        search_dir.display()
    );
    let mut ran = 0;
    for round in 0.. {
        let mut pending: Vec<PendingRun> = Vec::new();
        for study in &studies {
            pending.extend(study.walk(&runs_dir)?.1);
        }
        if pending.is_empty() {
            break;
        }
        let prune_dir = PruneFile::dir(&search_dir.join("launch"));
        for p in &pending {
            if let Some(file) = &p.prune {
                std::fs::create_dir_all(&prune_dir)
                    .with_context(|| format!("creating {}", prune_dir.display()))?;
                crate::track::atomic::write(
                    &prune_dir.join(format!("{}.json", p.run.run_id())),
                    serde_json::to_string_pretty(file)?.as_bytes(),
                )?;
            }
        }
        let batch: Vec<Checked<RunSpec>> = pending.into_iter().map(|p| p.run).collect();
        println!("search round {round}: {} trial runs", batch.len());
        let failed = run_round(&batch, &search_dir, &rounds)?;
        ran += batch.len();
        if crate::track::preempt::requested().is_some() {
            return Err(crate::track::preempt::Preempted::now(
                "during a search round; starting the sweep again resumes the search where it stopped",
            )
            .into());
        }
        // A run that failed is recorded as failed and its trial counts as pruned; one that
        // left no record (a crash before its meta.json) would be retried for ever.
        for (label, id) in &failed {
            let status = std::fs::read_to_string(runs_dir.join(id).join("meta.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v["status"].as_str().map(String::from));
            if status.as_deref() != Some("failed") {
                bail!(
                    "trial run {label} ({id}) stopped without a record; see {}",
                    search_dir.join("logs").display()
                );
            }
        }
    }
    let mut table =
        String::from("variant,dataset,seed,fold,trial,state,value,inner_values,params\n");
    let mut refits = Vec::new();
    for study in &all {
        let (rows, todo) = study.walk(&runs_dir)?;
        if !todo.is_empty() {
            if !study.template.matches(only) {
                continue;
            }
            bail!("{}: the search stopped with trial runs left", study.label());
        }
        for row in &rows {
            let (state, value) = match row.state {
                State::Complete(v) => ("complete", format!("{v}")),
                _ => ("pruned", String::new()),
            };
            let inner: Vec<String> = row
                .inner
                .iter()
                .map(|v| v.map_or("pruned or failed".into(), |v| format!("{v}")))
                .collect();
            writeln!(
                table,
                "{},{},{},{},{},{state},{value},{},\"{}\"",
                study.variant.name,
                study.template.dataset_label(),
                study.template.seed,
                study
                    .template
                    .split
                    .fold()
                    .map_or(String::new(), |f| f.to_string()),
                row.number,
                inner.join(";"),
                serde_json::to_string(&row.params)?.replace('"', "\"\"")
            )?;
        }
        refits.push(study.refit(&rows)?);
    }
    crate::track::atomic::write(&search_dir.join("trials.csv"), table.as_bytes())?;
    let specs = out.join("launch").join("specs");
    std::fs::create_dir_all(&specs).with_context(|| format!("creating {}", specs.display()))?;
    for run in &refits {
        write_spec(&specs, run)?;
    }
    experiment.runs.extend(refits);
    Ok(ran)
}

/// Runs one round's trial runs; returns those that failed (label, run id).
fn run_round(
    batch: &[Checked<RunSpec>],
    search_dir: &Path,
    rounds: &Rounds<'_>,
) -> Result<Vec<(String, String)>> {
    let mut failed = Vec::new();
    match rounds {
        Rounds::InProcess(options) => {
            let options = RunOptions {
                device: options.device.clone(),
                out: search_dir.to_path_buf(),
                progress: options.progress,
                force: false,
                precision: options.precision,
                tracking: options.tracking.clone(),
            };
            for run in batch {
                if let Err(e) = runner::run_waiting(run, &options) {
                    if crate::track::preempt::requested().is_some() {
                        return Err(e);
                    }
                    eprintln!("trial run {} failed: {e:#}", run.label());
                    failed.push((run.label(), run.run_id()));
                }
            }
        }
        Rounds::Slurm {
            invocation,
            config,
            name,
        } => {
            let specs = super::slurm::dir(search_dir).join("specs");
            std::fs::create_dir_all(&specs)
                .with_context(|| format!("creating {}", specs.display()))?;
            for run in batch {
                write_spec(&specs, run)?;
            }
            let ids: Vec<String> = batch.iter().map(|r| r.run_id()).collect();
            let inv = Invocation {
                out: search_dir.to_path_buf(),
                ..(*invocation).clone()
            };
            let array = super::slurm::run_array(
                &inv,
                config,
                name,
                &ids,
                std::time::Duration::from_secs(2),
            )
            .context("a search round on Slurm")?;
            let runs_dir = search_dir.join("runs");
            for run in batch {
                match state::check(&runs_dir.join(run.run_id()), Some(run)) {
                    RunState::Done(_) => {}
                    RunState::NotDone(status) if status == "failed" => {
                        failed.push((run.label(), run.run_id()))
                    }
                    other => bail!(
                        "trial run {} ({}) did not finish in Slurm array {array} ({other:?}); see {}; starting the sweep again resumes the search",
                        run.label(),
                        run.run_id(),
                        super::slurm::dir(search_dir).join("logs").display()
                    ),
                }
            }
        }
        Rounds::Workers {
            invocation,
            jobs,
            progress,
        } => {
            let launch = search_dir.join("launch");
            let specs = launch.join("specs");
            std::fs::create_dir_all(&specs)
                .with_context(|| format!("creating {}", specs.display()))?;
            for run in batch {
                write_spec(&specs, run)?;
            }
            let ids: Vec<String> = batch.iter().map(|r| r.run_id()).collect();
            let manifest = launch.join("manifest.txt");
            write_manifest(&manifest, &ids)?;
            let work: Vec<local::Job> = batch
                .iter()
                .enumerate()
                .map(|(task, r)| local::Job {
                    task,
                    id: r.run_id(),
                    label: r.label(),
                    epochs: if r.baseline.is_some() {
                        0
                    } else {
                        r.train.epochs
                    },
                })
                .collect();
            let inv = Invocation {
                out: search_dir.to_path_buf(),
                ..(*invocation).clone()
            };
            let outcome = local::run(&inv, &manifest, work, *jobs, *progress)?;
            for (label, why) in outcome.failed {
                eprintln!("trial run {label} failed: {why}");
                let id = batch
                    .iter()
                    .find(|r| r.label() == label)
                    .map(|r| r.run_id())
                    .unwrap_or_default();
                failed.push((label, id));
            }
        }
    }
    Ok(failed)
}

/// A run's resolved spec as `<dir>/<id>.yaml`, where a worker that cannot expand it from the
/// experiment (a trial, a refit) reads it.
fn write_spec(dir: &Path, run: &Checked<RunSpec>) -> Result<()> {
    crate::track::atomic::write(
        &dir.join(format!("{}.yaml", run.run_id())),
        run.resolved_yaml().as_bytes(),
    )
}

/// The run `id` from the specs a search wrote: beside `manifest` (`<launch>/specs/<id>.yaml`, a
/// trial) or in `<out>/launch/specs/` (a refit, whichever launcher runs it), checked to be that
/// run.
pub fn spec_beside(manifest: &Path, out: &Path, id: &str) -> Result<Option<Checked<RunSpec>>> {
    let file = format!("{id}.yaml");
    let candidates = [
        manifest.parent().map(|d| d.join("specs").join(&file)),
        Some(out.join("launch").join("specs").join(&file)),
    ];
    let Some((path, text)) = candidates
        .into_iter()
        .flatten()
        .find_map(|p| std::fs::read_to_string(&p).ok().map(|t| (p, t)))
    else {
        return Ok(None);
    };
    let run = RunSpec::parse(&text, &path.display().to_string(), &[])?;
    if run.run_id() != id {
        bail!(
            "{}: holds run {}, not {id} (edited since the search wrote it?)",
            path.display(),
            run.run_id()
        );
    }
    Ok(Some(run))
}
