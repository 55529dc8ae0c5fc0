//! The training loop of MODEL.md: L1-sum + α·InfoNCE (after `contrastive_epoch`), Adam with
//! coupled weight decay, validation every N epochs on the eval-mode model, the best-validation-R²
//! checkpoint, early stopping, and the test of that checkpoint.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Device, Tensor, TensorData};
use indicatif::ProgressBar;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::adam::Adam;
use super::config::{Schedule, StoppingRule, TrainConfig};
use super::loss::{info_nce, l1_sum};
use super::order::Replay;
use super::resume::{Checkpoint, Progress};
use crate::checked::Checked;
use crate::data::{BatchPlan, City, DeviceTiles, NeighbourIndex, Split, Standardizer};
use crate::metrics::Metrics;
use crate::model::config::EncoderBatching;
use crate::model::{ModelConfig, OpenCarbon};
use crate::track::preempt::{self, Preempted};
use crate::track::MetricSink;

/// A city made ready for one run: tiles on the device, neighbourhoods, target scaling.
pub struct Prepared<'a> {
    pub city: &'a City,
    pub tiles: DeviceTiles,
    pub neighbours: Option<NeighbourIndex>,
    pub model: Checked<ModelConfig>,
    /// Targets are trained as (y − shift) / scale; (0, 1) unless `standardize_target`.
    pub target_shift: f64,
    pub target_scale: f64,
    /// The covariate standardisation (training tiles' mean and std), kept so that a run directory
    /// can carry it for prediction on new areas.
    pub standardizer: Option<Standardizer>,
}

impl<'a> Prepared<'a> {
    pub fn new(
        city: &'a City,
        split: &Split,
        model: &Checked<ModelConfig>,
        train: &TrainConfig,
        device: &Device,
    ) -> Self {
        let standardizer = Standardizer::fit(city, &split.train, model.clip_covariates);
        let (shift, scale) = target_scaling(city, &split.train, train.standardize_target);
        Self::with_scaling(city, standardizer, shift, scale, model, device)
    }

    /// A city prepared with given normalisation (a trained run's, for prediction on new areas).
    pub fn with_scaling(
        city: &'a City,
        standardizer: Option<Standardizer>,
        target_shift: f64,
        target_scale: f64,
        model: &Checked<ModelConfig>,
        device: &Device,
    ) -> Self {
        Self {
            city,
            tiles: DeviceTiles::upload(city, standardizer.as_ref(), device),
            neighbours: (model.neighbourhood > 0)
                .then(|| NeighbourIndex::with_order(city, model.neighbourhood, model.window_order)),
            model: model.clone(),
            target_shift,
            target_scale,
            standardizer,
        }
    }

    fn plan(&self, samples: &[usize], batching: EncoderBatching) -> BatchPlan {
        BatchPlan::new(
            samples,
            self.neighbours.as_ref(),
            batching,
            self.model.missing_neighbour,
        )
    }

    fn scaled_targets(&self, samples: &[usize], device: &Device) -> Tensor<1> {
        let y: Vec<f32> = samples
            .iter()
            .map(|&i| ((self.city.target(i) - self.target_shift) / self.target_scale) as f32)
            .collect();
        Tensor::from_data(TensorData::new(y, [samples.len()]), device)
    }
}

/// The target's (shift, scale): mean and std of ln-emission over `train` when `standardize`,
/// else (0, 1).
pub fn target_scaling(city: &City, train: &[usize], standardize: bool) -> (f64, f64) {
    if !standardize {
        return (0.0, 1.0);
    }
    let y: Vec<f64> = train.iter().map(|&i| city.target(i)).collect();
    let mean = y.iter().sum::<f64>() / y.len() as f64;
    let var = y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / y.len() as f64;
    (mean, if var > 1e-12 { var.sqrt() } else { 1.0 })
}

