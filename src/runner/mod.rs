//! Runs a spec: build the city, split it, train, and write the run directory. The runner owns
//! *how* (seed, device, directories, logging, resume); the model and trainer own *what*.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::backend::{self, DeviceChoice};
use crate::checked::Checked;
use crate::data::{load_city, City, CityOptions};
use crate::spec::RunSpec;
use crate::track::lock::{Attempt, RunLock};
use crate::track::mlflow;
use crate::track::{
    atomic, meta, progress, CsvSink, MetricSink, RunDir, RunMeta, Sinks, TensorboardSink,
};
use crate::train::resume::Checkpoint;
use crate::train::{self, Hooks};
use crate::transfer;

use crate::record::state as resume;
pub use crate::record::TestMetrics;

/// What became of one run.
pub enum RunOutcome {
    Done(TestMetrics),
    /// It was already done (its artefacts all checked).
    Skipped(TestMetrics),
    /// Another live process holds its lock (it is training it); who.
    Busy(String),
}

pub struct RunOptions {
    pub device: DeviceChoice,
    /// Experiment directory; the run goes to `<out>/runs/<run-id>/`.
    pub out: PathBuf,
    /// Show a progress bar.
    pub progress: bool,
    /// Re-run even when the run is done.
    pub force: bool,
    /// Float32 arithmetic on CUDA (TF32 or not); recorded in meta.json.
    pub precision: backend::Precision,
    /// Also track the run in this MLflow server (`track::mlflow`; never fails or blocks a run).
    pub tracking: Option<mlflow::Target>,
}

/// Runs one spec end to end unless it is done, or another process is running it
/// ([`RunOutcome::Busy`]); returns its run directory and outcome.
pub fn run(spec: &Checked<RunSpec>, options: &RunOptions) -> Result<(PathBuf, RunOutcome)> {
    let path = options.out.join("runs").join(spec.run_id());
    // An unusable device is an error even when the run is already done.
    let device = backend::device(&options.device)?;
    backend::set_precision(&options.device, options.precision)?;
    match RunLock::try_acquire(&path)? {
        Attempt::Acquired(lock) => run_locked(spec, options, &device, lock),
        Attempt::Busy(holder) => Ok((path, RunOutcome::Busy(holder))),
    }
}

/// As [`run`], but waits for a run another process holds, then runs it unless that process
/// finished it.
pub fn run_waiting(spec: &Checked<RunSpec>, options: &RunOptions) -> Result<(PathBuf, RunOutcome)> {
    match run(spec, options)? {
        (path, RunOutcome::Busy(holder)) => {
            eprintln!("run {}: waiting for {holder}", spec.run_id());
            let lock = RunLock::acquire(&path)?;
            run_locked(spec, options, &backend::device(&options.device)?, lock)
        }
        other => Ok(other),
    }
}

