//! Emission maps for new areas: one or several trained runs (an ensemble: the seeds or folds of
//! one variant) predict every tile of an area, labelled or not, and write the table, a GeoTIFF,
//! GeoJSON and a map.

pub mod aoa;
pub mod chunk;
pub mod cli;
pub mod geo;
pub mod map;
pub mod normalization;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::canonical::{self, CityManifest};
use crate::data::{odiac, union, City, TileKey};
use crate::metrics::Metrics;
use crate::model::{InputShapes, OpenCarbon};
use crate::runner::{self, resume, CityOptions};
use crate::spec::{DatasetSpec, RunSpec};
use crate::track::atomic;
use crate::train::{self, Prepared};
use geo::{Georef, Grid};
use normalization::Normalization;

/// A finished network run, loaded for prediction.
pub struct TrainedRun {
    pub dir: PathBuf,
    pub spec: RunSpec,
    pub normalization: Normalization,
    pub model: OpenCarbon,
}

/// Opens a finished run directory: its resolved spec, normalisation and best checkpoint.
pub fn open_run(dir: &Path, device: &crate::backend::Device) -> Result<TrainedRun> {
    match resume::check(dir, None) {
        resume::State::Done(_) => {}
        resume::State::NotDone(why) | resume::State::Broken(why) => {
            bail!("run {}: not a finished run ({why})", dir.display())
        }
    }
    let spec_path = dir.join("spec.resolved.yaml");
    let spec = RunSpec::load(&spec_path, &[])?;
    if spec.baseline.is_some() {
        bail!(
            "run {}: a baseline run; predict maps with trained networks",
            dir.display()
        );
    }
    let normalization = normalization::read_or_recompute(dir, &spec)?;
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
        .model
        .init(&shapes, device)
        .with_context(|| format!("rebuilding the network of {}", dir.display()))?;
    let model = train::trainer::load_checkpoint(fresh, &dir.join("checkpoints/best.safetensors"))?;
    Ok(TrainedRun {
        dir: dir.to_path_buf(),
        spec,
        normalization,
        model,
    })
}

/// The area to map, with its WGS84 corners where it gives them.
pub struct Area {
    pub city: City,
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
    let (city, tile_size_m) = if source.is_dir() {
        let manifest_path = source.join("city.yaml");
        let text = std::fs::read_to_string(&manifest_path).with_context(|| {
            format!(
                "--city {name}: reading {} (is it a canonical city directory?)",
                manifest_path.display()
            )
        })?;
        let manifest: CityManifest =
            crate::spec::errors::deserialize_located(&text, &manifest_path.display().to_string())?;
        (canonical::load(source)?, manifest.grid.tile_size_m)
    } else if is("csv") {
        (odiac::import(source)?.0, Some(850.0))
    } else if is("yaml") || is("yml") {
        let text = std::fs::read_to_string(source).with_context(|| format!("reading {name}"))?;
        let dataset: DatasetSpec = crate::spec::errors::deserialize_located(&text, &name)?;
        let nested = match &dataset {
            DatasetSpec::Dir { path } => Some(load_area(path)?),
            DatasetSpec::OdiacTiles { labels } => Some(load_area(labels)?),
            _ => None,
        };
        if let Some(area) = nested {
            return Ok(area);
        }
        let city = runner::load_city(&dataset, &CityOptions::default())
            .with_context(|| format!("--city {name}"))?;
        (city, None)
    } else {
        bail!("--city {name}: not a directory, .csv or .yaml");
    };
    Ok(Area {
        corners: geo::corners_of(source)?,
        city,
        tile_size_m: tile_size_m.unwrap_or(1000.0),
        source: name,
    })
}

/// Per tile of the area, one prediction (ln-emission) per run, and its dissimilarity index.
pub struct Predictions {
    pub per_run: Vec<Vec<f64>>,
    /// Mean over the runs of each run's DI (one run: Meyer & Pebesma's DI).
    pub di: Vec<f64>,
    /// Mean over the runs of each run's threshold; a tile with `di` above it is outside.
    pub threshold: f64,
}

