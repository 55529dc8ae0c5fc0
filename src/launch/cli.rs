//! The `opencarbon run` subcommand: its arguments, which launcher runs the sweep, and what it prints.

use std::path::PathBuf;

use anyhow::Result;

use super as launch;
use crate::backend::{self, DeviceChoice};
use crate::runner::{self, RunOptions, RunOutcome};
use crate::spec::Experiment;
use crate::track::mlflow;

mod dry_run;

/// Train and test the runs a spec describes; skips runs that are done.
#[derive(clap::Args)]
pub struct RunArgs {
    spec: PathBuf,
    /// cpu (libtorch CPU when built with `tch`, else flex), flex, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
    /// Experiment directory (default: results/<spec name>)
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override a spec value: --set train.lr=5e-4 (repeatable; value in YAML syntax)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Re-run even if the run is already done
    #[arg(long)]
    force: bool,
    /// No progress bar
    #[arg(long)]
    quiet: bool,
    /// Only the runs with variant=NAME, dataset=NAME, seed=N or fold=N (repeatable, all must hold)
    #[arg(long, value_name = "KEY=VALUE")]
    only: Vec<String>,
    /// List the runs and whether each is done, without running anything
    #[arg(long)]
    dry_run: bool,
    /// Write the spec's expectations (`expect:`), checked at the end, as JUnit XML to this file
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Do not write or refresh the report (results/<name>/report/) at the end of a sweep
    #[arg(long)]
    no_report: bool,
    /// Track nothing in MLflow, whatever the spec's `tracking:` or MLFLOW_TRACKING_URI say
    /// (workers get it as `--set tracking.enabled=false`)
    #[arg(long)]
    no_tracking: bool,
    /// Float32 arithmetic on CUDA: default (libtorch's: TF32 convolutions, fp32 matmuls),
    /// fp32 (strict) or tf32 (TF32 convolutions and matmuls)
    #[arg(long, default_value = "default")]
    precision: backend::Precision,
    /// local (this machine) or slurm (a job array; see docs/launchers.md). Default: the spec's
    /// `launcher.kind`, else local
    #[arg(long, value_enum)]
    launcher: Option<launch::LauncherKind>,
    /// Local launcher: this many runs at once, each in its own process (default: the spec's
    /// `launcher.jobs`, else 1: one after another in this process)
    #[arg(long)]
    jobs: Option<usize>,
    /// Slurm launcher: wait for the finishing job, then print the summary
    #[arg(long)]
    wait: bool,
    /// Worker mode: run line TASK of --manifest (what the launchers start)
    #[arg(long, requires = "manifest")]
    task: Option<usize>,
    /// Worker mode: the manifest the task indexes
    #[arg(long, requires = "task")]
    manifest: Option<PathBuf>,
}

