//! Results tables over finished runs, rebuilt from the run directories with polars:
//! `summary.{csv,parquet,md}` with one row per variant × dataset and each metric as
//! mean ± std over seeds (sample std, n − 1), the run count, and the best value per dataset marked.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use polars::prelude::*;

pub mod cli;
pub mod comparison;
pub mod coverage;
pub mod ensemble;
pub mod expect;
mod guard;
pub mod provenance;
pub mod transfer;
pub mod tuning;

use crate::record::archive::{self, SplitCounts};
use crate::record::{state, TestMetrics};
use crate::spec::RunSpec;
use crate::track::atomic;

/// One run directory's outcome.
#[derive(Debug, Clone)]
pub struct RunRow {
    pub run_id: String,
    pub variant: String,
    pub dataset: String,
    pub seed: u64,
    /// The cross-validation fold the run tests on (None: not cross-validation).
    pub fold: Option<usize>,
    /// For a cross-validation run, n_test / n_train of its split (from `split.csv`, else
    /// 1 / (folds − 1)): the Nadeau–Bengio correction of paired tests over folds.
    pub cv_test_train_ratio: Option<f64>,
    /// done | failed | running | unknown | `broken: <why>` (see `record::state`)
    pub status: String,
    pub metrics: Option<TestMetrics>,
    /// `transfer.json` of a finished transfer run.
    pub transfer: Vec<crate::transfer::TransferRow>,
    /// Why its test score is leak-prone (`RunSpec::leak`), if it is.
    pub leak: Option<String>,
    /// What produced it (its `meta.json`), for the tables' footer.
    pub provenance: Option<provenance::Provenance>,
    /// For an ensemble's row (`results::ensemble`): the run ids it averages; empty for a run.
    pub members: Vec<String>,
    /// For a searched variant's run: the setting its search chose and how (`tune::Tuning`).
    pub tuning: Option<crate::tune::Tuning>,
}

/// Every run of `experiment_dir`: its run directories (`runs/<id>/`) and its archived records
/// (`records/`, see [`crate::record::archive`]), in run-id order. A run both archived and in
/// `runs/` is read from its directory if that is finished, else from the archive (a run that
/// failed again does not erase the evidence of its finished record). A run that is not one of
/// the experiment's current runs (`experiment.json`'s `runs`) is `stale` and left out of tables.
pub fn collect(experiment_dir: &Path) -> Result<Vec<RunRow>> {
    collect_with(experiment_dir, &TableOptions::read(experiment_dir)?)
}

/// As [`collect`], with the experiment's options given.
pub fn collect_with(experiment_dir: &Path, options: &TableOptions) -> Result<Vec<RunRow>> {
    let mut rows: BTreeMap<String, RunRow> = BTreeMap::new();
    for dir in archive::run_dirs(experiment_dir) {
        let spec_path = dir.join("spec.resolved.yaml");
        let Ok(text) = std::fs::read_to_string(&spec_path) else {
            continue;
        };
        let (status, metrics) = match state::check_records(&dir) {
            state::State::Done(m) => ("done".to_string(), Some(m)),
            state::State::NotDone(status) => (status, None),
            state::State::Broken(why) => (format!("broken: {why}"), None),
        };
        let transfer = std::fs::read_to_string(dir.join("transfer.json")).ok();
        let split = std::fs::read(dir.join("split.csv"))
            .ok()
            .map(|t| archive::count_split(&t));
        let id = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let meta = std::fs::read_to_string(dir.join("meta.json")).ok();
        let read = RunFiles {
            spec: &text,
            meta: meta.as_deref(),
            transfer,
            split,
        };
        if let Some(row) = run_row(&id, read, &spec_path, status, metrics)? {
            rows.insert(id, row);
        }
    }
    let origin = experiment_dir.join(archive::DIR);
    for record in archive::read(experiment_dir)? {
        if rows
            .get(&record.run_id)
            .is_some_and(|r| r.metrics.is_some())
        {
            continue;
        }
        let metrics: TestMetrics =
            serde_json::from_str(&record.test_metrics_json).with_context(|| {
                format!("{}: run {}: test_metrics", origin.display(), record.run_id)
            })?;
        let read = RunFiles {
            spec: &record.spec_yaml,
            meta: Some(&record.meta_json),
            transfer: record.transfer_json.clone(),
            split: record.split,
        };
        let row = run_row(
            &record.run_id,
            read,
            &origin.join(&record.run_id),
            "done".into(),
            Some(metrics),
        )?;
        if let Some(row) = row {
            rows.insert(record.run_id, row);
        }
    }
    let current = &options.runs;
    let mut rows: Vec<RunRow> = rows.into_values().collect();
    if !current.is_empty() {
        for row in rows.iter_mut().filter(|r| !current.contains(&r.run_id)) {
            row.status = STALE.into();
            row.metrics = None;
            row.transfer.clear();
        }
    }
    let ensembles = ensemble::rows(experiment_dir, &rows, &options.ensembles)?;
    rows.extend(ensembles);
    Ok(rows)
}