/// Predictions (log scale) of an eval-mode model for `samples`, in order.
///
/// Every tile the samples need (themselves and their windows) is encoded once, in chunks of
/// `batch_size` tiles; fusion, neighbourhood and head then run per chunk of samples on the stored
/// embeddings. For all samples of a city this is whole-city inference, each tile encoded once.
/// Eval-mode BatchNorm uses running statistics, so this equals batch-wise evaluation.
pub fn predict(
    model: &OpenCarbon,
    data: &Prepared,
    samples: &[usize],
    batch_size: usize,
) -> Vec<f64> {
    // The weights stay as they are for the whole pass.
    crate::backend::with_prepared_weights(|| predict_unscoped(model, data, samples, batch_size))
}

fn predict_unscoped(
    model: &OpenCarbon,
    data: &Prepared,
    samples: &[usize],
    batch_size: usize,
) -> Vec<f64> {
    let device = data.tiles.device().clone();
    let batch_size = batch_size.max(1);
    let plan = data.plan(samples, EncoderBatching::Distinct);
    let mut chunks: Vec<Vec<(crate::model::Modality, Tensor<2>)>> = Vec::new();
    for tiles in plan.tiles.chunks(batch_size) {
        chunks.push(model.encode(data.tiles.gather(tiles, false), 1));
    }
    if chunks.is_empty() {
        return vec![];
    }
    let embeddings: Vec<(crate::model::Modality, Tensor<2>)> = model
        .modalities
        .iter()
        .enumerate()
        .map(|(m, &modality)| {
            (
                modality,
                Tensor::cat(chunks.iter().map(|c| c[m].1.clone()).collect(), 0),
            )
        })
        .collect();
    let w2 = if plan.window_rows.is_empty() {
        0
    } else {
        plan.window_rows.len() / samples.len()
    };
    let mut out = Vec::with_capacity(samples.len());
    for start in (0..samples.len()).step_by(batch_size) {
        let end = (start + batch_size).min(samples.len());
        let part = BatchPlan {
            tiles: vec![],
            centre_rows: plan.centre_rows[start..end].to_vec(),
            window_rows: plan.window_rows[start * w2..end * w2].to_vec(),
            encode_chunks: 1,
        };
        let output = model.fuse(embeddings.clone(), &part.layout(&device));
        let values = output
            .prediction
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32 predictions");
        out.extend(
            values
                .iter()
                .map(|&v| v as f64 * data.target_scale + data.target_shift),
        );
    }
    out
}

pub fn evaluate(
    model: &OpenCarbon,
    data: &Prepared,
    samples: &[usize],
    batch_size: usize,
) -> (Metrics, Vec<f64>) {
    let predicted = predict(model, data, samples, batch_size);
    let target: Vec<f64> = samples.iter().map(|&i| data.city.target(i)).collect();
    (Metrics::compute(&target, &predicted), predicted)
}

/// Where a run reports to; all optional except the sink.
pub struct Hooks<'a> {
    pub sink: &'a mut dyn MetricSink,
    pub progress: Option<ProgressBar>,
    /// Where the best checkpoint is saved (safetensors), if anywhere.
    pub checkpoint: Option<PathBuf>,
    /// Where the resumable checkpoint goes, how often, and the one to continue from.
    pub resume: Option<Resume>,
    /// A search's pruner (issue 31): called after each validation with the epoch and the
    /// validation metrics; true stops the run there, as pruned.
    pub prune: Option<Box<dyn FnMut(usize, &Metrics) -> bool + 'a>>,
}

/// The resumable checkpoint of one run (`train::resume`).
pub struct Resume {
    /// `checkpoints/resume.ckpt` of the run.
    pub path: PathBuf,
    /// Who owns it (the run id): a checkpoint of another owner is never continued.
    pub owner: String,
    /// A checkpoint read back to continue from (the runner checked its owner).
    pub from: Option<Checkpoint>,
}

#[derive(Debug, Clone)]
pub struct TrainReport {
    pub best_epoch: usize,
    pub best_valid: Metrics,
    pub test: Metrics,
    /// (tile index, target, prediction) on the test split.
    pub test_predictions: Vec<(usize, f64, f64)>,
    pub epochs_run: usize,
    pub stopped_early: bool,
    /// Stopped by a search's pruner (`Hooks::prune`).
    pub pruned: bool,
    pub train_seconds: f64,
    /// Mean training loss per sample of each epoch.
    pub train_loss: Vec<f64>,
    /// Resumable checkpoints this attempt wrote, and the seconds they took (inside
    /// `train_seconds`).
    pub checkpoints: usize,
    pub checkpoint_seconds: f64,
}

