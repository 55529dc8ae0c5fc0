//! What a report reads from an experiment directory: the finished runs (`results::collect`) and,
//! per run, its learning curve (`metrics.csv`), test predictions (`predictions.csv`) and split
//! (`split.csv`). A file that is there but does not parse is an error naming it and its line.

use crate::record::state;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

use crate::results::comparison::{self, ComparisonRow};
use crate::results::{self, RunRow, TableOptions};

/// (epoch, value) pairs, in epoch order.
pub type Series = Vec<(usize, f64)>;

/// One finished run and its per-epoch and per-tile files.
pub struct Run {
    pub row: RunRow,
    pub dir: PathBuf,
    /// (epoch, mean train L1), one per epoch (empty for baselines).
    pub train_loss: Series,
    /// (epoch, validation R²) at each validation.
    pub valid_r2: Series,
    pub predictions: Vec<TilePrediction>,
    /// (x, y, split label) for every sample of the run's city.
    pub split: Vec<(i64, i64, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TilePrediction {
    pub x: i64,
    pub y: i64,
    pub target: f64,
    pub prediction: f64,
}

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
        if !dir.join("runs").is_dir() {
            bail!(
                "{}: no runs/ directory here (expected an experiment directory written by `opencarbon run`)",
                dir.display()
            );
        }
        let options = TableOptions::read(dir)?;
        let rows = results::collect(dir)?;
        let mut runs = Vec::new();
        // A run counted from its archived record (`records/`) whose directory is missing or no
        // longer whole is in the tables, but its figures need the directory's files.
        let mut unreadable = Vec::new();
        for row in rows.iter().filter(|r| r.metrics.is_some()) {
            let run_dir = dir.join("runs").join(&row.run_id);
            let why = match state::check_records(&run_dir) {
                state::State::Done(_) => None,
                state::State::NotDone(status) => Some(format!("its run directory is {status}")),
                state::State::Broken(why) => Some(format!("its run directory is broken: {why}")),
            };
            if let Some(why) = why {
                unreadable.push(format!(
                    "run {} ({} on {}, seed {}) left out of the figures: {why} (its archived record still counts in the tables)",
                    row.run_id, row.variant, row.dataset, row.seed
                ));
                continue;
            }
            let (train_loss, valid_r2) = read_curves(&run_dir.join("metrics.csv"))?;
            runs.push(Run {
                row: row.clone(),
                train_loss,
                valid_r2,
                predictions: read_predictions(&run_dir.join("predictions.csv"))?,
                split: read_split(&run_dir.join("split.csv"))?,
                dir: run_dir,
            });
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
        left_out.extend(unreadable);
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
        let mut runs: Vec<&Run> = self
            .runs
            .iter()
            .filter(|r| r.row.dataset == dataset && r.row.variant == variant)
            .collect();
        runs.sort_by_key(|r| (r.row.seed, r.row.fold));
        runs
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

fn read_text(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The data lines of a CSV with the expected header, split on commas; a missing file is empty.
fn csv_records(path: &Path, header: &str) -> Result<Vec<(usize, Vec<String>)>> {
    let Some(text) = read_text(path)? else {
        return Ok(Vec::new());
    };
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
    let (mut loss, mut r2) = (BTreeMap::new(), BTreeMap::new());
    for (line, f) in csv_records(path, "epoch,split,metric,value")? {
        let epoch: usize = number(path, line, &f[0], "epoch")?;
        let value: f64 = number(path, line, &f[3], "value")?;
        match (f[1].as_str(), f[2].as_str()) {
            ("train", "l1") => {
                loss.insert(epoch, value);
            }
            ("valid", "r2") if epoch > 0 => {
                r2.insert(epoch, value);
            }
            _ => {}
        }
    }
    Ok((loss.into_iter().collect(), r2.into_iter().collect()))
}

fn read_predictions(path: &Path) -> Result<Vec<TilePrediction>> {
    csv_records(path, "x,y,target,prediction")?
        .into_iter()
        .map(|(line, f)| {
            Ok(TilePrediction {
                x: number(path, line, &f[0], "x")?,
                y: number(path, line, &f[1], "y")?,
                target: number(path, line, &f[2], "target")?,
                prediction: number(path, line, &f[3], "prediction")?,
            })
        })
        .collect()
}

fn read_split(path: &Path) -> Result<Vec<(i64, i64, String)>> {
    csv_records(path, "x,y,split")?
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
