//! The outputs of `predict`: the per-tile table, then from it the GeoTIFF, GeoJSON, map and
//! `predict.json`. A shard (`--shard i/n`) writes only its table and `shard.json`; `predict merge`
//! joins the shards' tables and writes the rest, so an array of jobs can map a large area.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use polars::prelude::{df, ParquetReader, SerReader};
use serde::{Deserialize, Serialize};

use super::geo::{self, Georef, Grid};
use super::intervals::{BandOptions, Calibrator, IntervalSummary, Method, Scale};
use super::{map, Area, Predictions, TrainedRun};
use crate::data::TileKey;
use crate::metrics::Metrics;
use crate::track::atomic;

/// One share of an area: chunks `index`, `index + count`, … (`0/1`: all of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Self { index: 0, count: 1 }
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}`: a shard is i/n with 0 ≤ i < n, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

/// The per-tile table, `predictions.csv` / `.parquet`.
#[derive(Debug, Clone, Default)]
struct Table {
    keys: Vec<TileKey>,
    lat: Vec<f64>,
    lon: Vec<f64>,
    mean: Vec<f64>,
    std: Vec<f64>,
    /// NaN where the tile has no label.
    target: Vec<f64>,
    di: Vec<f64>,
    /// The conformal band (ln scale); NaN without one.
    lower: Vec<f64>,
    upper: Vec<f64>,
}

/// What a shard records beside its table, and what `predict.json` repeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ShardInfo {
    area: String,
    area_tiles: usize,
    runs: Vec<String>,
    georef: Georef,
    aoa_threshold: f64,
    shard: Shard,
    /// How the bands were calibrated (none: no bands).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bands: Option<Bands>,
}

/// The bands' method, level and calibration size, as shards pass them to `merge`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Bands {
    method: Method,
    level: f64,
    #[serde(default, skip_serializing_if = "Scale::is_none")]
    scale: Scale,
    calibration_points: usize,
}

/// What `predict.json` records beside the outputs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PredictSummary {
    pub area: String,
    pub tiles: usize,
    pub runs: Vec<String>,
    pub georef: Georef,
    pub raster: [usize; 2],
    /// Metrics (ln scale) of the ensemble mean over the area's labelled tiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labelled: Option<Metrics>,
    /// Fraction of labelled tiles whose ln-emission lies in mean ± 1.96σ (two runs or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band_coverage: Option<f64>,
    /// Area of applicability: the DI threshold and the fraction of tiles within it.
    pub aoa_threshold: f64,
    pub aoa_inside: f64,
    /// Most of the area lies outside the area of applicability: the map is mostly extrapolation
    /// and its bands are least trustworthy there (coverage falls outside; docs/predict.md).
    #[serde(default)]
    pub mostly_outside: bool,
    /// The conformal bands, and their coverage on the labelled tiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<IntervalSummary>,
}

fn placement(area: &Area) -> Result<Georef> {
    match &area.corners {
        Some(c) => {
            let list: Vec<(TileKey, (f64, f64))> = area
                .city
                .keys
                .iter()
                .filter_map(|key| c.get(key).map(|&ll| (*key, ll)))
                .collect();
            Georef::fit(&list).with_context(|| format!("placing {}", area.source))
        }
        None => {
            eprintln!(
                "{} gives no WGS84 corners: tiles placed nominally ({} m, key (0, 0) at 0°N 0°E); not a real location",
                area.source, area.tile_size_m
            );
            Ok(Georef::nominal(area.tile_size_m))
        }
    }
}

fn table(
    area: &Area,
    predictions: &Predictions,
    georef: &Georef,
    bands: Option<&Calibrator>,
) -> Table {
    let city = &area.city;
    let k = predictions.per_run.len() as f64;
    let mut t = Table::default();
    for &i in &predictions.predicted {
        let key = city.keys[i];
        let values: Vec<f64> = predictions.per_run.iter().map(|p| p[i]).collect();
        let mean = values.iter().sum::<f64>() / k;
        // Sample std across the runs (0 for one run).
        let std = if k < 2.0 {
            0.0
        } else {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (k - 1.0)).sqrt()
        };
        let (lon, lat) = match area.corners.as_ref().and_then(|c| c.get(&key)) {
            Some(&(lat, lon)) => (lon, lat),
            None => georef.at(key.x as f64, key.y as f64),
        };
        t.keys.push(key);
        t.lat.push(lat);
        t.lon.push(lon);
        t.mean.push(mean);
        t.std.push(std);
        t.target.push(if city.emission[i] > 0.0 {
            city.target(i)
        } else {
            f64::NAN
        });
        t.di.push(predictions.di[i]);
        let own_di: Vec<f64> = predictions.per_run_di.iter().map(|d| d[i]).collect();
        let (lower, upper) = bands.map_or((f64::NAN, f64::NAN), |b| {
            b.band(&values, mean, &own_di, predictions.di[i])
        });
        t.lower.push(lower);
        t.upper.push(upper);
    }
    t
}

fn write_table(out: &Path, t: &Table, threshold: f64, runs: usize) -> Result<()> {
    let n = t.keys.len();
    let opt = |v: Vec<f64>| {
        v.into_iter()
            .map(|x| x.is_finite().then_some(x))
            .collect::<Vec<_>>()
    };
    let band = (0..n)
        .map(|i| {
            (runs >= 2 && t.target[i].is_finite())
                .then(|| (t.target[i] - t.mean[i]).abs() <= 1.96 * t.std[i])
        })
        .collect::<Vec<_>>();
    let mut frame = df!(
        "x" => t.keys.iter().map(|k| k.x).collect::<Vec<_>>(),
        "y" => t.keys.iter().map(|k| k.y).collect::<Vec<_>>(),
        "lat" => t.lat.clone(),
        "lon" => t.lon.clone(),
        "predicted_ln" => t.mean.clone(),
        "predicted_emission" => t.mean.iter().map(|v| v.exp()).collect::<Vec<_>>(),
        "std_ln" => t.std.clone(),
        "target_ln" => opt(t.target.clone()),
        "residual_ln" => opt((0..n).map(|i| t.target[i] - t.mean[i]).collect()),
        "di" => t.di.clone(),
        "in_aoa" => t.di.iter().map(|&d| d <= threshold).collect::<Vec<_>>(),
        "in_band" => band,
    )?;
    if t.lower.iter().any(|v| v.is_finite()) {
        let inside = (0..n)
            .map(|i| t.target[i].is_finite().then(|| in_interval(t, i)))
            .collect::<Vec<_>>();
        frame.with_column(polars::prelude::Column::new(
            "lower_ln".into(),
            t.lower.clone(),
        ))?;
        frame.with_column(polars::prelude::Column::new(
            "upper_ln".into(),
            t.upper.clone(),
        ))?;
        frame.with_column(polars::prelude::Column::new("in_interval".into(), inside))?;
    }
    crate::results::write_frame(out, "predictions", &mut frame)
}

/// Whether tile i's label lies in its conformal band.
fn in_interval(t: &Table, i: usize) -> bool {
    t.lower[i] <= t.target[i] && t.target[i] <= t.upper[i]
}

fn read_table(dir: &Path) -> Result<Table> {
    let path = dir.join("predictions.parquet");
    let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let frame = ParquetReader::new(file)
        .finish()
        .with_context(|| format!("reading {}", path.display()))?;
    let ints = |name: &str| -> Result<Vec<i64>> {
        Ok(frame
            .column(name)?
            .i64()?
            .iter()
            .map(|v| v.unwrap_or(0))
            .collect())
    };
    let floats = |name: &str| crate::results::float_column(&frame, name);
    // A table without bands (none were calibrated) reads as NaN bands.
    let band = |name: &str| -> Result<Vec<f64>> {
        if frame.column(name).is_ok() {
            floats(name)
        } else {
            Ok(vec![f64::NAN; frame.height()])
        }
    };
    let (x, y) = (ints("x")?, ints("y")?);
    Ok(Table {
        keys: x
            .into_iter()
            .zip(y)
            .map(|(x, y)| TileKey { x, y })
            .collect(),
        lat: floats("lat")?,
        lon: floats("lon")?,
        mean: floats("predicted_ln")?,
        std: floats("std_ln")?,
        target: floats("target_ln")?,
        di: floats("di")?,
        lower: band("lower_ln")?,
        upper: band("upper_ln")?,
    })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    atomic::write(path, text.as_bytes())
}

/// The GeoTIFF, GeoJSON, map and `predict.json` of a whole area's table.
fn write_products(out: &Path, t: &Table, info: &ShardInfo) -> Result<PredictSummary> {
    let georef = &info.georef;
    let n = t.keys.len();
    let inside: Vec<bool> = t.di.iter().map(|&d| d <= info.aoa_threshold).collect();
    let grid = Grid::new(&t.keys, georef)?;
    let mut raster = vec![geo::NODATA; grid.cols * grid.rows];
    let mut ln_map = vec![f64::NAN; grid.cols * grid.rows];
    let mut outside = vec![false; grid.cols * grid.rows];
    for (i, key) in t.keys.iter().enumerate() {
        let (c, r) = grid.pixel(*key);
        raster[r * grid.cols + c] = t.mean[i].exp() as f32;
        ln_map[r * grid.cols + c] = t.mean[i];
        outside[r * grid.cols + c] = !inside[i];
    }
    if info.bands.is_some() {
        // Bands 2 and 3: the interval's bounds, in emission units as band 1.
        let mut lower = vec![geo::NODATA; grid.cols * grid.rows];
        let mut upper = vec![geo::NODATA; grid.cols * grid.rows];
        let mut width = vec![f64::NAN; grid.cols * grid.rows];
        for (i, key) in t.keys.iter().enumerate() {
            let (c, r) = grid.pixel(*key);
            if t.lower[i].is_finite() {
                lower[r * grid.cols + c] = t.lower[i].exp() as f32;
                upper[r * grid.cols + c] = t.upper[i].exp() as f32;
                width[r * grid.cols + c] = t.upper[i] - t.lower[i];
            }
        }
        atomic::write(
            &out.join("emission.tif"),
            &geo::geotiff_bands(&[&raster, &lower, &upper], &grid, georef)?,
        )?;
        atomic::write(
            &out.join("interval_width.png"),
            &map::png_robust(&width, &outside, &grid)?,
        )?;
    } else {
        atomic::write(
            &out.join("emission.tif"),
            &geo::geotiff(&raster, &grid, georef)?,
        )?;
    }
    atomic::write(&out.join("map.png"), &map::png(&ln_map, &outside, &grid)?)?;
    let feature = |i: usize| {
        let key = t.keys[i];
        serde_json::json!({
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [geo::polygon(key, georef)]},
            "properties": {
                "x": key.x, "y": key.y,
                "predicted_ln": t.mean[i], "predicted_emission": t.mean[i].exp(), "std_ln": t.std[i],
                "target_ln": t.target[i].is_finite().then_some(t.target[i]),
                "di": t.di[i], "in_aoa": inside[i],
                "lower_ln": t.lower[i].is_finite().then_some(t.lower[i]),
                "upper_ln": t.upper[i].is_finite().then_some(t.upper[i]),
            },
        })
    };
    // Streamed feature by feature (a document tree of a large area's features would take far
    // more memory than its predictions); keys in serde_json's sorted order, as `json!` writes.
    atomic::write_with(&out.join("emission.geojson"), |w| {
        w.write_all(br#"{"features":["#)?;
        for i in 0..n {
            if i > 0 {
                w.write_all(b",")?;
            }
            serde_json::to_writer(&mut *w, &feature(i)).map_err(std::io::Error::other)?;
        }
        w.write_all(br#"],"type":"FeatureCollection"}"#)
    })?;

    let labelled: Vec<usize> = (0..n).filter(|&i| t.target[i].is_finite()).collect();
    let metrics = (!labelled.is_empty()).then(|| {
        let truth: Vec<f64> = labelled.iter().map(|&i| t.target[i]).collect();
        let predicted: Vec<f64> = labelled.iter().map(|&i| t.mean[i]).collect();
        Metrics::compute(&truth, &predicted)
    });
    let in_band = |i: usize| (t.target[i] - t.mean[i]).abs() <= 1.96 * t.std[i];
    let band_coverage = (info.runs.len() >= 2 && !labelled.is_empty())
        .then(|| labelled.iter().filter(|&&i| in_band(i)).count() as f64 / labelled.len() as f64);
    let aoa_inside = inside.iter().filter(|&&v| v).count() as f64 / n.max(1) as f64;
    let summary = PredictSummary {
        area: info.area.clone(),
        tiles: n,
        runs: info.runs.clone(),
        georef: georef.clone(),
        raster: [grid.cols, grid.rows],
        labelled: metrics,
        band_coverage,
        aoa_threshold: info.aoa_threshold,
        aoa_inside,
        mostly_outside: aoa_inside < 0.5,
        interval: info
            .bands
            .as_ref()
            .map(|b| interval_summary(t, b, &inside, &labelled)),
    };
    write_json(&out.join("predict.json"), &summary)?;
    Ok(summary)
}

/// The bands' width and their coverage on the labelled tiles, inside and outside the area of
/// applicability.
fn interval_summary(t: &Table, b: &Bands, inside: &[bool], labelled: &[usize]) -> IntervalSummary {
    let with: Vec<usize> = (0..t.keys.len())
        .filter(|&i| t.lower[i].is_finite())
        .collect();
    let share = |tiles: &[usize]| {
        (!tiles.is_empty()).then(|| {
            tiles.iter().filter(|&&i| in_interval(t, i)).count() as f64 / tiles.len() as f64
        })
    };
    let (in_aoa, out_aoa): (Vec<usize>, Vec<usize>) = labelled
        .iter()
        .copied()
        .filter(|&i| t.lower[i].is_finite())
        .partition(|&i| inside[i]);
    let all: Vec<usize> = labelled
        .iter()
        .copied()
        .filter(|&i| t.lower[i].is_finite())
        .collect();
    IntervalSummary {
        method: b.method,
        level: b.level,
        scale: b.scale,
        calibration_points: b.calibration_points,
        mean_width: with.iter().map(|&i| t.upper[i] - t.lower[i]).sum::<f64>()
            / with.len().max(1) as f64,
        coverage: share(&all),
        coverage_in_aoa: share(&in_aoa),
        coverage_outside_aoa: share(&out_aoa),
        labelled_in_aoa: in_aoa.len(),
        labelled_outside_aoa: out_aoa.len(),
        median_width_in_aoa: median_width(t, with.iter().filter(|&&i| inside[i])),
        median_width_outside_aoa: median_width(t, with.iter().filter(|&&i| !inside[i])),
    }
}

/// The median band width of `tiles` (the lower middle of an even count); None for none.
fn median_width<'a>(t: &Table, tiles: impl Iterator<Item = &'a usize>) -> Option<f64> {
    let mut w: Vec<f64> = tiles.map(|&i| t.upper[i] - t.lower[i]).collect();
    w.sort_by(f64::total_cmp);
    w.get(w.len().saturating_sub(1) / 2).copied()
}

/// Writes the outputs of `predictions`: everything for a whole area; for a shard of several, its
/// table and `shard.json` (then `None`), for [`merge`] to finish.
pub fn write_outputs(
    out: &Path,
    runs: &[TrainedRun],
    area: &Area,
    predictions: &Predictions,
    bands: impl Into<BandOptions>,
) -> Result<Option<PredictSummary>> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let georef = placement(area)?;
    let calibrator = match Calibrator::of(runs, bands.into())? {
        Ok(c) => Some(c),
        Err(why) => {
            eprintln!("no prediction intervals: {why}");
            None
        }
    };
    let t = table(area, predictions, &georef, calibrator.as_ref());
    write_table(out, &t, predictions.threshold, runs.len())?;
    let info = ShardInfo {
        area: area.source.clone(),
        area_tiles: area.city.len(),
        runs: runs.iter().map(|r| r.dir.display().to_string()).collect(),
        georef,
        aoa_threshold: predictions.threshold,
        shard: predictions.shard,
        bands: calibrator.map(|c| Bands {
            method: c.method,
            level: c.level,
            scale: c.scale,
            calibration_points: c.points,
        }),
    };
    if predictions.shard.count > 1 {
        write_json(&out.join("shard.json"), &info)?;
        return Ok(None);
    }
    write_products(out, &t, &info).map(Some)
}

/// Joins the outputs of every shard `0/n` … `n-1/n` of one prediction and writes the area's
/// products into `out`.
pub fn merge(shards: &[PathBuf], out: &Path) -> Result<PredictSummary> {
    let mut infos: Vec<(ShardInfo, &PathBuf)> = Vec::new();
    for dir in shards {
        let path = dir.join("shard.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (is {} a `predict --shard` output?)",
                path.display(),
                dir.display()
            )
        })?;
        let info: ShardInfo =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        infos.push((info, dir));
    }
    let Some((first, _)) = infos.first().cloned() else {
        bail!("predict merge: name the shard directories");
    };
    let count = first.shard.count;
    let mut seen = vec![None; count];
    for (info, dir) in &infos {
        let same = info.area == first.area && info.runs == first.runs && info.shard.count == count;
        if !same || info.georef != first.georef {
            bail!(
                "{}: a shard of another prediction (area, runs or shard count differ from {})",
                dir.display(),
                infos[0].1.display()
            );
        }
        if let Some(other) = seen[info.shard.index].replace(dir) {
            bail!(
                "shard {}/{count} given twice: {} and {}",
                info.shard.index,
                other.display(),
                dir.display()
            );
        }
    }
    let missing: Vec<String> = (0..count)
        .filter(|&i| seen[i].is_none())
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        bail!("predict merge: shards {} are missing", missing.join(", "));
    }
    let mut t = Table::default();
    for (_, dir) in &infos {
        let part = read_table(dir)?;
        t.keys.extend(part.keys);
        t.lat.extend(part.lat);
        t.lon.extend(part.lon);
        t.mean.extend(part.mean);
        t.std.extend(part.std);
        t.target.extend(part.target);
        t.di.extend(part.di);
        t.lower.extend(part.lower);
        t.upper.extend(part.upper);
    }
    if t.keys.len() != first.area_tiles {
        bail!(
            "the shards hold {} tiles, the area {}",
            t.keys.len(),
            first.area_tiles
        );
    }
    // Tile order as a whole-area prediction writes it does not matter to the products; sort by key
    // so that the merged table is the same whatever order the shards were named in.
    let mut order: Vec<usize> = (0..t.keys.len()).collect();
    order.sort_by_key(|&i| (t.keys[i].y, t.keys[i].x));
    let pick = |v: &[f64]| order.iter().map(|&i| v[i]).collect::<Vec<_>>();
    let t = Table {
        keys: order.iter().map(|&i| t.keys[i]).collect(),
        lat: pick(&t.lat),
        lon: pick(&t.lon),
        mean: pick(&t.mean),
        std: pick(&t.std),
        target: pick(&t.target),
        di: pick(&t.di),
        lower: pick(&t.lower),
        upper: pick(&t.upper),
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    write_table(out, &t, first.aoa_threshold, first.runs.len())?;
    let info = ShardInfo {
        shard: Shard::default(),
        ..first
    };
    write_products(out, &t, &info)
}
