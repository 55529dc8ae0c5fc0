//! `<experiment>/records/`: the committed form of an experiment's finished runs, from which its
//! tables rebuild byte for byte on a clone that has no run directories.
//!
//! - `runs.parquet`: one row per finished run: its id, resolved spec, `meta.json`,
//!   `test_metrics.json` and `transfer.json` verbatim (so every number reads back bit-identical),
//!   and its split as a SHA-256 of `split.csv` with the count of tiles in each part (the rule that
//!   rebuilds the split is the resolved spec's `split:` section);
//! - `epochs.parquet`: every run's `metrics.csv` (epoch, split, metric, value);
//! - `predictions.parquet`: every run's `predictions.csv` (x, y, target, prediction);
//! - `transfer_predictions.parquet`: every transfer run's `transfer_predictions.csv` (target
//!   city, fraction, tiles, x, y, target, prediction); written only once a run has one, so an
//!   experiment without transfer runs keeps its three files.
//!
//! No checkpoints, images or TensorBoard events. Exporting merges: a run already archived and
//! absent from `runs/` (a fresh clone) is kept, a run present in both is taken from `runs/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use polars::df;
use polars::prelude::{
    BooleanChunked, ChunkCompareEq, DataFrame, DataType, ParquetReader, ParquetWriter, SerReader,
    SortMultipleOptions,
};
use sha2::{Digest, Sha256};

use super::state::{self, State};
use crate::track::atomic;

pub const DIR: &str = "records";
const RUNS: &str = "runs.parquet";
const EPOCHS: &str = "epochs.parquet";
const PREDICTIONS: &str = "predictions.parquet";
const TRANSFER_PREDICTIONS: &str = "transfer_predictions.parquet";
const TRANSFER_HEADER: &str = "target_city,fraction,tiles,x,y,target,prediction";

/// The tiles of a run's split, by part (`unused`: in no part, e.g. inside a buffer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SplitCounts {
    pub train: u32,
    pub valid: u32,
    pub test: u32,
    pub unused: u32,
}

/// One finished run as the tables need it; the JSON and YAML are the run directory's own bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub run_id: String,
    pub spec_yaml: String,
    pub meta_json: String,
    pub test_metrics_json: String,
    pub transfer_json: Option<String>,
    pub split_sha256: Option<String>,
    pub split: Option<SplitCounts>,
}

/// Whether `experiment_dir` has an archive.
pub fn exists(experiment_dir: &Path) -> bool {
    experiment_dir.join(DIR).join(RUNS).is_file()
}

/// The archived runs of `experiment_dir`, in run-id order (none without an archive).
pub fn read(experiment_dir: &Path) -> Result<Vec<RunRecord>> {
    let path = experiment_dir.join(DIR).join(RUNS);
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let frame = read_parquet(&path)?;
    let text = |name: &str| -> Result<Vec<Option<String>>> {
        Ok(frame
            .column(name)
            .with_context(|| format!("{}: column `{name}`", path.display()))?
            .str()
            .with_context(|| format!("{}: column `{name}`", path.display()))?
            .iter()
            .map(|v| v.map(String::from))
            .collect())
    };
    let count = |name: &str| -> Result<Vec<Option<u32>>> {
        Ok(frame
            .column(name)
            .with_context(|| format!("{}: column `{name}`", path.display()))?
            .cast(&DataType::UInt32)?
            .u32()?
            .iter()
            .collect())
    };
    let (ids, specs, metas, tests, transfers, hashes) = (
        text("run_id")?,
        text("spec")?,
        text("meta")?,
        text("test_metrics")?,
        text("transfer")?,
        text("split_sha256")?,
    );
    let (train, valid, test, unused) = (
        count("split_train")?,
        count("split_valid")?,
        count("split_test")?,
        count("split_unused")?,
    );
    let mut out = Vec::with_capacity(ids.len());
    for i in 0..ids.len() {
        let required = |v: &Option<String>, what: &str| -> Result<String> {
            v.clone()
                .with_context(|| format!("{}: row {} has no `{what}`", path.display(), i + 1))
        };
        let split = match (train[i], valid[i], test[i], unused[i]) {
            (Some(train), Some(valid), Some(test), Some(unused)) => Some(SplitCounts {
                train,
                valid,
                test,
                unused,
            }),
            _ => None,
        };
        out.push(RunRecord {
            run_id: required(&ids[i], "run_id")?,
            spec_yaml: required(&specs[i], "spec")?,
            meta_json: required(&metas[i], "meta")?,
            test_metrics_json: required(&tests[i], "test_metrics")?,
            transfer_json: transfers[i].clone(),
            split_sha256: hashes[i].clone(),
            split,
        });
    }
    Ok(out)
}