fn run_locked(
    spec: &Checked<RunSpec>,
    options: &RunOptions,
    device: &crate::backend::Device,
    _lock: RunLock,
) -> Result<(PathBuf, RunOutcome)> {
    let run_id = spec.run_id();
    let path = options.out.join("runs").join(&run_id);
    if !options.force {
        match resume::check(&path, Some(spec)) {
            // The run id hashes the spec, not the data it names: a done run is stale when the
            // files it read have changed since (`meta.json`'s `data`).
            resume::State::Done(metrics) => match meta::data_changed(&path) {
                None => {
                    // MLflow: a done run that could not be sent then is sent now.
                    if let Some(target) = &options.tracking {
                        mlflow::complete_if_pending(target, &path, &mlflow_identity(spec));
                    }
                    return Ok((path, RunOutcome::Skipped(metrics)));
                }
                Some(file) => {
                    eprintln!("run {run_id}: data changed since this run: {file}; running it again")
                }
            },
            resume::State::Broken(why) => {
                eprintln!("run {run_id}: not trusted as done ({why}); running it again")
            }
            resume::State::NotDone(_) => {}
        }
    }
    let resume_from = resumable(&path, &run_id, options.force);
    // Finished fine-tunings are kept only for the attempt that continues their run.
    let fine_tuned = fine_tune_results(&path);
    if resume_from.is_none() && fine_tuned.exists() {
        std::fs::remove_dir_all(&fine_tuned)
            .with_context(|| format!("removing {}", fine_tuned.display()))?;
    }
    // Under the lock, so no one else writes here: the done marker goes first, then what killed
    // writers left behind.
    let marker = path.join("test_metrics.json");
    if marker.exists() {
        std::fs::remove_file(&marker).with_context(|| format!("removing {}", marker.display()))?;
    }
    let dir = RunDir::create(path.clone())?;
    atomic::remove_scratch(&dir.path);
    atomic::remove_scratch(&dir.path.join("checkpoints"));
    // A killed attempt's event file would show its scalars beside this attempt's.
    let tb = dir.tensorboard_dir();
    if tb.exists() {
        std::fs::remove_dir_all(&tb).with_context(|| format!("removing {}", tb.display()))?;
    }
    dir.write_atomic("spec.resolved.yaml", spec.resolved_yaml().as_bytes())?;
    let (git_commit, git_dirty) = meta::git_state();
    let report = backend::report();
    let mut run_meta = RunMeta {
        run_id: run_id.clone(),
        git_commit,
        git_dirty,
        opencarbon_version: env!("CARGO_PKG_VERSION").into(),
        burn_version: env!("OPENCARBON_BURN_VERSION").into(),
        polars_version: env!("OPENCARBON_POLARS_VERSION").into(),
        tensorboard_rs_version: env!("OPENCARBON_TENSORBOARD_RS_VERSION").into(),
        backend: backend::backend_name(&options.device).into(),
        device: options.device.to_string(),
        libtorch_version: report.libtorch_version.clone(),
        precision: options.precision,
        seed: spec.seed,
        started: meta::now(),
        finished: None,
        status: "running".into(),
        failure: None,
        epochs_run: None,
        best_epoch: None,
        train_seconds: None,
        ..Default::default()
    };
    run_meta.record_provenance(&options.device);
    run_meta.resumed_from = resume_from.as_ref().map(|c| {
        let p = &c.progress;
        if p.finished {
            format!("epoch {}, after training", p.epochs_run)
        } else {
            format!("epoch {}, batch {}", p.epoch, p.next_batch)
        }
    });
    if let Some(at) = &run_meta.resumed_from {
        eprintln!("run {run_id}: resuming from its checkpoint at {at}");
    }
    dir.write_json("meta.json", &run_meta)?;
    // MLflow: the run's MLflow run found or created, RUNNING (a warning at worst), and its
    // metric sink (`mlf`).
    let tracker = options
        .tracking
        .as_ref()
        .map(|target| mlflow::Tracker::start(target, &dir.path, mlflow_identity(spec)));
    let mlf = tracker.as_ref().map(mlflow::Tracker::sink);
    let result =
        run_in(spec, &dir, device, options, &mut run_meta, resume_from, mlf).and_then(|metrics| {
            check_finite(&metrics)?;
            run_meta.status = "done".into();
            run_meta.finished = Some(meta::now());
            run_meta.epochs_run = Some(metrics.epochs_run);
            run_meta.best_epoch = Some(metrics.best_epoch);
            run_meta.train_seconds = Some(metrics.train_seconds);
            dir.write_json("meta.json", &run_meta)?;
            // Last: its existence marks the run as done.
            dir.write_json("test_metrics.json", &metrics)?;
            // Done: the resumable checkpoint (three copies of the weights) is no longer needed.
            let resume = resume_path(&path);
            if resume.exists() {
                std::fs::remove_file(&resume)
                    .with_context(|| format!("removing {}", resume.display()))?;
            }
            let fine_tuned = fine_tune_results(&path);
            if fine_tuned.exists() {
                std::fs::remove_dir_all(&fine_tuned)
                    .with_context(|| format!("removing {}", fine_tuned.display()))?;
            }
            Ok(metrics)
        });
    let outcome = match result {
        Ok(metrics) => Ok((path, RunOutcome::Done(metrics))),
        Err(e) if crate::track::preempt::is_preempted(&e) => {
            run_meta.status = "preempted".into();
            run_meta.finished = Some(meta::now());
            run_meta.failure = Some(format!("{e:#}"));
            if let Err(meta_error) = dir.write_json("meta.json", &run_meta) {
                eprintln!("run {run_id}: could not record the preemption: {meta_error:#}");
            }
            Err(e)
        }
        Err(e) => {
            run_meta.status = "failed".into();
            run_meta.finished = Some(meta::now());
            run_meta.failure = Some(format!("{e:#}"));
            // Best effort (the disk may be full): without test_metrics.json the run is not done
            // either way.
            if let Err(meta_error) = dir.write_json("meta.json", &run_meta) {
                eprintln!("run {run_id}: could not record the failure: {meta_error:#}");
            }
            Err(e.context(format!(
                "run {run_id} failed (see {}/meta.json)",
                path.display()
            )))
        }
    };
    // MLflow: the run directory as it ended (metrics, records, status), or a warning.
    if let Some(tracker) = &tracker {
        tracker.finish();
    }
    outcome
}

