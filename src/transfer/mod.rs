//! Generalisability: train on one city (or several), then test on other cities, every target
//! tile zero-shot, and the target's held-out tiles after fine-tuning on nested few-shot sets of
//! spatial blocks. Source and targets live in one tile store (`data::union`) so that the source's
//! normalisation applies to the targets unchanged, unless per-city normalisation is asked for.

pub mod config;

use std::fmt::Write as _;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::baselines::{self, Baseline};
use crate::checked::Params;
use crate::data::split::{nested_blocks, SplitConfig};
use crate::data::union::{self, Part};
use crate::data::{load_city, CityOptions, DatasetSpec};
use crate::data::{City, Split};
use crate::metrics::Metrics;
use crate::model::{Modality, OpenCarbon};
use crate::stats::aoa::Applicability;
use crate::track::MetricSink;
use crate::train::{self, Prepared, TrainConfig};

pub use config::{InputNormalization, NamedDataset, TargetLevel, TransferConfig};

/// One transfer result of a run: a target city, a few-shot fraction, the tiles scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferRow {
    pub target: String,
    /// Fraction of the target's samples fine-tuned on (0 = zero-shot).
    pub fraction: f64,
    /// `all`: every target sample (zero-shot only); `held_out`: the samples outside the largest
    /// few-shot set, the same for every fraction so the fractions compare like for like.
    pub tiles: String,
    pub fine_tune_tiles: usize,
    pub metrics: Metrics,
    /// Zero-shot rows: the fraction of the target's samples inside the area of applicability of
    /// the source's training tiles (`stats::aoa`). Absent in older runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aoa_inside: Option<f64>,
}

/// `tiles` of the zero-shot row scored on the target samples inside the area of applicability.
pub const IN_AOA: &str = "in_aoa";

/// The cities of a transfer run in one store: part 0 is the source, then one part per target.
pub struct TransferCities {
    pub union: City,
    pub parts: Vec<Part>,
    /// The in-city split of the source (indices into `union`).
    pub split: Split,
}

/// The city a transfer run trains on, as its run's spec gives it.
pub struct Source<'a> {
    pub name: String,
    pub dataset: &'a DatasetSpec,
    pub split: &'a SplitConfig,
    pub seed: u64,
    /// The inputs the run reads (a baseline's features may need fewer than the network).
    pub modalities: Vec<Modality>,
}

/// Loads the source and every target, checks that they carry the same inputs, and joins them.
/// Runs before any training, so a mismatched target fails the run at once.
pub fn load(source: Source, transfer: &TransferConfig) -> Result<TransferCities> {
    let options = CityOptions {
        per_city_inputs: transfer.normalize.inputs == InputNormalization::PerCity,
        modalities: source.modalities,
    };
    let mut city = load_city(source.dataset, &options)?;
    city.name = source.name;
    let split = source.split.split(&city, source.seed)?;
    let mut cities = vec![city];
    for target in &transfer.targets {
        let mut city = load_city(&target.dataset, &options)
            .with_context(|| format!("transfer target `{}`", target.name))?;
        city.name = target.name.clone();
        cities.push(city);
    }
    let (union, parts) = union::join(cities).context(
        "a transfer target must carry the training city's inputs (modalities, covariates, POI categories, tile sizes)",
    )?;
    Ok(TransferCities {
        union,
        parts,
        split,
    })
}

/// A target's samples, its nested few-shot sets (one per fraction) and its held-out samples.
struct TargetTiles<'a> {
    part: &'a Part,
    samples: Vec<usize>,
    sets: Vec<Vec<usize>>,
    held_out: Vec<usize>,
}

fn target_tiles<'a>(
    cities: &TransferCities,
    part: &'a Part,
    transfer: &TransferConfig,
    seed: u64,
) -> Result<TargetTiles<'a>> {
    let samples: Vec<usize> = part
        .range
        .clone()
        .filter(|&i| cities.union.emission[i] > 0.0)
        .collect();
    // A seed per target, so two targets do not share a block order by accident.
    let target_seed = part
        .name
        .bytes()
        .fold(seed ^ 0x7472_616e_7366_6572, |h, b| {
            h.rotate_left(7) ^ b as u64
        });
    let (sets, held_out) = nested_blocks(
        &cities.union,
        &samples,
        transfer.block,
        &transfer.fractions(),
        target_seed,
    );
    if held_out.len() < 2 {
        bail!(
            "transfer target `{}`: the largest few-shot set leaves {} of {} samples to test; lower transfer.few_shot",
            part.name,
            held_out.len(),
            samples.len()
        );
    }
    Ok(TargetTiles {
        part,
        samples,
        sets,
        held_out,
    })
}