/// Makes the area carry exactly the runs' inputs (transfer's check), then predicts every tile
/// with every run, `chunk_side`² tiles at a time (0: the whole area at once). Runs of an ensemble
/// must share their inputs.
pub fn predict_area(
    runs: &[TrainedRun],
    area: &mut Area,
    device: &crate::backend::Device,
    batch_size: usize,
    chunk_side: usize,
) -> Result<Predictions> {
    let first = runs.first().context("no run to predict with")?;
    for run in &runs[1..] {
        if run.normalization.inputs != first.normalization.inputs
            || run.spec.model.modalities != first.spec.model.modalities
        {
            bail!(
                "runs {} and {} were trained on different inputs; an ensemble needs one variant's runs",
                first.dir.display(),
                run.dir.display()
            );
        }
    }
    union::keep_only(&mut area.city, &first.spec.model.modalities);
    union::conform(&first.normalization.reference_city(), &mut area.city).with_context(|| {
        format!(
            "--city {} cannot be mapped by run {}",
            area.source,
            first.dir.display()
        )
    })?;
    // Chunk by chunk (with a halo of the largest neighbourhood radius), every run on each chunk.
    let halo = runs
        .iter()
        .map(|r| r.spec.model.neighbourhood)
        .max()
        .unwrap_or(0);
    let side = if chunk_side == 0 {
        usize::MAX / 2
    } else {
        chunk_side
    };
    let mut per_run = vec![vec![f64::NAN; area.city.len()]; runs.len()];
    for part in chunk::plan(&area.city, side, halo) {
        let sub = chunk::subset(&area.city, &part.tiles);
        let samples: Vec<usize> = part
            .core
            .iter()
            .map(|i| {
                part.tiles
                    .binary_search(i)
                    .expect("the core is in the chunk")
            })
            .collect();
        for (run, out) in runs.iter().zip(per_run.iter_mut()) {
            let n = &run.normalization;
            let data = Prepared::with_scaling(
                &sub,
                n.covariates.clone(),
                n.target_shift,
                n.target_scale,
                &run.spec.model,
                device,
            );
            let values = train::predict(&run.model, &data, &samples, batch_size);
            for (&i, v) in part.core.iter().zip(values) {
                out[i] = v;
            }
        }
    }
    let mut di = vec![0.0; area.city.len()];
    let mut threshold = 0.0;
    for run in runs {
        let aoa = run.normalization.applicability.as_ref().with_context(|| {
            format!(
                "run {}: no area-of-applicability reference in its {}",
                run.dir.display(),
                normalization::FILE
            )
        })?;
        for (d, v) in di
            .iter_mut()
            .zip(aoa.index(&area.city, &run.spec.model.modalities))
        {
            *d += v / runs.len() as f64;
        }
        threshold += aoa.threshold / runs.len() as f64;
    }
    Ok(Predictions {
        per_run,
        di,
        threshold,
    })
}

/// What `predict.json` records beside the outputs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PredictSummary {
    pub area: String,
    pub tiles: usize,
    pub runs: Vec<String>,
    pub georef: Georef,
    pub raster: [usize; 2],
    /// Test-style metrics (ln scale) of the ensemble mean over the area's labelled tiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labelled: Option<Metrics>,
    /// Fraction of labelled tiles whose ln-emission lies in mean ± 1.96σ (two runs or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band_coverage: Option<f64>,
    /// Area of applicability: the DI threshold and the fraction of tiles within it.
    pub aoa_threshold: f64,
    pub aoa_inside: f64,
}