/// Who a run is in MLflow: its id, and its label as the MLflow run's name.
/// A search's trial run is pruned as the search said beside its spec
/// (`<out>/launch/prune/<run id>.json`, `tune::PruneFile`); any other run, or a trial of a search
/// without pruning, trains to its end.
#[allow(clippy::type_complexity)]
fn prune_hook(
    spec: &RunSpec,
    run_dir: &std::path::Path,
) -> Result<Option<Box<dyn FnMut(usize, &crate::metrics::Metrics) -> bool>>> {
    if !spec.tuning.as_ref().is_some_and(|t| t.is_trial()) {
        return Ok(None);
    }
    let Some(out) = run_dir.parent().and_then(|runs| runs.parent()) else {
        return Ok(None);
    };
    let path =
        crate::tune::PruneFile::dir(&out.join("launch")).join(format!("{}.json", spec.run_id()));
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let file: crate::tune::PruneFile =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let metric = file.metric.clone();
    let mut decide = file.decider();
    Ok(Some(Box::new(move |epoch, m: &crate::metrics::Metrics| {
        let value = m
            .named()
            .iter()
            .find(|(name, _)| *name == metric)
            .map_or(f64::NAN, |(_, v)| *v);
        decide(epoch as u64, value)
    })))
}

fn mlflow_identity(spec: &RunSpec) -> mlflow::RunIdentity {
    mlflow::RunIdentity {
        run_id: spec.run_id(),
        label: spec.label(),
    }
}

fn resume_path(run: &std::path::Path) -> PathBuf {
    run.join("checkpoints").join(crate::train::resume::FILE)
}

/// Where a transfer run's finished fine-tunings keep their results until the run is done.
fn fine_tune_results(run: &std::path::Path) -> PathBuf {
    run.join("checkpoints").join("finetune")
}

/// The run's resumable checkpoint, when one is there, whole, its own, and its data unchanged;
/// anything else is removed with a warning (the run then trains from the start). `--force`
/// always starts again.
fn resumable(run: &std::path::Path, run_id: &str, force: bool) -> Option<Checkpoint> {
    let path = resume_path(run);
    if !path.exists() {
        return None;
    }
    let why = if force {
        "--force".to_string()
    } else {
        match Checkpoint::read(&path) {
            Ok(Some(c)) if c.progress.owner != run_id => {
                format!("it belongs to {}", c.progress.owner)
            }
            Ok(Some(c)) => match meta::data_changed(run) {
                None => return Some(c),
                Some(file) => format!("the data changed since: {file}"),
            },
            Ok(None) => return None,
            Err(e) => format!("{e:#}"),
        }
    };
    eprintln!(
        "run {run_id}: not resuming from {} ({why}); training from the start",
        path.display()
    );
    std::fs::remove_file(&path).ok();
    None
}

