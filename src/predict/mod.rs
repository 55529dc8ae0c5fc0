//! Emission maps for new areas: one or several trained runs (an ensemble: the seeds or folds of
//! one variant) predict every tile of an area, labelled or not, and write the table, a GeoTIFF,
//! GeoJSON and a map.

pub mod baseline_model;
pub mod bundle;
pub mod chunk;
pub mod cli;
pub mod geo;
pub mod intervals;
pub mod map;
pub mod normalization;
pub mod output;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::baselines::{BaselineKind, Fitted};
use crate::checked::Checked;
use crate::data::canonical;
use crate::data::tile_reader::{self, TileReader};
use crate::data::CityOptions;
use crate::data::{odiac, union, City, TileKey};
use crate::model::{InputShapes, Modality, OpenCarbon};
use crate::record::state as resume;
use crate::spec::{DatasetSpec, RunSpec};
use crate::stats::aoa::Applicability;
use crate::train::{self, Prepared};
use normalization::Normalization;

/// What maps the area: a trained network, or a fitted baseline (ridge, gradient-boosted trees,
/// the training mean) read from the run's `model.json`.
pub enum Predictor {
    Network(OpenCarbon),
    Baseline(Fitted),
}

/// A finished run, loaded for prediction.
pub struct TrainedRun {
    pub dir: PathBuf,
    pub spec: Checked<RunSpec>,
    pub normalization: Normalization,
    pub model: Predictor,
}

impl TrainedRun {
    /// The inputs it reads.
    pub fn modalities(&self) -> Vec<Modality> {
        self.spec.modalities_read()
    }

    /// How far around a tile it reads (tiles): the network's neighbourhood or the widest lag of
    /// the baseline's features.
    pub fn radius(&self) -> usize {
        match &self.spec.baseline {
            Some(b) => b.window_radius(),
            None => self.spec.model.neighbourhood,
        }
    }
}

/// The resolved spec and test metrics of `dir`, which must be a finished run of a network or of a
/// baseline with a model to map with (not the neighbour mean, which needs the area's labels).
pub fn finished_run(dir: &Path) -> Result<(Checked<RunSpec>, crate::record::TestMetrics)> {
    let metrics = match resume::check(dir, None) {
        resume::State::Done(metrics) => metrics,
        resume::State::NotDone(why) | resume::State::Broken(why) => {
            bail!("run {}: not a finished run ({why})", dir.display())
        }
    };
    let spec = RunSpec::load(&dir.join("spec.resolved.yaml"), &[])?;
    if let Some(b) = &spec.baseline {
        if b.kind == BaselineKind::NeighbourMean {
            bail!(
                "run {}: the neighbour-mean baseline predicts a tile from its neighbours' measured \
                 emissions, which a new area does not have; map with a network, ridge, gbt or mean run",
                dir.display()
            );
        }
        if spec.transfer.is_some() {
            bail!(
                "run {}: a transfer baseline (fitted on its source city's part of a joined city); \
                 map with a baseline run trained in one city",
                dir.display()
            );
        }
    }
    Ok((spec, metrics))
}

/// Opens a finished run directory (its resolved spec, normalisation and best checkpoint or fitted
/// baseline) or a bundle that `export-model` wrote.
pub fn open_run(dir: &Path, device: &crate::backend::Device) -> Result<TrainedRun> {
    let (spec, normalization, model_file) = if bundle::is_bundle(dir) {
        bundle::open(dir)?
    } else {
        let (spec, _) = finished_run(dir)?;
        let normalization = normalization::read_or_recompute(dir, &spec)?;
        let file = match spec.baseline {
            Some(_) => dir.join(crate::baselines::fitted::FILE),
            None => dir.join("checkpoints/best.safetensors"),
        };
        (spec, normalization, file)
    };
    let model = if spec.baseline.is_some() {
        Predictor::Baseline(baseline_model::open(dir, &spec, &model_file)?)
    } else {
        let s = &normalization.inputs;
        let shapes = InputShapes {
            image_size: s.image_side,
            poi: s
                .poi_categories
                .as_ref()
                .map(|c| (c.len(), s.poi_side.unwrap_or(0))),
            tabular: s.covariates.as_ref().map(Vec::len),
        };
        let fresh = spec
            .model_params()
            .init(&shapes, device)
            .with_context(|| format!("rebuilding the network of {}", dir.display()))?;
        Predictor::Network(train::trainer::load_checkpoint(fresh, &model_file)?)
    };
    Ok(TrainedRun {
        dir: dir.to_path_buf(),
        spec,
        normalization,
        model,
    })
}