/// The record of the run directory `dir`, if it holds a finished run (checkpoints not needed).
pub fn from_run_dir(dir: &Path) -> Result<Option<RunRecord>> {
    if !matches!(state::check_records(dir), State::Done(_)) {
        return Ok(None);
    }
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .with_context(|| format!("reading {}", dir.join(name).display()))
    };
    let split_text = std::fs::read(dir.join("split.csv")).ok();
    Ok(Some(RunRecord {
        run_id: dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
        spec_yaml: read("spec.resolved.yaml")?,
        meta_json: read("meta.json")?,
        test_metrics_json: read("test_metrics.json")?,
        transfer_json: std::fs::read_to_string(dir.join("transfer.json")).ok(),
        split_sha256: split_text.as_deref().map(sha256_hex),
        split: split_text.as_deref().map(count_split),
    }))
}

/// Counts the parts of a `split.csv` (`x,y,split`).
pub fn count_split(text: &[u8]) -> SplitCounts {
    let mut counts = SplitCounts::default();
    for line in String::from_utf8_lossy(text).lines().skip(1) {
        match line.rsplit(',').next() {
            Some("train") => counts.train += 1,
            Some("valid") => counts.valid += 1,
            Some("test") => counts.test += 1,
            _ => counts.unused += 1,
        }
    }
    counts
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::data::fingerprint::hex(Sha256::new_with_prefix(bytes))
}

/// Archives every finished run under `experiment_dir/runs/` into `experiment_dir/records/`,
/// keeping archived runs that have no directory; returns how many runs the archive holds.
pub fn export(experiment_dir: &Path) -> Result<usize> {
    let mut records: BTreeMap<String, RunRecord> = read(experiment_dir)?
        .into_iter()
        .map(|r| (r.run_id.clone(), r))
        .collect();
    let mut fresh: Vec<(String, PathBuf)> = Vec::new();
    for dir in run_dirs(experiment_dir) {
        if let Some(record) = from_run_dir(&dir)? {
            fresh.push((record.run_id.clone(), dir));
            records.insert(record.run_id.clone(), record);
        }
    }
    if fresh.is_empty() {
        return Ok(records.len());
    }
    let archive = experiment_dir.join(DIR);
    std::fs::create_dir_all(&archive).with_context(|| format!("creating {}", archive.display()))?;
    // Several sweeps of one experiment export here; a writer killed mid-write leaves its scratch.
    atomic::remove_dead_scratch(&archive);
    let replaced: Vec<&str> = fresh.iter().map(|(id, _)| id.as_str()).collect();
    let mut epochs = merge(
        &archive.join(EPOCHS),
        &replaced,
        fresh
            .iter()
            .map(|(id, dir)| epochs_frame(id, &dir.join("metrics.csv")))
            .collect::<Result<Vec<_>>>()?,
    )?;
    let mut predictions = merge(
        &archive.join(PREDICTIONS),
        &replaced,
        fresh
            .iter()
            .map(|(id, dir)| predictions_frame(id, &dir.join("predictions.csv")))
            .collect::<Result<Vec<_>>>()?,
    )?;
    let mut transfer = transfer_merged(&archive, &replaced, &fresh)?;
    let mut runs = runs_frame(records.values())?;
    write_parquet(&archive.join(EPOCHS), &mut epochs)?;
    write_parquet(&archive.join(PREDICTIONS), &mut predictions)?;
    if let Some(transfer) = &mut transfer {
        write_parquet(&archive.join(TRANSFER_PREDICTIONS), transfer)?;
    }
    // Last: the run list is what marks the archive as holding a run.
    write_parquet(&archive.join(RUNS), &mut runs)?;
    Ok(records.len())
}