/// The status of a run that belongs to an earlier version of the spec.
pub const STALE: &str = "stale";

/// What a row is read from, in a run directory or the archive.
struct RunFiles<'a> {
    spec: &'a str,
    meta: Option<&'a str>,
    transfer: Option<String>,
    split: Option<SplitCounts>,
}

/// One run's row; None (with a warning) when its spec does not parse: one unreadable run must
/// not hide the others.
fn run_row(
    id: &str,
    files: RunFiles,
    origin: &Path,
    status: String,
    metrics: Option<TestMetrics>,
) -> Result<Option<RunRow>> {
    let RunFiles {
        spec: spec_text,
        meta,
        transfer,
        split,
    } = files;
    let spec: RunSpec = match serde_norway::from_str(spec_text) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!(
                "warning: {} does not parse ({e}); run left out",
                origin.display()
            );
            return Ok(None);
        }
    };
    let transfer = match (&metrics, transfer) {
        (Some(_), Some(t)) => serde_json::from_str(&t)
            .with_context(|| format!("{}: transfer.json", origin.display()))?,
        _ => Vec::new(),
    };
    Ok(Some(RunRow {
        run_id: id.to_string(),
        variant: spec.variant.clone(),
        dataset: spec.dataset_label(),
        seed: spec.seed,
        fold: spec.split.fold(),
        cv_test_train_ratio: cv_ratio(&spec, split),
        status,
        metrics,
        transfer,
        leak: spec.leak(),
        provenance: meta.and_then(provenance::Provenance::from_meta),
        members: vec![],
        tuning: spec.tuning.clone(),
    }))
}

/// n_test / n_train of a cross-validation run: counted in its split, else as k-fold's
/// 1 / (k − 1).
fn cv_ratio(spec: &RunSpec, split: Option<SplitCounts>) -> Option<f64> {
    spec.split.fold()?;
    let counted = split
        .filter(|s| s.train > 0 && s.test > 0)
        .map(|s| s.test as f64 / s.train as f64);
    counted.or_else(|| spec.split.folds().map(|k| 1.0 / (k as f64 - 1.0)))
}

/// A finished run's test value of `metric` (r2, rmse, mae or mape).
pub(crate) fn metric_value(row: &RunRow, metric: &str) -> f64 {
    row.metrics
        .as_ref()
        .expect("finished runs only")
        .value(metric)
}

pub(crate) use crate::metrics::METRICS;

/// Builds the per-run DataFrame (finished runs only).
pub fn runs_frame(rows: &[RunRow]) -> Result<DataFrame> {
    let done: Vec<&RunRow> = rows.iter().filter(|r| r.metrics.is_some()).collect();
    let m = |f: fn(&TestMetrics) -> f64| {
        done.iter()
            .map(|r| f(r.metrics.as_ref().expect("done")))
            .collect::<Vec<f64>>()
    };
    let df = df!(
        "variant" => done.iter().map(|r| r.variant.clone()).collect::<Vec<_>>(),
        "dataset" => done.iter().map(|r| r.dataset.clone()).collect::<Vec<_>>(),
        "seed" => done.iter().map(|r| r.seed).collect::<Vec<_>>(),
        "fold" => done.iter().map(|r| r.fold.map(|f| f as u32)).collect::<Vec<_>>(),
        "run_id" => done.iter().map(|r| r.run_id.clone()).collect::<Vec<_>>(),
        "r2" => m(|t| t.r2),
        "rmse" => m(|t| t.rmse),
        "mae" => m(|t| t.mae),
        "mape" => m(|t| t.mape),
        "valid_r2" => m(|t| t.valid.r2),
    )?;
    Ok(df)
}

