//! What a report reads from an experiment directory: the finished runs (`results::collect`) and,
//! per run, its learning curve (`metrics.csv`), test predictions (`predictions.csv`) and split
//! (`split.csv`). A run is read from its run directory when that is finished, else from the
//! experiment's records (`record::archive`), so a clone with only the committed records reports
//! too; there the split is rebuilt from the run's spec and checked against its archived hash. A
//! file that is there but does not parse is an error naming it and its line (or run).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use polars::prelude::DataFrame;

use crate::data::City;
use crate::record::archive::{self, RunRecord};
use crate::record::{predictions, state};
use crate::results::comparison::{self, ComparisonRow};
use crate::results::{self, RunRow, TableOptions};
use crate::spec::RunSpec;

/// (epoch, value) pairs, in epoch order.
pub type Series = Vec<(usize, f64)>;

/// (x, y, split label) of a tile.
pub type SplitTile = (i64, i64, String);

/// Where a run's files were read.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// Its finished run directory.
    Dir(PathBuf),
    /// The experiment's `records/` (its run directory is missing or not finished); the SHA-256
    /// of its `split.csv`, which a rebuilt split must match.
    Records { split_sha256: Option<String> },
}

/// One finished run and its per-epoch and per-tile files.
pub struct Run {
    pub row: RunRow,
    pub origin: Origin,
    /// Its `spec.resolved.yaml`.
    pub spec_yaml: String,
    /// (epoch, mean train L1), one per epoch (empty for baselines).
    pub train_loss: Series,
    /// (epoch, validation R²) at each validation.
    pub valid_r2: Series,
    pub predictions: Vec<TilePrediction>,
    /// Every sample of the run's city with its part: its `split.csv`. For a run read from the
    /// records, rebuilt only for the split map ([`Inputs::split_runs`]); None if not rebuilt.
    pub split: Option<Vec<SplitTile>>,
}

impl Run {
    /// From its finished run directory.
    fn from_dir(row: &RunRow, dir: PathBuf) -> Result<Self> {
        let spec = dir.join("spec.resolved.yaml");
        let (train_loss, valid_r2) = read_curves(&dir.join("metrics.csv"))?;
        Ok(Self {
            row: row.clone(),
            spec_yaml: read_text(&spec)?
                .with_context(|| format!("{} is missing", spec.display()))?,
            train_loss,
            valid_r2,
            predictions: read_predictions(&dir.join("predictions.csv"))?,
            split: Some(read_split(&dir.join("split.csv"))?),
            origin: Origin::Dir(dir),
        })
    }

    /// From the archive of `experiment_dir`; its split is left to [`rebuild_split`].
    fn from_records(experiment_dir: &Path, row: &RunRow, record: &RunRecord) -> Result<Self> {
        let id = &row.run_id;
        let named = || format!("{}: run {id}", experiment_dir.join(archive::DIR).display());
        let epochs = archive::epochs(experiment_dir, id).with_context(named)?;
        let (train_loss, valid_r2) = frame_curves(&epochs).with_context(named)?;
        let predictions = archive::predictions(experiment_dir, id).with_context(named)?;
        Ok(Self {
            row: row.clone(),
            spec_yaml: record.spec_yaml.clone(),
            train_loss,
            valid_r2,
            predictions: predictions::from_frame(&predictions).with_context(named)?,
            split: None,
            origin: Origin::Records {
                split_sha256: record.split_sha256.clone(),
            },
        })
    }

    /// Its resolved spec.
    pub fn spec(&self) -> Result<RunSpec> {
        serde_norway::from_str(&self.spec_yaml).with_context(|| match &self.origin {
            Origin::Dir(dir) => format!("parsing {}", dir.join("spec.resolved.yaml").display()),
            Origin::Records { .. } => {
                format!(
                    "parsing the spec of run {} in records/runs.parquet",
                    self.row.run_id
                )
            }
        })
    }
}

pub use crate::record::predictions::TilePrediction;

