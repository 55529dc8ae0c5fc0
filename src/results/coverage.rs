//! `coverage.{csv,parquet,md}`: how often a variant's 90 % prediction intervals hold the true
//! value on its cross-validation test folds, and how wide they are.
//!
//! Each outer fold k is scored with split-conformal intervals calibrated on the out-of-fold
//! residuals of the *other* folds of the same variant, dataset and seed (every tile's prediction
//! comes from the one model that did not train on it), so a fold is never calibrated on itself.
//! Under spatial folds the calibration tiles lie in other blocks: coverage below the nominal level
//! is what a planner would meet on an unseen area of the same city.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use polars::prelude::*;

use super::RunRow;
use crate::stats::conformal;
use crate::track::atomic;

/// The nominal level of the tables' intervals.
pub const LEVEL: f64 = 0.9;

/// One variant on one dataset, over its seeds and folds.
#[derive(Debug, Clone)]
pub struct CoverageRow {
    pub dataset: String,
    pub variant: String,
    /// Folds scored (seeds × folds).
    pub folds: usize,
    pub tiles: usize,
    /// Share of test tiles inside their interval, pooled.
    pub coverage: f64,
    /// The lowest and highest coverage of a single fold.
    pub fold_min: f64,
    pub fold_max: f64,
    /// Mean interval width (log scale, as the predictions).
    pub mean_width: f64,
}

/// (target, prediction) of each test tile of a finished run or ensemble row.
fn predictions(dir: &Path, row: &RunRow) -> Result<Vec<(f64, f64)>> {
    Ok(super::ensemble::test_predictions(dir, row)?
        .into_iter()
        .map(|t| (t.target, t.prediction))
        .collect())
}

/// The rows, or none when no run tests on a fold.
pub fn compute(dir: &Path, rows: &[RunRow], order: &[String]) -> Result<Vec<CoverageRow>> {
    // (dataset, variant) → seed → fold → (target, prediction) of its test tiles.
    type Folds = BTreeMap<usize, Vec<(f64, f64)>>;
    let mut groups: BTreeMap<(String, String), BTreeMap<u64, Folds>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.status == "done") {
        let Some(fold) = r.fold else { continue };
        groups
            .entry((r.dataset.clone(), r.variant.clone()))
            .or_default()
            .entry(r.seed)
            .or_default()
            .insert(fold, predictions(dir, r)?);
    }
    let mut out = Vec::new();
    for ((dataset, variant), seeds) in groups {
        let (mut covered, mut tiles, mut width_sum, mut folds) = (0usize, 0usize, 0.0f64, 0usize);
        let (mut fold_min, mut fold_max) = (f64::INFINITY, f64::NEG_INFINITY);
        for by_fold in seeds.values().filter(|f| f.len() >= 2) {
            for (k, test) in by_fold {
                let (targets, predicted): (Vec<f64>, Vec<f64>) = by_fold
                    .iter()
                    .filter(|(j, _)| *j != k)
                    .flat_map(|(_, p)| p.iter().copied())
                    .unzip();
                let Some(q) = conformal::split_half_width(&targets, &predicted, LEVEL) else {
                    continue;
                };
                let hit = test
                    .iter()
                    .filter(|&&(y, p)| conformal::covers(y, conformal::split_interval(p, q)))
                    .count();
                if test.is_empty() {
                    continue;
                }
                let share = hit as f64 / test.len() as f64;
                fold_min = fold_min.min(share);
                fold_max = fold_max.max(share);
                covered += hit;
                tiles += test.len();
                width_sum += 2.0 * q * test.len() as f64;
                folds += 1;
            }
        }
        if tiles > 0 {
            out.push(CoverageRow {
                dataset,
                variant,
                folds,
                tiles,
                coverage: covered as f64 / tiles as f64,
                fold_min,
                fold_max,
                mean_width: width_sum / tiles as f64,
            });
        }
    }
    let rank = |v: &str| order.iter().position(|o| o == v).unwrap_or(usize::MAX);
    out.sort_by(|a, b| {
        (a.dataset.as_str(), rank(&a.variant)).cmp(&(b.dataset.as_str(), rank(&b.variant)))
    });
    Ok(out)
}

fn frame(rows: &[CoverageRow]) -> Result<DataFrame> {
    let s = |f: fn(&CoverageRow) -> String| rows.iter().map(f).collect::<Vec<_>>();
    let f = |f: fn(&CoverageRow) -> f64| rows.iter().map(f).collect::<Vec<_>>();
    let u = |f: fn(&CoverageRow) -> u64| rows.iter().map(f).collect::<Vec<_>>();
    Ok(DataFrame::new_infer_height(vec![
        Column::new("dataset".into(), s(|r| r.dataset.clone())),
        Column::new("variant".into(), s(|r| r.variant.clone())),
        Column::new("level".into(), f(|_| LEVEL)),
        Column::new("folds".into(), u(|r| r.folds as u64)),
        Column::new("tiles".into(), u(|r| r.tiles as u64)),
        Column::new("coverage".into(), f(|r| r.coverage)),
        Column::new("fold_min".into(), f(|r| r.fold_min)),
        Column::new("fold_max".into(), f(|r| r.fold_max)),
        Column::new("mean_width".into(), f(|r| r.mean_width)),
    ])?)
}

fn markdown(rows: &[CoverageRow]) -> String {
    let mut md = format!(
        "## Prediction intervals: coverage on the test folds\n\n\
         Split-conformal intervals at {:.0} % on ln(emission): each test fold calibrated on the \
         out-of-fold residuals of the other folds (same variant, dataset and seed). Coverage is \
         the share of test tiles inside their interval (nominal {:.0} %), pooled over folds and \
         seeds; fold min–max shows how it varies between areas; width is the mean interval width \
         on the log scale.\n\n\
         | dataset | variant | folds | tiles | coverage | fold min–max | mean width |\n\
         |---|---|---|---|---|---|---|\n",
        LEVEL * 100.0,
        LEVEL * 100.0
    );
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.1} % | {:.1}–{:.1} % | {:.3} |",
            r.dataset,
            r.variant,
            r.folds,
            r.tiles,
            100.0 * r.coverage,
            100.0 * r.fold_min,
            100.0 * r.fold_max,
            r.mean_width
        );
    }
    md
}

/// Writes `coverage.{csv,parquet,md}` when some run tests on a fold; returns the markdown.
pub fn write_tables(dir: &Path, rows: &[RunRow], order: &[String]) -> Result<Option<String>> {
    let coverage = compute(dir, rows, order)?;
    if coverage.is_empty() {
        return Ok(None);
    }
    super::write_frame(dir, "coverage", &mut frame(&coverage)?)?;
    let md = markdown(&coverage);
    let file = format!("{md}{}", super::provenance::footer(rows));
    atomic::write(&dir.join("coverage.md"), file.as_bytes())?;
    Ok(Some(md))
}