/// One optimisation step on `batch` (sample tile indices): forward on the distinct (or
/// per-position) tiles, L1-sum (+ α·InfoNCE when `contrastive`), backward, Adam. Returns the
/// updated model and the detached loss terms (plain tensors, read without a device sync).
pub fn train_step(
    model: OpenCarbon,
    optimizer: &mut Adam,
    data: &Prepared,
    batch: &[usize],
    config: &TrainConfig,
    contrastive: bool,
    autodiff: &Device,
) -> Result<(OpenCarbon, Tensor<1>, Option<Tensor<1>>)> {
    let plan = data.plan(batch, data.model.encoder_batching);
    let inputs = data.tiles.gather(&plan.tiles, true);
    let mut targets = data.scaled_targets(batch, autodiff);
    if crate::fault::at("batch") == Some(crate::fault::Action::NaN) {
        targets = targets * f32::NAN;
    }
    step_on(
        model,
        optimizer,
        inputs,
        &plan.layout(autodiff),
        targets,
        config,
        contrastive,
    )
}

/// The loss terms of an epoch's batches so far: device tensors not yet read, after the values
/// an earlier attempt read (a resumed epoch), so the epoch's mean sums the same numbers in the
/// same order.
#[derive(Default)]
struct EpochLosses {
    read_l1: Vec<f32>,
    read_nce: Vec<f32>,
    l1: Vec<Tensor<1>>,
    nce: Vec<Tensor<1>>,
    seen: usize,
}

impl EpochLosses {
    fn resumed(progress: &Progress) -> Self {
        Self {
            read_l1: progress.l1_terms.clone(),
            read_nce: progress.nce_terms.clone(),
            seen: progress.seen,
            ..Self::default()
        }
    }

    /// Every term's value, earlier attempts' first; an error naming the first batch whose loss
    /// is not finite (read once per epoch, so no batch waits on the device).
    fn read(&mut self) -> Result<(Vec<f32>, Vec<f32>)> {
        let read = |done: &[f32], terms: Vec<Tensor<1>>, name: &str| -> Result<Vec<f32>> {
            let mut values = done.to_vec();
            if !terms.is_empty() {
                values.extend(
                    Tensor::cat(terms, 0)
                        .into_data()
                        .try_to_vec::<f32>()
                        .map_err(|e| anyhow::anyhow!("reading the {name} loss: {e:?}"))?,
                );
            }
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                bail!(
                    "the {name} loss is {} at batch {} of {}: the run stops as failed",
                    values[i],
                    i + 1,
                    values.len()
                );
            }
            Ok(values)
        };
        let l1 = read(&self.read_l1, std::mem::take(&mut self.l1), "L1")?;
        let nce = read(&self.read_nce, std::mem::take(&mut self.nce), "InfoNCE")?;
        self.read_l1.clone_from(&l1);
        self.read_nce.clone_from(&nce);
        Ok((l1, nce))
    }
}

/// How an epoch ended.
enum EpochEnd {
    /// Every batch ran: the mean L1 per sample, the mean InfoNCE per batch (when contrastive).
    Done(f64, Option<f64>),
    /// A signal asked the process to stop after batch `next_batch` − 1; the losses so far.
    Stopped {
        next_batch: usize,
        losses: EpochLosses,
    },
}