/// Writes predictions.{csv,parquet}, emission.tif, emission.geojson, map.png and predict.json.
pub fn write_outputs(
    out: &Path,
    runs: &[TrainedRun],
    area: &Area,
    predictions: &Predictions,
) -> Result<PredictSummary> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let city = &area.city;
    let n = city.len();
    let k = predictions.per_run.len() as f64;
    let mean: Vec<f64> = (0..n)
        .map(|i| predictions.per_run.iter().map(|p| p[i]).sum::<f64>() / k)
        .collect();
    // Sample std across the runs (0 for one run).
    let std: Vec<f64> = (0..n)
        .map(|i| {
            if k < 2.0 {
                return 0.0;
            }
            let ss: f64 = predictions
                .per_run
                .iter()
                .map(|p| (p[i] - mean[i]).powi(2))
                .sum();
            (ss / (k - 1.0)).sqrt()
        })
        .collect();
    let georef = match &area.corners {
        Some(c) => {
            let list: Vec<(TileKey, (f64, f64))> = city
                .keys
                .iter()
                .filter_map(|key| c.get(key).map(|&ll| (*key, ll)))
                .collect();
            Georef::fit(&list).with_context(|| format!("placing {}", area.source))?
        }
        None => {
            eprintln!(
                "{} gives no WGS84 corners: tiles placed nominally ({} m, key (0, 0) at 0°N 0°E); not a real location",
                area.source, area.tile_size_m
            );
            Georef::nominal(area.tile_size_m)
        }
    };
    let labelled: Vec<usize> = city.samples();
    let target: Vec<f64> = (0..n)
        .map(|i| {
            if city.emission[i] > 0.0 {
                city.target(i)
            } else {
                f64::NAN
            }
        })
        .collect();
    let in_band = |i: usize| (target[i] - mean[i]).abs() <= 1.96 * std[i];
    let metrics = (!labelled.is_empty()).then(|| {
        let t: Vec<f64> = labelled.iter().map(|&i| target[i]).collect();
        let p: Vec<f64> = labelled.iter().map(|&i| mean[i]).collect();
        Metrics::compute(&t, &p)
    });
    let band_coverage = (k >= 2.0 && !labelled.is_empty())
        .then(|| labelled.iter().filter(|&&i| in_band(i)).count() as f64 / labelled.len() as f64);

    let inside: Vec<bool> = predictions
        .di
        .iter()
        .map(|&d| d <= predictions.threshold)
        .collect();
    // The table.
    let (lon, lat): (Vec<f64>, Vec<f64>) = city
        .keys
        .iter()
        .map(|key| match area.corners.as_ref().and_then(|c| c.get(key)) {
            Some(&(lat, lon)) => (lon, lat),
            None => georef.at(key.x as f64, key.y as f64),
        })
        .unzip();
    let opt = |v: &[f64]| {
        v.iter()
            .map(|x| x.is_finite().then_some(*x))
            .collect::<Vec<_>>()
    };
    let residual: Vec<f64> = (0..n).map(|i| target[i] - mean[i]).collect();
    let mut frame = df!(
        "x" => city.keys.iter().map(|k| k.x).collect::<Vec<_>>(),
        "y" => city.keys.iter().map(|k| k.y).collect::<Vec<_>>(),
        "lat" => lat,
        "lon" => lon,
        "predicted_ln" => mean.clone(),
        "predicted_emission" => mean.iter().map(|v| v.exp()).collect::<Vec<_>>(),
        "std_ln" => std.clone(),
        "target_ln" => opt(&target),
        "residual_ln" => opt(&residual),
        "di" => predictions.di.clone(),
        "in_aoa" => inside.clone(),
        "in_band" => (0..n).map(|i| (k >= 2.0 && target[i].is_finite()).then(|| in_band(i))).collect::<Vec<_>>(),
    )?;
    crate::results::write_frame(out, "predictions", &mut frame)?;

    // Raster, vector and map.
    let grid = Grid::new(&city.keys, &georef)?;
    let mut raster = vec![geo::NODATA; grid.cols * grid.rows];
    let mut ln_map = vec![f64::NAN; grid.cols * grid.rows];
    let mut outside = vec![false; grid.cols * grid.rows];
    for (i, key) in city.keys.iter().enumerate() {
        let (c, r) = grid.pixel(*key);
        raster[r * grid.cols + c] = mean[i].exp() as f32;
        ln_map[r * grid.cols + c] = mean[i];
        outside[r * grid.cols + c] = !inside[i];
    }
    atomic::write(
        &out.join("emission.tif"),
        &geo::geotiff(&raster, &grid, &georef)?,
    )?;
    atomic::write(&out.join("map.png"), &map::png(&ln_map, &outside, &grid)?)?;
    let features: Vec<serde_json::Value> = city
        .keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            serde_json::json!({
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [geo::polygon(*key, &georef)]},
                "properties": {
                    "x": key.x, "y": key.y,
                    "predicted_ln": mean[i], "predicted_emission": mean[i].exp(), "std_ln": std[i],
                    "target_ln": target[i].is_finite().then_some(target[i]),
                    "di": predictions.di[i], "in_aoa": inside[i],
                },
            })
        })
        .collect();
    let geojson = serde_json::json!({"type": "FeatureCollection", "features": features});
    atomic::write(
        &out.join("emission.geojson"),
        serde_json::to_string(&geojson)?.as_bytes(),
    )?;

    let summary = PredictSummary {
        area: area.source.clone(),
        tiles: n,
        runs: runs.iter().map(|r| r.dir.display().to_string()).collect(),
        georef,
        raster: [grid.cols, grid.rows],
        labelled: metrics,
        band_coverage,
        aoa_threshold: predictions.threshold,
        aoa_inside: inside.iter().filter(|&&v| v).count() as f64 / n.max(1) as f64,
    };
    let mut text = serde_json::to_string_pretty(&summary)?;
    text.push('\n');
    atomic::write(&out.join("predict.json"), text.as_bytes())?;
    Ok(summary)
}
