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
use crate::checked::Checked;
use crate::data::{BatchPlan, City, DeviceTiles, NeighbourIndex, Split, Standardizer};
use crate::metrics::Metrics;
use crate::model::config::EncoderBatching;
use crate::model::{ModelConfig, OpenCarbon};
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
    pub train_seconds: f64,
    /// Mean training loss per sample of each epoch.
    pub train_loss: Vec<f64>,
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

/// One pass over `order` in batches of `config.batch_size` (a batch of one is skipped: BatchNorm
/// cannot normalise a single sample in training mode). Returns the updated model, the mean L1 per
/// sample and the mean InfoNCE per batch (when contrastive); an error naming the first batch
/// whose loss is not finite (read once per epoch, so no batch waits on the device).
fn train_epoch(
    mut model: OpenCarbon,
    optimizer: &mut Adam,
    data: &Prepared,
    order: &[usize],
    config: &TrainConfig,
    contrastive: bool,
    autodiff: &Device,
) -> Result<(OpenCarbon, f64, Option<f64>)> {
    let mut l1_terms = Vec::new();
    let mut nce_terms = Vec::new();
    let mut seen = 0usize;
    for batch in order.chunks(config.batch_size) {
        if batch.len() < 2 {
            continue;
        }
        let (next, l1, nce) =
            train_step(model, optimizer, data, batch, config, contrastive, autodiff)?;
        model = next;
        l1_terms.push(l1);
        nce_terms.extend(nce);
        seen += batch.len();
    }
    let per_batch = |terms: Vec<Tensor<1>>, name: &str| -> Result<Vec<f32>> {
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let values = Tensor::cat(terms, 0)
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("reading the {name} loss: {e:?}"))?;
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
    let l1_total: f64 = per_batch(l1_terms, "L1")?.iter().map(|&v| v as f64).sum();
    let nce = per_batch(nce_terms, "InfoNCE")?;
    let mean_nce =
        (!nce.is_empty()).then(|| nce.iter().map(|&v| v as f64).sum::<f64>() / nce.len() as f64);
    Ok((model, l1_total / seen.max(1) as f64, mean_nce))
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
pub fn fit(
    data: &Prepared,
    split: &Split,
    config: &Checked<TrainConfig>,
    seed: u64,
    hooks: Hooks,
) -> Result<(TrainReport, OpenCarbon)> {
    let city = data.city;
    let device = data.tiles.device().clone();
    let autodiff = device.clone().autodiff();
    let mut model = data.model.init_seeded(&city.shapes(), &autodiff, seed)?;
    let mut optimizer = optimizer(config);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let started = Instant::now();

    let mut best: Option<(usize, Metrics, OpenCarbon)> = None;
    let (mut no_improvement, mut since_best) = (0usize, 0usize);
    let mut train_loss = Vec::new();
    let mut epochs_run = 0;
    let mut stopped_early = false;
    let mut order = split.train.clone();
    let replay = match &config.batch_order {
        Some(path) => Some(Replay::read(path, city, &split.train, config.epochs)?),
        None => None,
    };
    let sink = hooks.sink;

    for epoch in 1..=config.epochs {
        match &replay {
            Some(replay) => order.copy_from_slice(replay.epoch(epoch)),
            None => order.shuffle(&mut rng),
        }
        // The epoch as the schedule counts it (the script counts from 0).
        let counted = match config.schedule {
            Schedule::Opencarbon => epoch,
            Schedule::Script => epoch - 1,
        };
        let contrastive = config.alpha > 0.0 && counted > config.contrastive_epoch;
        let (next, mean_l1, mean_nce) = train_epoch(
            model,
            &mut optimizer,
            data,
            &order,
            &config.for_epoch(epoch),
            contrastive,
            &autodiff,
        )
        .with_context(|| format!("training stopped at epoch {epoch}"))?;
        model = next;
        epochs_run = epoch;
        train_loss.push(mean_l1);
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
                since_best = 0;
            } else {
                no_improvement += 1;
                since_best += 1;
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
                    StoppingRule::Script => !improved && no_improvement > es.patience,
                    StoppingRule::Patience => since_best >= es.patience,
                    StoppingRule::Off => false,
                };
            sink.flush()?;
            if stop {
                stopped_early = true;
                break;
            }
        } else if let Some(bar) = &hooks.progress {
            bar.set_message(format!("loss {mean_l1:.4}"));
        }
        if let Some(bar) = &hooks.progress {
            bar.set_position(epoch as u64);
        }
    }
    let train_seconds = started.elapsed().as_secs_f64();

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
        epochs_run,
        stopped_early,
        train_seconds,
        train_loss,
    };
    Ok((report, best_model))
}

/// How [`fine_tune`] trains: the schedule (epochs, lr, batch size, loss), whether BatchNorm keeps
/// its running statistics, and the seed of the shuffling.
pub struct FineTuning<'a> {
    pub config: &'a Checked<TrainConfig>,
    pub freeze_batch_norm: bool,
    pub seed: u64,
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
    for epoch in 1..=config.epochs {
        order.shuffle(&mut rng);
        let (next, mean_l1, _) = train_epoch(
            model,
            &mut optimizer,
            data,
            &order,
            &config.for_epoch(epoch),
            contrastive,
            &autodiff,
        )
        .with_context(|| format!("fine-tuning stopped at epoch {epoch} ({tag})"))?;
        model = next;
        sink.log(epoch, tag, "l1", mean_l1)?;
    }
    sink.flush()?;
    Ok(model.valid())
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