/// Everything a report draws from.
pub struct Inputs {
    pub dir: PathBuf,
    pub runs: Vec<Run>,
    /// Every variant with a finished run: the spec's order first.
    pub variants: Vec<String>,
    pub reference: Option<String>,
    pub datasets: Vec<String>,
    /// All run rows (finished or not), for the statistics.
    pub rows: Vec<RunRow>,
    /// Runs that are there but not finished or not trusted, and why: listed on the page.
    pub left_out: Vec<String>,
    /// Every variant against the reference, computed once for all datasets ([`Self::comparison`]).
    comparison: OnceLock<Vec<ComparisonRow>>,
}

impl Inputs {
    pub fn read(dir: &Path) -> Result<Self> {
        if !dir.join("runs").is_dir() && !archive::exists(dir) {
            bail!(
                "{}: no runs/ directory and no records/ here (expected an experiment directory written by `opencarbon run`)",
                dir.display()
            );
        }
        let options = TableOptions::read(dir)?;
        let rows = results::collect(dir)?;
        let records: BTreeMap<String, RunRecord> = archive::read(dir)?
            .into_iter()
            .map(|r| (r.run_id.clone(), r))
            .collect();
        let mut runs = Vec::new();
        // A run whose directory is there but not finished is drawn from its archived record
        // (the tables count that record too); the page says so.
        let mut unfinished = Vec::new();
        for row in rows
            .iter()
            .filter(|r| r.metrics.is_some() && r.members.is_empty())
        {
            let run_dir = dir.join("runs").join(&row.run_id);
            match run_dir.is_dir().then(|| not_finished(&run_dir)) {
                // A finished run directory: its own files.
                Some(None) => {
                    runs.push(Run::from_dir(row, run_dir)?);
                    continue;
                }
                Some(Some(why)) => unfinished.push(format!(
                    "run {} ({} on {}, seed {}): {why}; its figures are drawn from its archived record",
                    row.run_id, row.variant, row.dataset, row.seed
                )),
                // No directory: a clone with only the records.
                None => {}
            }
            let record = records.get(&row.run_id).with_context(|| {
                format!(
                    "run {}: neither a finished run directory nor an archived record",
                    row.run_id
                )
            })?;
            runs.push(Run::from_records(dir, row, record)?);
        }
        // An ensemble's row: its mean predictions, drawn with its first member's spec and split
        // (members share the split); it has no training curves.
        for row in rows
            .iter()
            .filter(|r| r.metrics.is_some() && !r.members.is_empty())
        {
            let first = runs
                .iter()
                .find(|r| r.row.run_id == row.members[0])
                .with_context(|| {
                    format!(
                        "ensemble {}: member run {} not loaded",
                        row.variant, row.members[0]
                    )
                })?;
            let run = Run {
                row: row.clone(),
                origin: first.origin.clone(),
                spec_yaml: first.spec_yaml.clone(),
                train_loss: Series::default(),
                valid_r2: Series::default(),
                predictions: results::ensemble::test_predictions(dir, row)?,
                split: first.split.clone(),
            };
            runs.push(run);
        }
        if runs.is_empty() {
            bail!("{}: no finished run to report on", dir.display());
        }
        let mut variants = options.variants.clone();
        variants.retain(|v| runs.iter().any(|r| &r.row.variant == v));
        for r in &runs {
            if !variants.contains(&r.row.variant) {
                variants.push(r.row.variant.clone());
            }
        }
        let reference = options
            .reference
            .clone()
            .filter(|r| variants.contains(r))
            .or_else(|| variants.first().cloned());
        let mut datasets: Vec<String> = runs.iter().map(|r| r.row.dataset.clone()).collect();
        datasets.sort();
        datasets.dedup();
        let mut left_out: Vec<String> = rows
            .iter()
            .filter(|r| r.metrics.is_none())
            .map(|r| {
                format!(
                    "run {} ({} on {}, seed {}) left out: {}",
                    r.run_id, r.variant, r.dataset, r.seed, r.status
                )
            })
            .collect();
        left_out.extend(unfinished);
        left_out.extend(rebuild_splits(&mut runs, reference.as_deref(), &datasets));
        Ok(Self {
            comparison: OnceLock::new(),
            left_out,
            dir: dir.to_path_buf(),
            runs,
            variants,
            reference,
            datasets,
            rows,
        })
    }

    /// The paired comparisons against the reference variant (empty without one), over every
    /// dataset and metric: the bootstrap behind them is computed once per report.
    pub fn comparison(&self) -> &[ComparisonRow] {
        self.comparison.get_or_init(|| match &self.reference {
            Some(reference) => comparison::compare(&self.rows, reference, &self.variants),
            None => Vec::new(),
        })
    }