/// Non-finite test metrics are a failed run, never a finished one.
fn check_finite(m: &TestMetrics) -> Result<()> {
    let values = [
        ("R²", m.r2),
        ("RMSE", m.rmse),
        ("MAE", m.mae),
        ("MAPE", m.mape),
    ];
    if let Some((name, v)) = values.iter().find(|(_, v)| !v.is_finite()) {
        anyhow::bail!(
            "test {name} is {v} (non-finite predictions, or every test target equal): not recorded as done"
        );
    }
    Ok(())
}

fn run_in(
    spec: &Checked<RunSpec>,
    dir: &RunDir,
    device: &crate::backend::Device,
    options: &RunOptions,
    run_meta: &mut RunMeta,
    resume_from: Option<Checkpoint>,
    mlflow_sink: Option<Box<dyn MetricSink>>,
) -> Result<TestMetrics> {
    // Every city is loaded and checked before anything is fitted.
    let transfer = match &spec.transfer {
        Some(t) => Some((t, transfer::load(spec.transfer_source(), t)?)),
        None => None,
    };
    let alone;
    // `buffer: auto` resolved (the transfer loader keeps only the split, so not for transfer).
    let (city, split, auto_buffer) = match &transfer {
        Some((_, cities)) => (&cities.union, cities.split.clone(), None),
        None => {
            alone = load_city(&spec.dataset, &CityOptions::default())?;
            let (split, auto_buffer) = spec.split.split_recorded(&alone, spec.seed)?;
            (&alone, split, auto_buffer)
        }
    };
    // Hashed once loaded, so that a missing or bad file fails with the loader's message.
    let own_city = transfer.is_none().then_some(city);
    run_meta.data = spec.data_fingerprint(own_city)?;
    dir.write_json("meta.json", run_meta)?;
    // Every run records its split; a transfer run its source's (the part it trains on).
    let listed: Vec<usize> = match &transfer {
        Some((_, cities)) => cities.parts[0]
            .range
            .clone()
            .filter(|&i| city.emission[i] > 0.0)
            .collect(),
        None => city.samples(),
    };
    dir.write_atomic(
        "split.csv",
        crate::data::split::to_csv(city, &split, &listed).as_bytes(),
    )?;
    if let Some(auto_buffer) = &auto_buffer {
        dir.write_json("split_buffer.json", auto_buffer)?;
    }
    if let Some(baseline) = &spec.baseline {
        let baseline = baseline.baseline();
        let metrics = run_baseline(&baseline, city, &split, dir)?;
        if transfer.is_none() {
            // What `predict` needs to map an area with this baseline, as a network run keeps it:
            // the inputs it reads and its area of applicability.
            let modalities = spec.modalities_read();
            let standardizer =
                crate::data::Standardizer::fit(city, &split.train, spec.model.clip_covariates);
            let normalization = crate::train::normalization::Normalization::new(
                city,
                standardizer,
                (0.0, 1.0),
                &modalities,
                &split.train,
                spec.seed,
            );
            dir.write_json(crate::train::normalization::FILE, &normalization)?;
        }
        if let Some((config, cities)) = &transfer {
            let modalities = spec.modalities_read();
            let (rows, predictions) =
                transfer::baseline_rows(&baseline, &modalities, cities, config, spec.seed)?;
            write_transfer(dir, &rows, predictions)?;
        }
        return Ok(metrics);
    }
    let mut sinks = Sinks(vec![
        Box::new(CsvSink::create(&dir.file("metrics.csv"))?) as Box<dyn MetricSink>,
        Box::new(TensorboardSink::create(&dir.tensorboard_dir())?),
    ]);
    // MLflow: each epoch's scalars, sent at the trainer's flushes.
    sinks.0.extend(mlflow_sink);
    let bar = options.progress.then(|| {
        progress::run_bar(
            spec.train.epochs,
            &format!("{} {}", spec.name, spec.run_id()),
        )
    });
    let mut data = train::Prepared::new(city, &split, spec.model_params(), &spec.train, device);
    let normalization = crate::train::normalization::Normalization::of(
        &data,
        &spec.model.modalities,
        &split.train,
        spec.seed,
    );
    dir.write_json(crate::train::normalization::FILE, &normalization)?;
    let prune = prune_hook(spec, &dir.path)?;
    let (report, best_model) = train::fit(
        &data,
        &split,
        spec.train_params(),
        spec.train.init_seed.unwrap_or(spec.seed),
        Hooks {
            sink: &mut sinks,
            progress: bar.clone(),
            checkpoint: Some(dir.best_checkpoint()),
            resume: Some(train::trainer::Resume {
                path: resume_path(&dir.path),
                owner: spec.run_id(),
                from: resume_from,
            }),
            prune,
        },
    )?;
    if let Some(bar) = bar {
        bar.finish();
    }
    run_meta.checkpoints = Some((report.checkpoints, report.checkpoint_seconds));
    if let Some((config, cities)) = &transfer {
        let aoa = normalization
            .applicability
            .as_ref()
            .context("the normalisation of a network run carries its area of applicability")?;
        let (rows, predictions) = transfer::network_rows(
            &best_model,
            &mut data,
            aoa,
            cities,
            config,
            &spec.train,
            spec.seed,
            &mut sinks,
            Some(&fine_tune_results(&dir.path)),
        )?;
        write_transfer(dir, &rows, predictions)?;
    }
    // Dropping the TensorBoard writer completes its event file.
    drop(sinks);
    write_predictions(dir, city, &report.test_predictions)?;
    Ok(TestMetrics {
        r2: report.test.r2,
        rmse: report.test.rmse,
        mae: report.test.mae,
        mape: report.test.mape,
        n: report.test.n,
        best_epoch: report.best_epoch,
        valid: report.best_valid,
        epochs_run: report.epochs_run,
        stopped_early: report.stopped_early,
        pruned: report.pruned,
        train_seconds: report.train_seconds,
    })
}