fn mean_std(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = values.clone().count().max(1) as f64;
    let mean = values.clone().sum::<f64>() / n;
    let var = values.map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, if var > 1e-12 { var.sqrt() } else { 1.0 })
}

/// Predictions of every transfer row, for `transfer_predictions.csv`.
pub struct TransferPredictions {
    text: String,
}

impl TransferPredictions {
    fn new() -> Self {
        Self {
            text: "target_city,fraction,tiles,x,y,target,prediction\n".into(),
        }
    }

    fn add(
        &mut self,
        row: &TransferRow,
        cities: &TransferCities,
        part: &Part,
        tiles: &[usize],
        predicted: &[f64],
    ) {
        for (&i, p) in tiles.iter().zip(predicted) {
            let k = part.original_key(&cities.union, i);
            let _ = writeln!(
                self.text,
                "{},{},{},{},{},{},{p}",
                row.target,
                row.fraction,
                row.tiles,
                k.x,
                k.y,
                cities.union.target(i)
            );
        }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.text.into_bytes()
    }
}

fn score(cities: &TransferCities, tiles: &[usize], predicted: &[f64]) -> Metrics {
    let target: Vec<f64> = tiles.iter().map(|&i| cities.union.target(i)).collect();
    Metrics::compute(&target, predicted)
}

/// Which of the target's `samples` lie inside the area of applicability of the source's
/// training tiles: the fraction inside, and the zero-shot row on those tiles (`tiles: in_aoa`;
/// none when fewer than two are inside).
fn applicability_row(
    aoa: &Applicability,
    modalities: &[Modality],
    cities: &TransferCities,
    part: &Part,
    samples: &[usize],
    predicted: &[f64],
) -> (f64, Option<TransferRow>) {
    let di = aoa.index(&cities.union, samples, modalities);
    let (inside, values): (Vec<usize>, Vec<f64>) = samples
        .iter()
        .zip(predicted)
        .zip(&di)
        .filter(|(_, &d)| d <= aoa.threshold)
        .map(|((&i, &p), _)| (i, p))
        .unzip();
    let fraction = inside.len() as f64 / samples.len().max(1) as f64;
    let row = (inside.len() >= 2).then(|| TransferRow {
        target: part.name.clone(),
        fraction: 0.0,
        tiles: IN_AOA.into(),
        fine_tune_tiles: 0,
        metrics: score(cities, &inside, &values),
        aoa_inside: Some(fraction),
    });
    (fraction, row)
}