/// The run directories under `experiment_dir/runs/`, in run-id order.
pub fn run_dirs(experiment_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(experiment_dir.join("runs")) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The archived per-epoch metrics of one run (epoch, split, metric, value), for reports.
pub fn epochs(experiment_dir: &Path, run_id: &str) -> Result<DataFrame> {
    rows_of(&experiment_dir.join(DIR).join(EPOCHS), run_id)
}

/// The archived test predictions of one run (x, y, target, prediction), for reports.
pub fn predictions(experiment_dir: &Path, run_id: &str) -> Result<DataFrame> {
    rows_of(&experiment_dir.join(DIR).join(PREDICTIONS), run_id)
}

/// The archived transfer predictions of one run (target_city, fraction, tiles, x, y, target,
/// prediction), as its `transfer_predictions.csv` holds them; an error naming the file if the
/// archive has none.
pub fn transfer_predictions(experiment_dir: &Path, run_id: &str) -> Result<DataFrame> {
    rows_of(&experiment_dir.join(DIR).join(TRANSFER_PREDICTIONS), run_id)
}

/// `frame` (from [`transfer_predictions`]) as `transfer_predictions.csv`, byte for byte: a
/// float's `Display` is the shortest text that parses back to it, which is how the run wrote it.
pub fn transfer_predictions_csv(frame: &DataFrame) -> Result<String> {
    use std::fmt::Write as _;
    if let Some(c) = frame.columns().iter().find(|c| c.null_count() > 0) {
        bail!(
            "transfer predictions: column `{}` has an empty field",
            c.name()
        );
    }
    let text = |name: &str| -> Result<Vec<&str>> {
        Ok(frame.column(name)?.str()?.iter().flatten().collect())
    };
    let int = |name: &str| -> Result<Vec<i64>> {
        Ok(frame.column(name)?.i64()?.into_no_null_iter().collect())
    };
    let float = |name: &str| -> Result<Vec<f64>> {
        Ok(frame.column(name)?.f64()?.into_no_null_iter().collect())
    };
    let (cities, fractions, tiles) = (text("target_city")?, float("fraction")?, text("tiles")?);
    let (x, y) = (int("x")?, int("y")?);
    let (target, prediction) = (float("target")?, float("prediction")?);
    let mut out = format!("{TRANSFER_HEADER}\n");
    for i in 0..frame.height() {
        writeln!(
            out,
            "{},{},{},{},{},{},{}",
            cities[i], fractions[i], tiles[i], x[i], y[i], target[i], prediction[i]
        )?;
    }
    Ok(out)
}

fn rows_of(path: &Path, run_id: &str) -> Result<DataFrame> {
    let frame = read_parquet(path)?;
    let mask = frame.column("run_id")?.str()?.equal(run_id);
    Ok(frame.filter(&mask)?.drop("run_id")?)
}

fn runs_frame<'a>(records: impl Iterator<Item = &'a RunRecord>) -> Result<DataFrame> {
    let records: Vec<&RunRecord> = records.collect();
    let text = |f: fn(&RunRecord) -> Option<&str>| -> Vec<Option<&str>> {
        records.iter().map(|r| f(r)).collect()
    };
    let count = |f: fn(&SplitCounts) -> u32| -> Vec<Option<u32>> {
        records.iter().map(|r| r.split.as_ref().map(f)).collect()
    };
    Ok(df!(
        "run_id" => text(|r| Some(&r.run_id)),
        "spec" => text(|r| Some(&r.spec_yaml)),
        "meta" => text(|r| Some(&r.meta_json)),
        "test_metrics" => text(|r| Some(&r.test_metrics_json)),
        "transfer" => text(|r| r.transfer_json.as_deref()),
        "split_sha256" => text(|r| r.split_sha256.as_deref()),
        "split_train" => count(|s| s.train),
        "split_valid" => count(|s| s.valid),
        "split_test" => count(|s| s.test),
        "split_unused" => count(|s| s.unused),
    )?)
}

/// `metrics.csv` (epoch, split, metric, value) of run `id` as a frame with its id.
fn epochs_frame(id: &str, path: &Path) -> Result<DataFrame> {
    let rows = csv_rows(path, "epoch,split,metric,value")?;
    let mut epoch = Vec::with_capacity(rows.len());
    let (mut split, mut metric, mut value) = (Vec::new(), Vec::new(), Vec::new());
    for (line, fields) in &rows {
        epoch.push(parse::<u32>(path, *line, &fields[0])?);
        split.push(fields[1].to_string());
        metric.push(fields[2].to_string());
        value.push(parse::<f64>(path, *line, &fields[3])?);
    }
    Ok(df!(
        "run_id" => vec![id.to_string(); rows.len()],
        "epoch" => epoch,
        "split" => split,
        "metric" => metric,
        "value" => value,
    )?)
}

/// `predictions.csv` (x, y, target, prediction) of run `id` as a frame with its id.
fn predictions_frame(id: &str, path: &Path) -> Result<DataFrame> {
    let rows = csv_rows(path, "x,y,target,prediction")?;
    let mut columns: [Vec<f64>; 2] = Default::default();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for (line, fields) in &rows {
        x.push(parse::<i64>(path, *line, &fields[0])?);
        y.push(parse::<i64>(path, *line, &fields[1])?);
        columns[0].push(parse::<f64>(path, *line, &fields[2])?);
        columns[1].push(parse::<f64>(path, *line, &fields[3])?);
    }
    let [target, prediction] = columns;
    Ok(df!(
        "run_id" => vec![id.to_string(); rows.len()],
        "x" => x,
        "y" => y,
        "target" => target,
        "prediction" => prediction,
    )?)
}