/// The area to map, with its WGS84 corners where it gives them.
pub struct Area {
    /// The area's tiles; for a canonical directory without its rasters, which `reader` reads
    /// chunk by chunk.
    pub city: City,
    pub reader: Option<TileReader>,
    pub corners: Option<HashMap<TileKey, (f64, f64)>>,
    pub tile_size_m: f64,
    pub source: String,
}

/// `--city`: a canonical city directory, an ODIAC tile table (`.csv`) or a YAML file holding a
/// spec's `dataset:` value (e.g. `{kind: synthetic, ...}`).
pub fn load_area(source: &Path) -> Result<Area> {
    let name = source.display().to_string();
    if !source.exists() {
        bail!("--city {name}: no such file or directory (give a canonical city directory, an ODIAC .csv table or a dataset .yaml)");
    }
    let is = |ext: &str| {
        source
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case(ext))
    };
    let mut reader = None;
    let (city, tile_size_m) = if source.is_dir() {
        let manifest =
            canonical::read_manifest(source).with_context(|| format!("--city {name}"))?;
        let (bare, tiles) = tile_reader::open(source).with_context(|| format!("--city {name}"))?;
        reader = Some(tiles);
        (bare, manifest.grid.tile_size_m)
    } else if is("csv") {
        (odiac::import(source)?.0, Some(850.0))
    } else if is("yaml") || is("yml") {
        let text = std::fs::read_to_string(source).with_context(|| format!("reading {name}"))?;
        let dataset: DatasetSpec = crate::yaml::deserialize_located(&text, &name)?;
        // A nested path may name the real data (`../shared/data/…`): read it where
        // OPENCARBON_DATA puts it, as a run's loader does.
        let nested = match &dataset {
            DatasetSpec::Dir { path } => Some(load_area(&crate::data::root::locate(path)?)?),
            DatasetSpec::OdiacTiles { labels } => {
                Some(load_area(&crate::data::root::locate(labels)?)?)
            }
            _ => None,
        };
        if let Some(area) = nested {
            return Ok(area);
        }
        let city = crate::data::load_city(&dataset, &CityOptions::default())
            .with_context(|| format!("--city {name}"))?;
        (city, None)
    } else {
        bail!("--city {name}: not a directory, .csv or .yaml");
    };
    Ok(Area {
        corners: geo::corners_of(source)?,
        city,
        reader,
        tile_size_m: tile_size_m.unwrap_or(1000.0),
        source: name,
    })
}

/// Per tile of the area, one prediction (ln-emission) per run, and its dissimilarity index.
pub struct Predictions {
    pub per_run: Vec<Vec<f64>>,
    /// Each tile's dissimilarity index (Meyer & Pebesma) against what the model saw: one run's
    /// training tiles, or for an ensemble its members' pooled (`Applicability::pooled`).
    pub di: Vec<f64>,
    /// Each run's own DI of each tile (against its own training tiles), for bands scaled by the
    /// DI of the fold model that predicts there (`intervals::Scale::Di`).
    pub per_run_di: Vec<Vec<f64>>,
    /// The DI threshold of that reference; a tile with `di` above it is outside.
    pub threshold: f64,
    /// The tiles predicted (all, or a shard's), in chunk order; the others hold NaN.
    pub predicted: Vec<usize>,
    pub shard: Shard,
}