    /// The finished runs of `variant` on `dataset`, in (seed, fold) order.
    pub fn runs_of(&self, dataset: &str, variant: &str) -> Vec<&Run> {
        runs_of(&self.runs, dataset, variant)
    }

    /// The runs the split map of `dataset` shows: every fold of the reference variant's first
    /// seed.
    pub fn split_runs(&self, dataset: &str) -> Vec<&Run> {
        split_runs(&self.runs, self.reference.as_deref(), dataset)
    }

    /// Variants with a finished run on `dataset`, in report order.
    pub fn variants_on(&self, dataset: &str) -> Vec<&str> {
        self.variants
            .iter()
            .filter(|v| !self.runs_of(dataset, v).is_empty())
            .map(|v| v.as_str())
            .collect()
    }
}

fn runs_of<'a>(runs: &'a [Run], dataset: &str, variant: &str) -> Vec<&'a Run> {
    let mut runs: Vec<&Run> = runs
        .iter()
        .filter(|r| r.row.dataset == dataset && r.row.variant == variant)
        .collect();
    runs.sort_by_key(|r| (r.row.seed, r.row.fold));
    runs
}

fn split_runs<'a>(runs: &'a [Run], reference: Option<&str>, dataset: &str) -> Vec<&'a Run> {
    let Some(variant) = reference else {
        return Vec::new();
    };
    let runs = runs_of(runs, dataset, variant);
    let Some(seed) = runs.first().map(|r| r.row.seed) else {
        return Vec::new();
    };
    runs.into_iter().filter(|r| r.row.seed == seed).collect()
}

/// Why the run directory `dir` is not a finished run (None: it is).
fn not_finished(dir: &Path) -> Option<String> {
    match state::check_records(dir) {
        state::State::Done(_) => None,
        state::State::NotDone(status) => Some(format!("its run directory is {status}")),
        state::State::Broken(why) => Some(format!("its run directory is broken: {why}")),
    }
}

/// Rebuilds the splits of the runs read from the records that the split maps show; returns,
/// per dataset whose map cannot be drawn, why.
fn rebuild_splits(runs: &mut [Run], reference: Option<&str>, datasets: &[String]) -> Vec<String> {
    let mut notes = Vec::new();
    // Loaded once per dataset: every fold of a seed splits the same city.
    let mut cities: BTreeMap<String, City> = BTreeMap::new();
    for dataset in datasets {
        let wanted: Vec<String> = split_runs(runs, reference, dataset)
            .into_iter()
            .filter(|r| r.split.is_none())
            .map(|r| r.row.run_id.clone())
            .collect();
        for run in runs.iter_mut().filter(|r| wanted.contains(&r.row.run_id)) {
            match rebuild_split(run, &mut cities) {
                Ok(split) => run.split = Some(split),
                Err(e) => {
                    notes.push(format!(
                        "{dataset}: split map not drawn: run {} is read from the records and its split could not be rebuilt: {e:#}",
                        run.row.run_id
                    ));
                    break;
                }
            }
        }
    }
    notes
}

/// A run's split from its spec's `split:` rule on its dataset, as its `split.csv` held it: the
/// text must hash to the archived SHA-256.
fn rebuild_split(run: &Run, cities: &mut BTreeMap<String, City>) -> Result<Vec<SplitTile>> {
    let Origin::Records {
        split_sha256: Some(want),
    } = &run.origin
    else {
        bail!("its record holds no split hash");
    };
    let spec = run.spec()?;
    if !cities.contains_key(&run.row.dataset) {
        let city = crate::data::load_city(&spec.dataset, &Default::default())
            .with_context(|| format!("loading dataset `{}`", run.row.dataset))?;
        cities.insert(run.row.dataset.clone(), city);
    }
    let city = &cities[&run.row.dataset];
    // A transfer run lists its source city's samples, which is this city.
    let split = spec.split.split(city, spec.seed)?;
    let text = crate::data::split::to_csv(city, &split, &city.samples());
    if archive::sha256_hex(text.as_bytes()) != *want {
        bail!(
            "the split its spec gives on this data differs from its archived split.csv (SHA-256)"
        );
    }
    let name = PathBuf::from(format!("run {}: rebuilt split.csv", run.row.run_id));
    split_tiles(&name, &text)
}