/// Mean, std and count per variant × dataset, variants in `order` (the spec's order; others
/// after it, alphabetically).
pub fn summary_frame(rows: &[RunRow]) -> Result<DataFrame> {
    summary_frame_ordered(rows, &[])
}

pub fn summary_frame_ordered(rows: &[RunRow], variant_order: &[String]) -> Result<DataFrame> {
    let runs = runs_frame(rows)?;
    let mut aggs = vec![col("seed").count().alias("runs")];
    for (name, _) in METRICS {
        aggs.push(col(name).mean().alias(format!("{name}_mean")));
        aggs.push(col(name).std(1).alias(format!("{name}_std")));
    }
    // For choosing between settings without looking at the test folds.
    aggs.push(col("valid_r2").mean().alias("valid_r2_mean"));
    aggs.push(col("valid_r2").std(1).alias("valid_r2_std"));
    let order: Vec<String> = {
        let mut seen: Vec<String> = variant_order.to_vec();
        let mut rest: Vec<String> = rows
            .iter()
            .map(|r| r.variant.clone())
            .filter(|v| !seen.contains(v))
            .collect();
        rest.sort();
        rest.dedup();
        seen.extend(rest);
        seen
    };
    let mut summary = runs
        .lazy()
        .group_by([col("dataset"), col("variant")])
        .agg(aggs)
        .collect()?;
    // Stable presentation: dataset, then the order variants appear in the spec.
    let rank: Vec<u32> = summary
        .column("variant")?
        .str()?
        .iter()
        .map(|v| {
            order
                .iter()
                .position(|o| Some(o.as_str()) == v)
                .unwrap_or(usize::MAX) as u32
        })
        .collect();
    summary.with_column(Column::new("order".into(), rank))?;
    let summary = summary
        .lazy()
        .sort(["dataset", "order"], SortMultipleOptions::default())
        .select([all().exclude_cols(["order"]).as_expr()])
        .collect()?;
    Ok(summary)
}

/// What the tables of an experiment directory are built with, saved by `run` as
/// `experiment.json` so that `opencarbon results DIR` rebuilds the same tables.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TableOptions {
    /// Variants in the spec's order.
    pub variants: Vec<String>,
    /// The variant the others are compared with (default: the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The spec's `expect:` lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect: Vec<String>,
    /// The ids of the spec's runs: any other run found is `stale` (an earlier version of the
    /// spec) and left out of the tables. Empty in older files: every run counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<String>,
    /// Ensemble variants and the variants each averages (`results::ensemble`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ensembles: BTreeMap<String, Vec<String>>,
}

pub const TABLE_OPTIONS: &str = "experiment.json";

impl TableOptions {
    /// `experiment.json` of `dir`, or the defaults when there is none.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(TABLE_OPTIONS);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
            }
            Err(_) => Ok(Self::default()),
        }
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        atomic::write(&dir.join(TABLE_OPTIONS), text.as_bytes())
    }
}

/// Rebuilds `summary.{csv,parquet,md}` (and `comparison.*`, `transfer.*`) in `experiment_dir`
/// with its saved `experiment.json`, and returns the Markdown. Without `experiment.json` it
/// refuses: the variant order and the reference would be guessed from directory names.
pub fn write_summary(experiment_dir: &Path, force: bool) -> Result<String> {
    let path = experiment_dir.join(TABLE_OPTIONS);
    if !path.is_file() {
        bail!(
            "{} is missing: it says which variant is the reference and which runs belong to the experiment; re-run its spec (`opencarbon run SPEC --out {}`) to write it",
            path.display(),
            experiment_dir.display()
        );
    }
    write_summary_with(experiment_dir, &TableOptions::read(experiment_dir)?, force)
}

