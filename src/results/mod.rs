//! Results tables over finished runs, rebuilt from the run directories with polars:
//! `summary.{csv,parquet,md}` with one row per variant × dataset and each metric as
//! mean ± std over seeds (sample std, n − 1), the run count, and the best value per dataset marked.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use polars::prelude::*;

pub mod cli;
pub mod comparison;
pub mod expect;
pub mod transfer;

use crate::runner::{resume, TestMetrics};
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
    /// done | failed | running | unknown | `broken: <why>` (see `runner::resume`)
    pub status: String,
    pub metrics: Option<TestMetrics>,
    /// `transfer.json` of a finished transfer run.
    pub transfer: Vec<crate::transfer::TransferRow>,
}

/// Reads every `runs/<id>/` under `experiment_dir`.
pub fn collect(experiment_dir: &Path) -> Result<Vec<RunRow>> {
    let runs = experiment_dir.join("runs");
    let mut rows = Vec::new();
    let Ok(entries) = std::fs::read_dir(&runs) else {
        return Ok(rows);
    };
    let mut dirs: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let spec_path = dir.join("spec.resolved.yaml");
        let Ok(text) = std::fs::read_to_string(&spec_path) else {
            continue;
        };
        let spec: RunSpec = match serde_norway::from_str(&text) {
            Ok(spec) => spec,
            Err(e) => {
                // One unreadable run must not hide the others; it is reported, not summarised.
                eprintln!(
                    "warning: {} does not parse ({e}); run left out",
                    spec_path.display()
                );
                continue;
            }
        };
        let (status, metrics) = match resume::check(&dir, None) {
            resume::State::Done(m) => ("done".to_string(), Some(m)),
            resume::State::NotDone(status) => (status, None),
            resume::State::Broken(why) => (format!("broken: {why}"), None),
        };
        let transfer = match (&metrics, std::fs::read_to_string(dir.join("transfer.json"))) {
            (Some(_), Ok(t)) => serde_json::from_str(&t)
                .with_context(|| format!("reading {}/transfer.json", dir.display()))?,
            _ => Vec::new(),
        };
        rows.push(RunRow {
            run_id: dir
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            variant: spec.variant.clone(),
            dataset: spec.dataset_label(),
            seed: spec.seed,
            fold: spec.split.fold(),
            cv_test_train_ratio: cv_ratio(&dir, &spec),
            status,
            metrics,
            transfer,
        });
    }
    Ok(rows)
}

/// n_test / n_train of a cross-validation run: counted in its `split.csv`, else as k-fold's
/// 1 / (k − 1).
fn cv_ratio(dir: &Path, spec: &RunSpec) -> Option<f64> {
    spec.split.fold()?;
    let counted = std::fs::read_to_string(dir.join("split.csv"))
        .ok()
        .and_then(|text| {
            let (mut train, mut test) = (0usize, 0usize);
            for line in text.lines().skip(1) {
                match line.rsplit(',').next() {
                    Some("train") => train += 1,
                    Some("test") => test += 1,
                    _ => {}
                }
            }
            (train > 0 && test > 0).then(|| test as f64 / train as f64)
        });
    counted.or_else(|| spec.split.folds().map(|k| 1.0 / (k as f64 - 1.0)))
}

/// A finished run's test value of `metric` (r2, rmse, mae or mape).
pub(crate) fn metric_value(row: &RunRow, metric: &str) -> f64 {
    let m = row.metrics.as_ref().expect("finished runs only");
    match metric {
        "r2" => m.r2,
        "rmse" => m.rmse,
        "mae" => m.mae,
        _ => m.mape,
    }
}

pub(crate) const METRICS: [(&str, bool); 4] = [
    ("r2", true),
    ("rmse", false),
    ("mae", false),
    ("mape", false),
];

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
/// with its saved `experiment.json`, and returns the Markdown.
pub fn write_summary(experiment_dir: &Path) -> Result<String> {
    write_summary_with(experiment_dir, &TableOptions::read(experiment_dir)?)
}

/// As [`write_summary`], listing variants in the spec's order.
pub fn write_summary_with(experiment_dir: &Path, options: &TableOptions) -> Result<String> {
    let rows = collect(experiment_dir)?;
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
        writeln!(
            out,
            "| {} | {} | {:.4} ± {:.4} |",
            datasets[i], variants[i], valid[i], valid_std[i]
        )?;
    }
    Ok(out)
}