/// One pass over `order` in batches of `config.batch_size`, from batch `first` (a batch of one is
/// skipped: BatchNorm cannot normalise a single sample in training mode). Stops early, after a
/// whole step, when a signal asked the process to stop ([`crate::track::preempt`]).
#[allow(clippy::too_many_arguments)]
fn train_epoch(
    mut model: OpenCarbon,
    optimizer: &mut Adam,
    data: &Prepared,
    order: &[usize],
    first: usize,
    mut losses: EpochLosses,
    config: &TrainConfig,
    contrastive: bool,
    autodiff: &Device,
) -> Result<(OpenCarbon, EpochEnd)> {
    for (index, batch) in order.chunks(config.batch_size).enumerate().skip(first) {
        if batch.len() < 2 {
            continue;
        }
        let (next, l1, nce) =
            train_step(model, optimizer, data, batch, config, contrastive, autodiff)?;
        model = next;
        losses.l1.push(l1);
        losses.nce.extend(nce);
        losses.seen += batch.len();
        if preempt::requested().is_some() {
            return Ok((
                model,
                EpochEnd::Stopped {
                    next_batch: index + 1,
                    losses,
                },
            ));
        }
    }
    let seen = losses.seen;
    let (l1, nce) = losses.read()?;
    let l1_total: f64 = l1.iter().map(|&v| v as f64).sum();
    let mean_nce =
        (!nce.is_empty()).then(|| nce.iter().map(|&v| v as f64).sum::<f64>() / nce.len() as f64);
    Ok((
        model,
        EpochEnd::Done(l1_total / seen.max(1) as f64, mean_nce),
    ))
}

/// The optimisation step on prepared inputs (shared by [`train_step`] and the benchmark's
/// authors' data path, which builds its inputs differently).
pub fn step_on(
    model: OpenCarbon,
    optimizer: &mut Adam,
    inputs: crate::model::TileBatch,
    layout: &crate::model::BatchLayout,
    targets: Tensor<1>,
    config: &TrainConfig,
    contrastive: bool,
) -> Result<(OpenCarbon, Tensor<1>, Option<Tensor<1>>)> {
    let output = model.forward(inputs, layout);
    let l1 = l1_sum(output.prediction.clone(), targets);
    let mut loss = l1.clone();
    let mut nce_term = None;
    if contrastive {
        let [a, b] = config.contrastive.pair;
        let nce = info_nce(
            output
                .embedding(a)
                .context("contrastive modality missing")?,
            output
                .embedding(b)
                .context("contrastive modality missing")?,
            &config.contrastive,
        );
        loss = loss + nce.clone() * config.alpha;
        nce_term = Some(nce.detach().without_autodiff());
    }
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let model = optimizer.step(config.lr, model, grads);
    Ok((model, l1.detach().without_autodiff(), nce_term))
}

/// The optimiser of MODEL.md: Adam with coupled L2 weight decay (torch's `Adam(weight_decay=…)`).
pub fn optimizer(config: &TrainConfig) -> Adam {
    Adam::new(config)
}

/// Trains a fresh network on `split.train`, selects on `split.valid`, tests on `split.test`.
pub fn train(
    city: &City,
    split: &Split,
    model_config: &Checked<ModelConfig>,
    config: &Checked<TrainConfig>,
    seed: u64,
    device: &Device,
    hooks: Hooks,
) -> Result<TrainReport> {
    let data = Prepared::new(city, split, model_config, config, device);
    Ok(fit(&data, split, config, seed, hooks)?.0)
}