pub fn main(mut args: RunArgs) -> Result<()> {
    if args.no_tracking {
        // As an override, so that --jobs workers and Slurm tasks, which repeat the overrides,
        // track nothing either.
        args.overrides.push("tracking.enabled=false".into());
    }
    let mut experiment = Experiment::load(&args.spec, &args.overrides)?;
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from("results").join(&experiment.name));
    let only = parse_only(&args.only)?;
    check_only_matches(&experiment, &only)?;
    if args.dry_run {
        let runs: Vec<&crate::checked::Checked<crate::spec::RunSpec>> = experiment
            .runs
            .iter()
            .filter(|r| r.matches(&only))
            .collect();
        for s in &experiment.searches {
            let studies = s.templates.iter().filter(|t| t.matches(&only)).count();
            println!(
                "variant {}: searched, not listed below: {studies} searches (dataset × seed × outer fold) × {} trials × {} inner folds = {} trial runs at most in {}, then {studies} refits",
                s.name,
                s.search.trials,
                s.search.inner_folds,
                studies * s.search.trials * s.search.inner_folds,
                launch::search::dir(&out).display()
            );
        }
        return dry_run::main(&runs, &out, &args.device, args.precision);
    }
    // MLflow: the spec's server, else MLFLOW_TRACKING_URI's (track::mlflow).
    let env_uri = std::env::var(mlflow::URI_ENV).ok();
    let tracking = experiment
        .tracking
        .target(&experiment.name, env_uri.as_deref());
    let options = RunOptions {
        device: args.device,
        out: out.clone(),
        progress: !args.quiet,
        force: args.force,
        precision: args.precision,
        tracking: tracking.clone(),
    };
    if let (Some(task), Some(manifest)) = (args.task, &args.manifest) {
        return launch::run_task(&experiment, &options, manifest, task);
    }
    if let Some(target) = &tracking {
        mlflow::remember_target(&out, target);
    }
    // MLflow: the report page, once written, as the experiment's `report` run.
    let track_report = |result: Result<()>| {
        if let (Some(target), false) = (&tracking, args.no_report) {
            mlflow::upload_report(target, &out);
        }
        result
    };
    let kind = args.launcher.unwrap_or(experiment.launcher.kind);
    let jobs = args.jobs.or(experiment.launcher.jobs).unwrap_or(1);
    let invocation = launch::Invocation {
        program: std::env::current_exe()?,
        spec: launch::absolute(&args.spec)?,
        out: launch::absolute(&out)?,
        overrides: args.overrides.clone(),
        device: options.device.to_string(),
        precision: args.precision.to_string(),
    };
    if !experiment.searches.is_empty() {
        let (slurm, name) = (experiment.launcher.slurm.clone(), experiment.name.clone());
        let rounds = if kind == launch::LauncherKind::Slurm {
            launch::search::Rounds::Slurm {
                invocation: &invocation,
                config: &slurm,
                name: &name,
            }
        } else if jobs > 1 {
            launch::search::Rounds::Workers {
                invocation: &invocation,
                jobs,
                progress: !args.quiet,
            }
        } else {
            launch::search::Rounds::InProcess(&options)
        };
        launch::search::run_searches(&mut experiment, &out, &only, rounds)?;
    }
    if kind == launch::LauncherKind::Slurm || jobs > 1 {
        if args.force {
            anyhow::bail!(
                "--force re-runs in this process only; with --jobs or --launcher slurm, remove the runs to redo from {}/runs first",
                out.display()
            );
        }
        let sweep = launch::Sweep {
            experiment: &experiment,
            invocation,
            only,
            progress: !args.quiet,
        };
        return match kind {
            // The finishing job writes the report; `mlflow-sync` uploads it.
            launch::LauncherKind::Slurm => sweep.slurm(args.wait, args.junit.as_deref()),
            launch::LauncherKind::Local => {
                track_report(sweep.local(jobs, !args.no_report, args.junit.as_deref()))
            }
        };
    }
    if experiment.runs.len() == 1 && only.is_empty() && experiment.expect.is_empty() {
        let spec = &experiment.runs[0];
        let (dir, outcome) = runner::run_waiting(spec, &options)?;
        let (verb, m) = match outcome {
            RunOutcome::Done(m) => ("finished", m),
            RunOutcome::Skipped(m) => ("already done, skipped", m),
            RunOutcome::Busy(holder) => anyhow::bail!("run {} is held by {holder}", spec.run_id()),
        };
        println!("run {} {verb}: {}", spec.run_id(), dir.display());
        println!(
            "test (best valid epoch {}, {} tiles): R² {:.4}  RMSE {:.4}  MAE {:.4}  MAPE {:.4}",
            m.best_epoch, m.n, m.r2, m.rmse, m.mae, m.mape
        );
        if !args.no_report {
            crate::report::refresh(&out);
        }
        return track_report(Ok(()));
    }
    let tally = launch::run_sweep(&experiment, &options, &only)?;
    track_report(launch::finish(
        &experiment,
        &out,
        tally,
        !args.no_report,
        args.junit.as_deref(),
    ))
}

/// An `--only` that selects no run is a typo, not an empty sweep: list what it could be.
fn check_only_matches(experiment: &Experiment, only: &[(String, String)]) -> Result<()> {
    let templates = experiment.searches.iter().flat_map(|s| &s.templates);
    let runs: Vec<_> = experiment.runs.iter().chain(templates).collect();
    if only.is_empty() || runs.iter().any(|r| r.matches(only)) {
        return Ok(());
    }
    let mut valid = String::new();
    for (key, _) in only {
        let mut values: Vec<String> = runs
            .iter()
            .filter_map(|r| match key.as_str() {
                "variant" => Some(r.variant.clone()),
                "dataset" => Some(r.dataset_label()),
                "seed" => Some(r.seed.to_string()),
                _ => r.split.fold().map(|f| f.to_string()),
            })
            .collect();
        values.sort();
        values.dedup();
        let values = if values.is_empty() {
            "none (the spec has no folds)".to_string()
        } else {
            values.join(", ")
        };
        valid.push_str(&format!("\n  {key}: {values}"));
    }
    let given: Vec<String> = only.iter().map(|(k, v)| format!("{k}={v}")).collect();
    anyhow::bail!(
        "--only {} matches none of the spec's {} runs; valid values:{valid}",
        given.join(" --only "),
        runs.len()
    )
}

pub(crate) fn parse_only(only: &[String]) -> Result<Vec<(String, String)>> {
    only.iter()
        .map(|o| match o.split_once('=') {
            Some((k, v)) if ["variant", "dataset", "seed", "fold"].contains(&k) => {
                Ok((k.to_string(), v.to_string()))
            }
            _ => Err(anyhow::anyhow!(
                "--only `{o}`: expected variant=NAME, dataset=NAME, seed=N or fold=N"
            )),
        })
        .collect()
}