/// `transfer_predictions.csv` of run `id` as a frame with its id.
fn transfer_predictions_frame(id: &str, path: &Path) -> Result<DataFrame> {
    let rows = csv_rows(path, TRANSFER_HEADER)?;
    let (mut city, mut tiles) = (Vec::new(), Vec::new());
    let (mut x, mut y) = (Vec::new(), Vec::new());
    let mut floats: [Vec<f64>; 3] = Default::default();
    for (line, fields) in &rows {
        city.push(fields[0].clone());
        floats[0].push(parse::<f64>(path, *line, &fields[1])?);
        tiles.push(fields[2].clone());
        x.push(parse::<i64>(path, *line, &fields[3])?);
        y.push(parse::<i64>(path, *line, &fields[4])?);
        floats[1].push(parse::<f64>(path, *line, &fields[5])?);
        floats[2].push(parse::<f64>(path, *line, &fields[6])?);
    }
    let [fraction, target, prediction] = floats;
    Ok(df!(
        "run_id" => vec![id.to_string(); rows.len()],
        "target_city" => city,
        "fraction" => fraction,
        "tiles" => tiles,
        "x" => x,
        "y" => y,
        "target" => target,
        "prediction" => prediction,
    )?)
}

/// The transfer predictions archive after `fresh` replaced its runs; None while no run, archived
/// or fresh, has transfer predictions (the file is not created for such an experiment).
fn transfer_merged(
    archive: &Path,
    replaced: &[&str],
    fresh: &[(String, PathBuf)],
) -> Result<Option<DataFrame>> {
    let path = archive.join(TRANSFER_PREDICTIONS);
    let frames = fresh
        .iter()
        .map(|(id, dir)| (id, dir.join("transfer_predictions.csv")))
        .filter(|(_, csv)| csv.is_file())
        .map(|(id, csv)| transfer_predictions_frame(id, &csv))
        .collect::<Result<Vec<_>>>()?;
    if frames.is_empty() && !path.is_file() {
        return Ok(None);
    }
    merge(&path, replaced, frames).map(Some)
}

/// The rows of a small CSV with a known header, each with its line number.
fn csv_rows(path: &Path, header: &str) -> Result<Vec<(usize, Vec<String>)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    if first != header {
        bail!("{}: header `{first}`, expected `{header}`", path.display());
    }
    let width = header.split(',').count();
    lines
        .enumerate()
        .map(|(i, line)| {
            let fields: Vec<String> = line.split(',').map(String::from).collect();
            if fields.len() != width {
                bail!(
                    "{} line {}: `{line}` is not a row of {header}",
                    path.display(),
                    i + 2
                );
            }
            Ok((i + 2, fields))
        })
        .collect()
}

fn parse<T: std::str::FromStr>(path: &Path, line: usize, field: &str) -> Result<T> {
    field
        .parse()
        .map_err(|_| anyhow::anyhow!("{} line {line}: `{field}` is not a number", path.display()))
}

/// The archived rows of `path` without the runs in `replaced`, then `fresh`, in run-id order.
fn merge(path: &Path, replaced: &[&str], fresh: Vec<DataFrame>) -> Result<DataFrame> {
    let mut parts: Vec<DataFrame> = Vec::new();
    if path.is_file() {
        let old = read_parquet(path)?;
        let keep: BooleanChunked = old
            .column("run_id")?
            .str()?
            .iter()
            .map(|id| Some(!id.is_some_and(|id| replaced.contains(&id))))
            .collect();
        parts.push(old.filter(&keep)?);
    }
    parts.extend(fresh);
    let mut parts = parts.into_iter();
    let mut all = parts.next().context("no rows to archive")?;
    for part in parts {
        all.vstack_mut(&part).with_context(|| {
            format!(
                "{}: the archive's columns differ from this version's",
                path.display()
            )
        })?;
    }
    all.rechunk_mut();
    // Stable: each run's rows keep their file order.
    Ok(all.sort(
        ["run_id"],
        SortMultipleOptions::default().with_maintain_order(true),
    )?)
}

fn read_parquet(path: &Path) -> Result<DataFrame> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    ParquetReader::new(file)
        .finish()
        .with_context(|| format!("reading {}", path.display()))
}

fn write_parquet(path: &Path, frame: &mut DataFrame) -> Result<()> {
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes).finish(frame)?;
    atomic::write(path, &bytes)
}