/// [`train`] on a prepared city; also returns the best-validation model (eval mode).
///
/// With `hooks.resume`, writes the resumable checkpoint as `train.checkpoint_every` says and when a
/// signal stops the run (then returns [`Preempted`]), and continues from `hooks.resume.from`.
pub fn fit(
    data: &Prepared,
    split: &Split,
    config: &Checked<TrainConfig>,
    seed: u64,
    mut hooks: Hooks,
) -> Result<(TrainReport, OpenCarbon)> {
    let city = data.city;
    let device = data.tiles.device().clone();
    let autodiff = device.clone().autodiff();
    let mut model = data.model.init_seeded(&city.shapes(), &autodiff, seed)?;
    let mut optimizer = optimizer(config);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let started = Instant::now();

    let mut best: Option<(usize, Metrics, OpenCarbon)> = None;
    let owner = hooks
        .resume
        .as_ref()
        .map_or(String::new(), |r| r.owner.clone());
    let mut state = Progress::start(owner);
    let mut stopped_early = false;
    let mut pruned = false;
    let mut order = split.train.clone();
    let replay = match &config.batch_order {
        Some(path) => Some(Replay::read(path, city, &split.train, config.epochs)?),
        None => None,
    };
    let (resume, sink) = (hooks.resume, hooks.sink);
    let mut sink = Recorded {
        sink,
        logged: vec![],
    };
    let mut losses = EpochLosses::default();
    if let Some(from) = resume.as_ref().and_then(|r| r.from.as_ref()) {
        model = model
            .try_load_record(record_from(&from.model)?)
            .map_err(|e| {
                anyhow::anyhow!("the resumable checkpoint's weights do not fit this network: {e}")
            })?;
        optimizer.load_state(&from.optimizer, &model)?;
        rng.set_word_pos(from.rng_word_pos()?);
        if let (Some((epoch, metrics)), Some(bytes)) = (&from.progress.best, &from.best_model) {
            let best_model = data
                .model
                .init(&city.shapes(), &device)?
                .try_load_record(record_from(bytes)?)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "the resumable checkpoint's best weights do not fit this network: {e}"
                    )
                })?;
            // The best file on disk may be a killed attempt's, ahead of this checkpoint.
            if let Some(path) = &hooks.checkpoint {
                save_checkpoint(&best_model, path)?;
            }
            best = Some((*epoch, *metrics, best_model));
        }
        state = from.progress.clone();
        stopped_early = state.stopped_early;
        // Each epoch shuffles the previous epoch's order, so the order is state even between
        // epochs.
        if !state.order.is_empty() {
            order.clone_from(&state.order);
        }
        if state.next_batch > 0 {
            losses = EpochLosses::resumed(&state);
        }
        for (epoch, split, metric, value) in std::mem::take(&mut state.logged) {
            sink.log(epoch, &split, &metric, value)?;
        }
        if let Some(bar) = &hooks.progress {
            bar.set_position(state.epochs_run as u64);
        }
    }
    let timing = std::cell::Cell::new((0usize, 0.0f64));
    let save = |model: &OpenCarbon,
                optimizer: &Adam,
                rng: &ChaCha8Rng,
                order: &Vec<usize>,
                state: &Progress,
                best: &Option<(usize, Metrics, OpenCarbon)>,
                logged: &[(usize, String, String, f64)]|
     -> Result<()> {
        let Some(resume) = &resume else {
            return Ok(());
        };
        let began = Instant::now();
        let mut progress = state.clone();
        progress.order.clone_from(order);
        progress.rng_word_pos = rng.get_word_pos().to_string();
        progress.best = best.as_ref().map(|(e, m, _)| (*e, *m));
        progress.train_seconds = state.train_seconds + started.elapsed().as_secs_f64();
        progress.logged = logged.to_vec();
        Checkpoint {
            progress,
            // The eval copy: it folds pending running-statistics updates in first.
            model: record_bytes(&model.valid())?,
            best_model: best.as_ref().map(|(_, _, m)| record_bytes(m)).transpose()?,
            optimizer: optimizer.state_bytes()?,
        }
        .write(&resume.path)?;
        let (n, seconds) = timing.get();
        timing.set((n + 1, seconds + began.elapsed().as_secs_f64()));
        Ok(())
    };
    let mut last_checkpoint = Instant::now();

    let last_epoch = if state.finished { 0 } else { config.epochs };
    for epoch in state.epoch..=last_epoch {
        let first = state.next_batch;
        if first == 0 {
            match &replay {
                Some(replay) => order.copy_from_slice(replay.epoch(epoch)),
                None => order.shuffle(&mut rng),
            }
        }
        // The epoch as the schedule counts it (the script counts from 0).
        let counted = match config.schedule {
            Schedule::Opencarbon => epoch,
            Schedule::Script => epoch - 1,
        };
        let contrastive = config.alpha > 0.0 && counted > config.contrastive_epoch;
        let (next, end) = train_epoch(
            model,
            &mut optimizer,
            data,
            &order,
            first,
            std::mem::take(&mut losses),
            &config.for_epoch(epoch),
            contrastive,
            &autodiff,
        )
        .with_context(|| format!("training stopped at epoch {epoch}"))?;
        model = next;
        let (mean_l1, mean_nce) = match end {
            EpochEnd::Done(l1, nce) => (l1, nce),
            EpochEnd::Stopped {
                next_batch,
                mut losses,
            } => {
                let (l1_terms, nce_terms) = losses.read()?;
                let stopped = Progress {
                    epoch,
                    next_batch,
                    l1_terms,
                    nce_terms,
                    seen: losses.seen,
                    ..state.clone()
                };
                return Err(stop(
                    save(
                        &model,
                        &optimizer,
                        &rng,
                        &order,
                        &stopped,
                        &best,
                        &sink.logged,
                    ),
                    epoch,
                    next_batch,
                ));
            }
        };
        state.epochs_run = epoch;
        state.train_loss.push(mean_l1);
        sink.log(epoch, "train", "l1", mean_l1)?;
        if let Some(nce) = mean_nce {
            sink.log(epoch, "train", "infonce", nce)?;
        }

        let validate = match config.schedule {
            Schedule::Opencarbon => epoch % config.validate_every == 0 || epoch == config.epochs,
            Schedule::Script => counted % config.validate_every == 0,
        };
        if validate {
            let eval_model = model.valid();
            let (valid, _) = evaluate(&eval_model, data, &split.valid, config.eval_batch_size);
            let valid_metrics = valid.clone();
            if !valid.rmse.is_finite() {
                bail!("validation RMSE is {} after epoch {epoch}: the model's predictions are not finite", valid.rmse);
            }
            for (name, value) in valid.named() {
                sink.log(epoch, "valid", name, value)?;
            }
            let improved = best.as_ref().is_none_or(|(_, m, _)| valid.r2 > m.r2);
            if improved {
                if let Some(path) = &hooks.checkpoint {
                    save_checkpoint(&eval_model, path)?;
                }
                best = Some((epoch, valid, eval_model));
                state.since_best = 0;
            } else {
                state.no_improvement += 1;
                state.since_best += 1;
            }
            if let Some(bar) = &hooks.progress {
                let best_r2 = best.as_ref().map_or(f64::NAN, |(_, m, _)| m.r2);
                bar.set_message(format!(
                    "loss {mean_l1:.4} valid R² {:.3} (best {best_r2:.3})",
                    valid.r2
                ));
            }
            let es = &config.early_stopping;
            let stop = counted > es.min_epoch
                && match es.rule {
                    // The script checks only where a validation did not improve.
                    StoppingRule::Script => !improved && state.no_improvement > es.patience,
                    StoppingRule::Patience => state.since_best >= es.patience,
                    StoppingRule::Off => false,
                };
            sink.flush()?;
            let prune = !stop
                && hooks
                    .prune
                    .as_mut()
                    .is_some_and(|p| p(epoch, &valid_metrics));
            if prune {
                pruned = true;
            }
            if stop || prune {
                stopped_early = true;
                state.epoch = epoch + 1;
                break;
            }
        } else if let Some(bar) = &hooks.progress {
            bar.set_message(format!("loss {mean_l1:.4}"));
        }
        if let Some(bar) = &hooks.progress {
            bar.set_position(epoch as u64);
        }
        state.epoch = epoch + 1;
        state.next_batch = 0;
        let signalled = preempt::requested().is_some();
        let due = config
            .checkpoint_every
            .due(epoch, last_checkpoint.elapsed().as_secs_f64() / 60.0);
        if (signalled || due) && epoch < config.epochs {
            sink.flush()?;
            let saved = save(
                &model,
                &optimizer,
                &rng,
                &order,
                &state,
                &best,
                &sink.logged,
            );
            if signalled {
                return Err(stop(saved, epoch + 1, 0));
            }
            saved?;
            last_checkpoint = Instant::now();
        }
    }
    if !state.finished {
        // Training is over: a kill from here on (the test, transfer fine-tuning, the records)
        // resumes without training again.
        state.finished = true;
        state.stopped_early = stopped_early;
        sink.flush()?;
        save(
            &model,
            &optimizer,
            &rng,
            &order,
            &state,
            &best,
            &sink.logged,
        )?;
    }
    let train_seconds = state.train_seconds + started.elapsed().as_secs_f64();

    let (best_epoch, best_valid, best_model) = best.context("no validation was run")?;
    let (test, predicted) = evaluate(&best_model, data, &split.test, config.eval_batch_size);
    for (name, value) in test.named() {
        sink.log(best_epoch, "test", name, value)?;
    }
    sink.flush()?;
    let test_predictions = split
        .test
        .iter()
        .zip(&predicted)
        .map(|(&i, &p)| (i, city.target(i), p))
        .collect();
    let report = TrainReport {
        best_epoch,
        best_valid,
        test,
        test_predictions,
        epochs_run: state.epochs_run,
        stopped_early,
        pruned,
        train_seconds,
        train_loss: state.train_loss,
        checkpoints: timing.get().0,
        checkpoint_seconds: timing.get().1,
    };
    Ok((report, best_model))
}