/// Makes the area carry exactly the runs' inputs (transfer's check), then predicts every tile
/// with every run, `chunk_side`² tiles at a time (0: the whole area at once); a shard `i/n`
/// predicts chunks i, i + n, …. Runs of an ensemble must share their inputs.
pub fn predict_area(
    runs: &[TrainedRun],
    area: &mut Area,
    device: &crate::backend::Device,
    batch_size: usize,
    chunk_side: usize,
    shard: Shard,
) -> Result<Predictions> {
    let first = runs.first().context("no run to predict with")?;
    for run in &runs[1..] {
        if run.normalization.inputs != first.normalization.inputs
            || run.modalities() != first.modalities()
        {
            bail!(
                "runs {} and {} were trained on different inputs; an ensemble needs one variant's runs",
                first.dir.display(),
                run.dir.display()
            );
        }
    }
    union::keep_only(&mut area.city, &first.modalities());
    let reference = first.normalization.reference_city();
    union::conform(&reference, &mut area.city).with_context(|| {
        format!(
            "--city {} cannot be mapped by run {}",
            area.source,
            first.dir.display()
        )
    })?;
    // Chunk by chunk (with a halo of the largest neighbourhood radius), every run on each chunk.
    let halo = runs.iter().map(TrainedRun::radius).max().unwrap_or(0);
    let side = if chunk_side == 0 {
        usize::MAX / 2
    } else {
        chunk_side
    };
    let mut per_run = vec![vec![f64::NAN; area.city.len()]; runs.len()];
    // NaN for the tiles of other shards, as for their predictions.
    let mut di = vec![f64::NAN; area.city.len()];
    let mut per_run_di = vec![vec![f64::NAN; area.city.len()]; runs.len()];
    let mut predicted = Vec::new();
    let members = runs
        .iter()
        .map(|run| {
            run.normalization.applicability.as_ref().with_context(|| {
                format!(
                    "run {}: no area-of-applicability reference in its {}",
                    run.dir.display(),
                    normalization::FILE
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // One run: its own area of applicability; an ensemble: the one of everything it saw.
    let pooled;
    let aoa = if let [one] = members.as_slice() {
        *one
    } else {
        pooled = Applicability::pooled(&members, first.spec.seed)
            .map_err(|e| anyhow::anyhow!("the ensemble's area of applicability: {e}"))?;
        &pooled
    };
    let parts = chunk::plan(&area.city, side, halo);
    for part in parts.into_iter().skip(shard.index).step_by(shard.count) {
        predicted.extend_from_slice(&part.core);
        // Only this chunk's rasters are in memory.
        let sub = match &area.reader {
            Some(reader) => {
                let mut sub = reader.read(&area.city, &part.tiles)?;
                union::conform(&reference, &mut sub)?;
                sub
            }
            None => chunk::subset(&area.city, &part.tiles),
        };
        let samples: Vec<usize> = part
            .core
            .iter()
            .map(|i| {
                part.tiles
                    .binary_search(i)
                    .expect("the core is in the chunk")
            })
            .collect();
        for (k, (run, out)) in runs.iter().zip(per_run.iter_mut()).enumerate() {
            let values = match &run.model {
                Predictor::Network(model) => {
                    let n = &run.normalization;
                    let data = Prepared::with_scaling(
                        &sub,
                        n.covariates.clone(),
                        n.target_shift,
                        n.target_scale,
                        run.spec.model_params(),
                        device,
                    );
                    train::predict(model, &data, &samples, batch_size)
                }
                Predictor::Baseline(fitted) => fitted
                    .predict(&sub, &samples)
                    .with_context(|| format!("run {}", run.dir.display()))?,
            };
            for (&i, v) in part.core.iter().zip(values) {
                out[i] = v;
            }
            if runs.len() > 1 {
                let own = members[k].index(&sub, &samples, &run.modalities());
                for (&i, v) in part.core.iter().zip(own) {
                    per_run_di[k][i] = v;
                }
            }
        }
        let values = aoa.index(&sub, &samples, &first.modalities());
        for (&i, v) in part.core.iter().zip(values) {
            di[i] = v;
            if runs.len() == 1 {
                per_run_di[0][i] = v;
            }
        }
    }
    let threshold = aoa.threshold;
    Ok(Predictions {
        per_run,
        di,
        per_run_di,
        threshold,
        predicted,
        shard,
    })
}

/// The test predictions a run recorded (`predictions.csv` in `run_dir`) with each tile's index in
/// `city` (the run's city, loaded again); an error naming the file and tile for a tile not in it.
pub(crate) fn recorded_tiles(
    run_dir: &Path,
    city: &City,
) -> Result<(Vec<crate::record::predictions::TilePrediction>, Vec<usize>)> {
    let csv = run_dir.join("predictions.csv");
    let recorded = crate::record::predictions::read_csv(&csv)?;
    let index: HashMap<(i64, i64), usize> = city
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| ((k.x, k.y), i))
        .collect();
    let tiles = recorded
        .iter()
        .map(|t| {
            index.get(&(t.x, t.y)).copied().with_context(|| {
                format!(
                    "{}: tile ({}, {}) is not in the training city as loaded now",
                    csv.display(),
                    t.x,
                    t.y
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((recorded, tiles))
}

pub use output::{merge, write_outputs, PredictSummary, Shard};