/// As [`write_summary`] with `options` (saved as `experiment.json` once the tables may be
/// written). Refuses, changing nothing, to replace tables with ones built from fewer runs than
/// they hold, unless `force`.
pub fn write_summary_with(
    experiment_dir: &Path,
    options: &TableOptions,
    force: bool,
) -> Result<String> {
    let rows = collect_with(experiment_dir, options)?;
    guard::check(experiment_dir, &rows, force)?;
    if TableOptions::read(experiment_dir)? != *options
        || !experiment_dir.join(TABLE_OPTIONS).is_file()
    {
        options.write(experiment_dir)?;
    }
    atomic::remove_dead_scratch(experiment_dir);
    let variant_order = &options.variants;
    let mut summary = summary_frame_ordered(&rows, variant_order)?;
    write_frame(experiment_dir, "summary", &mut summary)?;
    let failed: Vec<&RunRow> = rows
        .iter()
        .filter(|r| r.status == "failed" || r.status.starts_with("broken"))
        .collect();
    // Every variant seen, in the spec's order first.
    let mut order = variant_order.clone();
    for r in &rows {
        if !order.contains(&r.variant) {
            order.push(r.variant.clone());
        }
    }
    let reference = options.reference.clone().or_else(|| order.first().cloned());
    let comparison = match &reference {
        Some(reference) if order.len() > 1 => Some(comparison::write_tables(
            experiment_dir,
            &rows,
            reference,
            &order,
        )?),
        _ => None,
    };
    let mut md = markdown(
        &summary,
        &failed,
        comparison.as_ref().map(|(rows, _)| rows.as_slice()),
    )?;
    if let Some((_, text)) = &comparison {
        md.push('\n');
        md.push_str(text);
    }
    if rows.iter().any(|r| !r.transfer.is_empty()) {
        md.push('\n');
        md.push_str(&transfer::write_tables(
            experiment_dir,
            &rows,
            variant_order,
        )?);
    }
    if let Some(text) = tuning::write_tables(experiment_dir, &rows, &order)? {
        md.push('\n');
        md.push_str(&text);
    }
    if coverage::write_tables(experiment_dir, &rows, &order)?.is_some() {
        writeln!(
            md,
            "\nPrediction intervals ({:.0} % split conformal, calibrated across the folds): coverage and width per variant in [coverage.md](coverage.md).",
            coverage::LEVEL * 100.0
        )?;
    }
    md.push_str(&provenance::footer(&rows));
    let stale: Vec<&RunRow> = rows.iter().filter(|r| r.status == STALE).collect();
    if !stale.is_empty() {
        writeln!(
            md,
            "\nStale runs, left out of every table (not runs of the spec as it now is: an earlier variant or setting):"
        )?;
        for r in stale {
            writeln!(
                md,
                "- {} / {} / seed {}: `{}`",
                r.dataset, r.variant, r.seed, r.run_id
            )?;
        }
    }
    atomic::write(&experiment_dir.join("summary.md"), md.as_bytes())?;
    Ok(md)
}

/// `<stem>.csv` and `<stem>.parquet` in `dir`, each written atomically.
pub(crate) fn write_frame(dir: &Path, stem: &str, frame: &mut DataFrame) -> Result<()> {
    let mut csv = Vec::new();
    CsvWriter::new(&mut csv).finish(frame)?;
    atomic::write(&dir.join(format!("{stem}.csv")), &csv)?;
    let mut parquet = Vec::new();
    ParquetWriter::new(&mut parquet).finish(frame)?;
    atomic::write(&dir.join(format!("{stem}.parquet")), &parquet)
}

/// A string column as owned values ("" for nulls).
pub(crate) fn text_column(frame: &DataFrame, name: &str) -> Result<Vec<String>> {
    Ok(frame
        .column(name)?
        .str()?
        .iter()
        .map(|v| v.unwrap_or("").to_string())
        .collect())
}

/// A numeric column as f64 (NaN for nulls).
pub(crate) fn float_column(frame: &DataFrame, name: &str) -> Result<Vec<f64>> {
    Ok(frame
        .column(name)?
        .cast(&DataType::Float64)?
        .f64()?
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect())
}

/// A metric's name in tables.
pub(crate) fn display_name(metric: &str) -> &'static str {
    match metric {
        "r2" => "R²",
        "rmse" => "RMSE",
        "mae" => "MAE",
        _ => "MAPE",
    }
}