/// The error of a run a signal stopped: [`Preempted`] once its checkpoint is written, else why
/// the checkpoint could not be.
fn stop(saved: Result<()>, epoch: usize, batch: usize) -> anyhow::Error {
    match saved {
        Ok(()) => Preempted::now(&format!(
            "at epoch {epoch}, batch {batch}: checkpoint written, the run resumes from it"
        ))
        .into(),
        Err(e) => {
            e.context("a signal stopped the run, but its resumable checkpoint could not be written")
        }
    }
}

/// A module's burn record (parameter ids kept) as bytes.
fn record_bytes(model: &OpenCarbon) -> Result<Vec<u8>> {
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("saving the weights: {e}"))?;
    Ok(bytes.to_vec())
}

fn record_from(bytes: &[u8]) -> Result<burn::store::ModuleRecord> {
    burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| anyhow::anyhow!("reading the resumable checkpoint's weights: {e}"))
}

/// A sink that keeps what passes through it, so that a checkpoint can replay it.
struct Recorded<'a> {
    sink: &'a mut dyn MetricSink,
    logged: Vec<(usize, String, String, f64)>,
}

impl MetricSink for Recorded<'_> {
    fn log(&mut self, epoch: usize, split: &str, metric: &str, value: f64) -> Result<()> {
        self.logged
            .push((epoch, split.to_string(), metric.to_string(), value));
        self.sink.log(epoch, split, metric, value)
    }
    fn flush(&mut self) -> Result<()> {
        self.sink.flush()
    }
}