fn read_text(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The data lines of a CSV with the expected header, split on commas; a missing file is empty.
fn csv_records(path: &Path, header: &str) -> Result<Vec<(usize, Vec<String>)>> {
    match read_text(path)? {
        Some(text) => text_records(path, &text, header),
        None => Ok(Vec::new()),
    }
}

/// As [`csv_records`], for `text` read from `path`.
fn text_records(path: &Path, text: &str, header: &str) -> Result<Vec<(usize, Vec<String>)>> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim() == header => {}
        Some((_, h)) => bail!("{}: header is `{h}`, expected `{header}`", path.display()),
        None => return Ok(Vec::new()),
    }
    let columns = header.split(',').count();
    lines
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let fields: Vec<String> = l.split(',').map(|f| f.trim().to_string()).collect();
            if fields.len() != columns {
                bail!(
                    "{} line {}: {} fields, expected {columns}",
                    path.display(),
                    i + 1,
                    fields.len()
                );
            }
            Ok((i + 1, fields))
        })
        .collect()
}

fn number<T: std::str::FromStr>(path: &Path, line: usize, field: &str, what: &str) -> Result<T> {
    field.parse().map_err(|_| {
        anyhow::anyhow!(
            "{} line {line}: {what} `{field}` is not a number",
            path.display()
        )
    })
}

/// Train L1 per epoch and validation R² per validation, from `metrics.csv`.
fn read_curves(path: &Path) -> Result<(Series, Series)> {
    let mut rows = Vec::new();
    for (line, f) in csv_records(path, "epoch,split,metric,value")? {
        let epoch: usize = number(path, line, &f[0], "epoch")?;
        let value: f64 = number(path, line, &f[3], "value")?;
        rows.push((epoch, f[1].clone(), f[2].clone(), value));
    }
    Ok(curves(rows))
}

/// As [`read_curves`], from the archived rows of a run (`archive::epochs`).
fn frame_curves(frame: &DataFrame) -> Result<(Series, Series)> {
    let epoch = frame.column("epoch")?.u32()?;
    let split = frame.column("split")?.str()?;
    let metric = frame.column("metric")?.str()?;
    let value = frame.column("value")?.f64()?;
    let mut rows = Vec::with_capacity(frame.height());
    for i in 0..frame.height() {
        match (epoch.get(i), split.get(i), metric.get(i), value.get(i)) {
            (Some(e), Some(s), Some(m), Some(v)) => rows.push((e as usize, s.into(), m.into(), v)),
            _ => bail!("archived metrics row {} has an empty field", i + 1),
        }
    }
    Ok(curves(rows))
}

/// The train L1 and validation R² (after epoch 0) of (epoch, split, metric, value) rows.
fn curves(rows: Vec<(usize, String, String, f64)>) -> (Series, Series) {
    let (mut loss, mut r2) = (BTreeMap::new(), BTreeMap::new());
    for (epoch, split, metric, value) in rows {
        match (split.as_str(), metric.as_str()) {
            ("train", "l1") => {
                loss.insert(epoch, value);
            }
            ("valid", "r2") if epoch > 0 => {
                r2.insert(epoch, value);
            }
            _ => {}
        }
    }
    (loss.into_iter().collect(), r2.into_iter().collect())
}

/// A run directory's `predictions.csv` (none when the file is missing).
fn read_predictions(path: &Path) -> Result<Vec<TilePrediction>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    predictions::read_csv(path)
}

fn read_split(path: &Path) -> Result<Vec<SplitTile>> {
    match read_text(path)? {
        Some(text) => split_tiles(path, &text),
        None => Ok(Vec::new()),
    }
}

/// The tiles of `split.csv` text read from `path`.
fn split_tiles(path: &Path, text: &str) -> Result<Vec<SplitTile>> {
    text_records(path, text, "x,y,split")?
        .into_iter()
        .map(|(line, f)| {
            Ok((
                number(path, line, &f[0], "x")?,
                number(path, line, &f[1], "y")?,
                f[2].clone(),
            ))
        })
        .collect()
}