/// The summary table; with a comparison, each variant's cell says whether it differs from the
/// reference (▲ better, ▼ worse, n.s., or — for too few pairs).
fn markdown(
    summary: &DataFrame,
    failed: &[&RunRow],
    comparison: Option<&[comparison::ComparisonRow]>,
) -> Result<String> {
    let text = |name: &str| text_column(summary, name);
    let floats = |name: &str| float_column(summary, name);
    let (datasets, variants) = (text("dataset")?, text("variant")?);
    let runs = floats("runs")?;
    let mut out = String::from("| dataset | variant | runs | R² ↑ | RMSE ↓ | MAE ↓ | MAPE ↓ |\n|---|---|---|---|---|---|---|\n");
    let mut cells: Vec<Vec<String>> = vec![Vec::new(); datasets.len()];
    for (name, higher_is_better) in METRICS {
        let (mean, std) = (
            floats(&format!("{name}_mean"))?,
            floats(&format!("{name}_std"))?,
        );
        for i in 0..datasets.len() {
            // Best per dataset (ties all marked).
            let same: Vec<usize> = (0..datasets.len())
                .filter(|&j| datasets[j] == datasets[i])
                .collect();
            let best = same
                .iter()
                .map(|&j| mean[j])
                .filter(|v| v.is_finite())
                .fold(
                    if higher_is_better { f64::MIN } else { f64::MAX },
                    |a, b| if higher_is_better { a.max(b) } else { a.min(b) },
                );
            let value = if std[i].is_finite() {
                format!("{:.4} ± {:.4}", mean[i], std[i])
            } else {
                format!("{:.4}", mean[i])
            };
            let value = if mean[i] == best && same.len() > 1 {
                format!("**{value}**")
            } else {
                value
            };
            let mark = comparison
                .and_then(|c| {
                    c.iter().find(|r| {
                        r.dataset == datasets[i] && r.variant == variants[i] && r.metric == name
                    })
                })
                .map(|r| match r.verdict.as_str() {
                    "better" => format!(" ▲ p={:.3}", r.p_t_holm),
                    "worse" => format!(" ▼ p={:.3}", r.p_t_holm),
                    "n.s." => format!(" n.s. p={:.2}", r.p_t_holm),
                    "identical" => " =".into(),
                    _ => " —".into(),
                })
                .unwrap_or_default();
            cells[i].push(format!("{value}{mark}"));
        }
    }
    for i in 0..datasets.len() {
        writeln!(
            out,
            "| {} | {} | {} | {} |",
            datasets[i],
            variants[i],
            runs[i],
            cells[i].join(" | ")
        )?;
    }
    if let Some(first) = comparison.and_then(|c| c.first()) {
        writeln!(
            out,
            "\nAgainst `{}`, paired over seeds and folds (comparison.md): ▲ better, ▼ worse at α = {} (Holm-adjusted paired t-test p), n.s. not significant, = identical in every pair, — too few pairs.",
            first.reference,
            comparison::ALPHA
        )?;
    }
    if !failed.is_empty() {
        writeln!(out, "\nFailed runs (see their meta.json):")?;
        for r in failed {
            writeln!(
                out,
                "- {} / {} / seed {}: `{}` ({})",
                r.dataset, r.variant, r.seed, r.run_id, r.status
            )?;
        }
    }
    let (valid, valid_std) = (floats("valid_r2_mean")?, floats("valid_r2_std")?);
    writeln!(
        out,
        "\nValidation R² (mean ± std over runs; a network's at its selected epoch, so optimistic): for choosing between settings of one model without looking at the test folds.\n"
    )?;
    writeln!(out, "| dataset | variant | validation R² |\n|---|---|---|")?;
    for i in 0..datasets.len() {
        if valid[i].is_nan() {
            // An ensemble: its members' validation predictions are not kept.
            writeln!(out, "| {} | {} | — |", datasets[i], variants[i])?;
            continue;
        }
        writeln!(
            out,
            "| {} | {} | {:.4} ± {:.4} |",
            datasets[i], variants[i], valid[i], valid_std[i]
        )?;
    }
    Ok(out)
}