/// `transfer.json` (the rows) and `transfer_predictions.csv`.
fn write_transfer(
    dir: &RunDir,
    rows: &[transfer::TransferRow],
    predictions: transfer::TransferPredictions,
) -> Result<()> {
    dir.write_atomic("transfer_predictions.csv", &predictions.into_bytes())?;
    dir.write_json("transfer.json", &rows)
}

/// A baseline through the same split and metrics: fitted on train, scored on valid and test.
fn run_baseline(
    baseline: &crate::baselines::Baseline,
    city: &City,
    split: &crate::data::Split,
    dir: &RunDir,
) -> Result<TestMetrics> {
    let started = std::time::Instant::now();
    let valid_split = crate::data::Split {
        train: split.train.clone(),
        valid: vec![],
        test: split.valid.clone(),
    };
    let (valid, _) = crate::baselines::evaluate(baseline, city, &valid_split)?;
    let (test, predicted, fitted) = crate::baselines::evaluate_fitted(baseline, city, split)?;
    if let Some(fitted) = &fitted {
        dir.write_json(crate::baselines::fitted::FILE, fitted)?;
    }
    let rows: Vec<(usize, f64, f64)> = split
        .test
        .iter()
        .zip(&predicted)
        .map(|(&i, &p)| (i, city.target(i), p))
        .collect();
    write_predictions(dir, city, &rows)?;
    let mut csv = CsvSink::create(&dir.file("metrics.csv"))?;
    for (split_name, m) in [("valid", &valid), ("test", &test)] {
        for (name, value) in m.named() {
            csv.log(0, split_name, name, value)?;
        }
    }
    csv.flush()?;
    Ok(TestMetrics {
        r2: test.r2,
        rmse: test.rmse,
        mae: test.mae,
        mape: test.mape,
        n: test.n,
        best_epoch: 0,
        valid,
        epochs_run: 0,
        stopped_early: false,
        pruned: false,
        train_seconds: started.elapsed().as_secs_f64(),
    })
}

fn write_predictions(dir: &RunDir, city: &City, rows: &[(usize, f64, f64)]) -> Result<()> {
    let mut text = String::from("x,y,target,prediction\n");
    for &(i, target, predicted) in rows {
        let k = city.keys[i];
        writeln!(text, "{},{},{target},{predicted}", k.x, k.y)?;
    }
    dir.write_atomic("predictions.csv", text.as_bytes())
}