/// The network's transfer rows: `model` is the source's best checkpoint, `data` the prepared
/// union (normalised with the source's training statistics), `aoa` the area of applicability of
/// the source's training tiles.
#[allow(clippy::too_many_arguments)]
pub fn network_rows(
    model: &OpenCarbon,
    data: &mut Prepared,
    aoa: &Applicability,
    cities: &TransferCities,
    transfer: &TransferConfig,
    train_config: &TrainConfig,
    seed: u64,
    sink: &mut dyn MetricSink,
    fine_tune_results: Option<&std::path::Path>,
) -> Result<(Vec<TransferRow>, TransferPredictions)> {
    let mut fine_tune_config = train_config.clone();
    fine_tune_config.epochs = transfer.fine_tune.epochs;
    fine_tune_config.lr = transfer.fine_tune.lr.unwrap_or(train_config.lr / 10.0);
    fine_tune_config.batch_size = transfer
        .fine_tune
        .batch_size
        .unwrap_or(train_config.batch_size);
    // Checked only where a few-shot fraction uses it (zero-shot alone may leave epochs at 0).
    let fine_tune_config = transfer
        .few_shot
        .iter()
        .any(|&f| f > 0.0)
        .then(|| fine_tune_config.checked().context("transfer.fine_tune"))
        .transpose()?;
    let eval_batch = train_config.eval_batch_size;
    let source_level = (data.target_shift, data.target_scale);
    let mut rows = Vec::new();
    let mut predictions = TransferPredictions::new();
    for part in &cities.parts[1..] {
        let t = target_tiles(cities, part, transfer, seed)?;
        let zero_shot = train::predict(model, data, &t.samples, eval_batch);
        let (inside, aoa_row) = applicability_row(
            aoa,
            &data.model.modalities,
            cities,
            part,
            &t.samples,
            &zero_shot,
        );
        let mut push = |fraction: f64,
                        tiles: &[usize],
                        label: &str,
                        fine_tune_tiles: usize,
                        predicted: Vec<f64>,
                        aoa_inside: Option<f64>| {
            let row = TransferRow {
                target: part.name.clone(),
                fraction,
                tiles: label.into(),
                fine_tune_tiles,
                metrics: score(cities, tiles, &predicted),
                aoa_inside,
            };
            predictions.add(&row, cities, part, tiles, &predicted);
            rows.push(row);
        };
        push(0.0, &t.samples, "all", 0, zero_shot, Some(inside));
        for (&fraction, set) in transfer.fractions().iter().zip(&t.sets) {
            if fraction == 0.0 {
                push(
                    0.0,
                    &t.held_out,
                    "held_out",
                    0,
                    train::predict(model, data, &t.held_out, eval_batch),
                    None,
                );
                continue;
            }
            if transfer.normalize.target == TargetLevel::FewShot {
                (data.target_shift, data.target_scale) =
                    mean_std(set.iter().map(|&i| cities.union.target(i)));
            }
            let tag = format!("finetune/{}/{fraction}", t.part.name);
            let how = train::trainer::FineTuning {
                config: fine_tune_config
                    .as_ref()
                    .context("a few-shot fraction has its fine-tuning settings")?,
                freeze_batch_norm: transfer.fine_tune.batch_norm
                    == config::FineTuneBatchNorm::Frozen,
                seed,
                results: fine_tune_results.map(std::path::Path::to_path_buf),
            };
            let tuned = train::fine_tune(model, data, set, &how, sink, &tag);
            let predicted = tuned.map(|m| train::predict(&m, data, &t.held_out, eval_batch));
            (data.target_shift, data.target_scale) = source_level;
            push(
                fraction,
                &t.held_out,
                "held_out",
                set.len(),
                predicted?,
                None,
            );
        }
        rows.extend(aoa_row);
    }
    Ok((rows, predictions))
}

/// A baseline's transfer rows: fitted on the source's training tiles (zero-shot), or on those
/// and the target's few-shot set pooled. With `normalize.target: few_shot` its predictions are
/// recalibrated from the source's training level to the few-shot set's mean and std.
pub fn baseline_rows(
    baseline: &Baseline,
    modalities: &[Modality],
    cities: &TransferCities,
    transfer: &TransferConfig,
    seed: u64,
) -> Result<(Vec<TransferRow>, TransferPredictions)> {
    let aoa = Applicability::fit(&cities.union, &cities.split.train, modalities, seed);
    let source_level = mean_std(cities.split.train.iter().map(|&i| cities.union.target(i)));
    let mut rows = Vec::new();
    let mut predictions = TransferPredictions::new();
    for part in &cities.parts[1..] {
        let t = target_tiles(cities, part, transfer, seed)?;
        let mut settings = vec![(0.0, &t.samples, "all", Vec::new())];
        for (&fraction, set) in transfer.fractions().iter().zip(&t.sets) {
            settings.push((fraction, &t.held_out, "held_out", set.clone()));
        }
        for (fraction, tiles, label, set) in settings {
            let mut train_tiles = cities.split.train.clone();
            train_tiles.extend(&set);
            let split = Split {
                train: train_tiles,
                valid: vec![],
                test: tiles.clone(),
            };
            let (_, mut predicted) = baselines::evaluate(baseline, &cities.union, &split)
                .with_context(|| format!("baseline on target `{}`", part.name))?;
            if transfer.normalize.target == TargetLevel::FewShot && !set.is_empty() {
                let (mean, std) = mean_std(set.iter().map(|&i| cities.union.target(i)));
                for p in &mut predicted {
                    *p = (*p - source_level.0) / source_level.1 * std + mean;
                }
            }
            let mut row = TransferRow {
                target: part.name.clone(),
                fraction,
                tiles: label.into(),
                fine_tune_tiles: set.len(),
                metrics: score(cities, tiles, &predicted),
                aoa_inside: None,
            };
            let mut aoa_row = None;
            if label == "all" {
                let (inside, r) =
                    applicability_row(&aoa, modalities, cities, part, tiles, &predicted);
                row.aoa_inside = Some(inside);
                aoa_row = r;
            }
            predictions.add(&row, cities, part, tiles, &predicted);
            rows.push(row);
            rows.extend(aoa_row);
        }
    }
    Ok((rows, predictions))
}