/// How [`fine_tune`] trains: the schedule (epochs, lr, batch size, loss), whether BatchNorm keeps
/// its running statistics, and the seed of the shuffling.
pub struct FineTuning<'a> {
    pub config: &'a Checked<TrainConfig>,
    pub freeze_batch_norm: bool,
    pub seed: u64,
    /// Where each finished fine-tuning keeps its result (weights and logged losses), so that a
    /// resumed run repeats none that finished (the run's `checkpoints/finetune/`).
    pub results: Option<PathBuf>,
}

/// Fine-tunes a copy of `model` (eval mode) on `tiles` for a fixed number of epochs with a fresh
/// Adam, BatchNorm statistics frozen or not, logging the mean L1 per sample of each epoch to
/// `sink` under `tag`; returns the model in eval mode. There is no model selection: the tiles are
/// all the labels there are.
pub fn fine_tune(
    model: &OpenCarbon,
    data: &Prepared,
    tiles: &[usize],
    how: &FineTuning,
    sink: &mut dyn MetricSink,
    tag: &str,
) -> Result<OpenCarbon> {
    let (config, seed) = (how.config, how.seed);
    let result = how.results.as_ref().map(|dir| {
        let name: String = tag
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        dir.join(format!("{name}.ckpt"))
    });
    if let Some(done) = result
        .as_ref()
        .map(|p| finished_fine_tuning(p, tag))
        .transpose()?
        .flatten()
    {
        for (epoch, split, metric, value) in &done.progress.logged {
            sink.log(*epoch, split, metric, *value)?;
        }
        sink.flush()?;
        return model
            .clone()
            .try_load_record(record_from(&done.model)?)
            .map_err(|e| {
                anyhow::anyhow!(
                    "fine-tuning {tag}: its saved result does not fit this network: {e}"
                )
            });
    }
    if tiles.len() < 2 {
        bail!(
            "fine-tuning needs at least 2 labelled tiles, found {} ({tag})",
            tiles.len()
        );
    }
    let autodiff = data.tiles.device().clone().autodiff();
    let mut model = model.valid().train();
    if how.freeze_batch_norm {
        model = model.map(&mut FreezeBatchNorm);
    }
    let mut optimizer = optimizer(config);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order = tiles.to_vec();
    let contrastive = config.alpha > 0.0;
    let mut logged = Vec::new();
    for epoch in 1..=config.epochs {
        order.shuffle(&mut rng);
        let (next, end) = train_epoch(
            model,
            &mut optimizer,
            data,
            &order,
            0,
            EpochLosses::default(),
            &config.for_epoch(epoch),
            contrastive,
            &autodiff,
        )
        .with_context(|| format!("fine-tuning stopped at epoch {epoch} ({tag})"))?;
        model = next;
        // Fine-tuning is short and starts again whole: the run resumes after its training.
        let mean_l1 = match end {
            EpochEnd::Done(l1, _) => l1,
            EpochEnd::Stopped { next_batch, .. } => {
                return Err(stop(Ok(()), epoch, next_batch).context(format!(
                    "fine-tuning {tag} starts again when the run resumes"
                )))
            }
        };
        sink.log(epoch, tag, "l1", mean_l1)?;
        logged.push((epoch, tag.to_string(), "l1".to_string(), mean_l1));
    }
    sink.flush()?;
    let tuned = model.valid();
    if let Some(path) = &result {
        std::fs::create_dir_all(path.parent().unwrap_or(path))
            .with_context(|| format!("creating {}", path.display()))?;
        Checkpoint {
            progress: Progress {
                epoch: config.epochs + 1,
                epochs_run: config.epochs,
                logged,
                finished: true,
                ..Progress::start(tag.to_string())
            },
            model: record_bytes(&tuned)?,
            best_model: None,
            optimizer: vec![],
        }
        .write(path)?;
    }
    Ok(tuned)
}

/// The saved result of a finished fine-tuning `tag`, if `path` holds one; a torn or foreign file
/// is removed (that fine-tuning runs again).
fn finished_fine_tuning(path: &std::path::Path, tag: &str) -> Result<Option<Checkpoint>> {
    match Checkpoint::read(path) {
        Ok(Some(c)) if c.progress.owner == tag && c.progress.finished => Ok(Some(c)),
        Ok(None) => Ok(None),
        other => {
            if let Err(e) = other {
                eprintln!(
                    "fine-tuning {tag}: not reusing {} ({e:#}); it runs again",
                    path.display()
                );
            }
            std::fs::remove_file(path).ok();
            Ok(None)
        }
    }
}

/// Turns off every training flag (the BatchNorm layers'): they normalise with their running
/// statistics and leave them as they are, while γ and β still receive gradients.
struct FreezeBatchNorm;

impl burn::module::ModuleMapper for FreezeBatchNorm {
    fn map_flag(
        &mut self,
        flag: burn::module::Param<burn::module::Flag>,
    ) -> burn::module::Param<burn::module::Flag> {
        flag.with_value(false)
    }
}

/// Writes `model` to `path` as safetensors, atomically (so a kill mid-save leaves the previous
/// checkpoint whole).
pub fn save_checkpoint(model: &OpenCarbon, path: &std::path::Path) -> Result<()> {
    let mut store = SafetensorsStore::from_bytes(None);
    model
        .save_into(&mut store)
        .with_context(|| format!("saving checkpoint {}", path.display()))?;
    let bytes = store
        .get_bytes()
        .with_context(|| format!("saving checkpoint {}", path.display()))?;
    crate::track::atomic::write(path, &bytes)
}

/// Loads a checkpoint written by [`train`] into a freshly built (eval) network.
pub fn load_checkpoint(model: OpenCarbon, path: &std::path::Path) -> Result<OpenCarbon> {
    let mut model = model;
    let mut store = SafetensorsStore::from_file(path.to_path_buf());
    model
        .load_from(&mut store)
        .with_context(|| format!("loading checkpoint {}", path.display()))?;
    Ok(model)
}
