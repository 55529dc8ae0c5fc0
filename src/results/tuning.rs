//! The searched variants' table (issue 31): per outer fold, the setting the nested search chose,
//! its score on the inner folds (what a search reports when it is not nested) and its score on
//! the outer test fold, and their difference, the optimism. Per dataset and variant: the mean
//! optimism and how stable the choices are. Built from the refit runs' recorded specs, so it
//! rebuilds from `records/` like every table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use polars::prelude::*;

use super::RunRow;
use crate::track::atomic;
use crate::tune::Tuning;

/// One refit: the chosen setting and its two scores.
pub struct TunedRow {
    pub dataset: String,
    pub variant: String,
    pub seed: u64,
    pub fold: Option<usize>,
    /// `key=value`, in key order.
    pub setting: String,
    pub best_trial: usize,
    pub trials: usize,
    pub metric: String,
    pub inner_best: f64,
    pub outer: f64,
    /// How much better the inner score looked than the outer one (positive: optimistic),
    /// whichever way the metric points.
    pub optimism: f64,
}

/// The finished refits, in dataset, variant order, seed, fold order.
pub fn rows(rows: &[RunRow], order: &[String]) -> Vec<TunedRow> {
    let mut out: Vec<TunedRow> = rows
        .iter()
        .filter(|r| r.metrics.is_some())
        .filter_map(|r| match &r.tuning {
            Some(Tuning::Refit {
                params,
                best_trial,
                trials,
                inner_best,
                metric,
            }) => {
                let outer = super::metric_value(r, metric);
                let higher = super::METRICS
                    .iter()
                    .find(|(m, _)| m == metric)
                    .is_none_or(|(_, h)| *h);
                let optimism = if higher {
                    inner_best - outer
                } else {
                    outer - inner_best
                };
                let setting: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                Some(TunedRow {
                    dataset: r.dataset.clone(),
                    variant: r.variant.clone(),
                    seed: r.seed,
                    fold: r.fold,
                    setting: setting.join(" "),
                    best_trial: *best_trial,
                    trials: *trials,
                    metric: metric.clone(),
                    inner_best: *inner_best,
                    outer,
                    optimism,
                })
            }
            _ => None,
        })
        .collect();
    let rank = |v: &str| order.iter().position(|o| o == v).unwrap_or(usize::MAX);
    out.sort_by(|a, b| {
        (a.dataset.as_str(), rank(&a.variant), a.seed, a.fold).cmp(&(
            b.dataset.as_str(),
            rank(&b.variant),
            b.seed,
            b.fold,
        ))
    });
    out
}

/// Writes `tuning.{csv,parquet,md}` when some run is a search's refit; returns the Markdown.
pub fn write_tables(dir: &Path, all: &[RunRow], order: &[String]) -> Result<Option<String>> {
    let tuned = rows(all, order);
    if tuned.is_empty() {
        return Ok(None);
    }
    super::write_frame(dir, "tuning", &mut frame(&tuned)?)?;
    let md = markdown(&tuned);
    let file = format!("{md}{}", super::provenance::footer(all));
    atomic::write(&dir.join("tuning.md"), file.as_bytes())?;
    Ok(Some(md))
}

fn frame(rows: &[TunedRow]) -> Result<DataFrame> {
    let s = |f: fn(&TunedRow) -> String| rows.iter().map(f).collect::<Vec<_>>();
    let f = |f: fn(&TunedRow) -> f64| rows.iter().map(f).collect::<Vec<_>>();
    let u = |f: fn(&TunedRow) -> u64| rows.iter().map(f).collect::<Vec<_>>();
    Ok(DataFrame::new_infer_height(vec![
        Column::new("dataset".into(), s(|r| r.dataset.clone())),
        Column::new("variant".into(), s(|r| r.variant.clone())),
        Column::new("seed".into(), u(|r| r.seed)),
        Column::new(
            "fold".into(),
            rows.iter()
                .map(|r| r.fold.map(|f| f as u64))
                .collect::<Vec<_>>(),
        ),
        Column::new("setting".into(), s(|r| r.setting.clone())),
        Column::new("best_trial".into(), u(|r| r.best_trial as u64)),
        Column::new("trials".into(), u(|r| r.trials as u64)),
        Column::new("metric".into(), s(|r| r.metric.clone())),
        Column::new("inner_best".into(), f(|r| r.inner_best)),
        Column::new("outer".into(), f(|r| r.outer)),
        Column::new("optimism".into(), f(|r| r.optimism)),
    ])?)
}

fn markdown(rows: &[TunedRow]) -> String {
    let mut md = String::from(
        "## Nested search: chosen settings and optimism\n\n\
         Each outer fold's search ran on inner spatial folds of that fold's training tiles; its \
         best setting was refitted on them and tested on the outer fold. *inner* is the best \
         trial's score on the inner folds (what an un-nested search reports), *outer* the refit's \
         test score, *optimism* how much better the inner score looked (positive: optimistic).\n\n\
         | dataset | variant | seed | fold | chosen setting | best trial / trials | inner | outer | optimism |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} / {} | {} {:.4} | {:.4} | {:+.4} |",
            r.dataset,
            r.variant,
            r.seed,
            r.fold.map_or("—".into(), |f| f.to_string()),
            r.setting,
            r.best_trial,
            r.trials,
            r.metric,
            r.inner_best,
            r.outer,
            r.optimism
        );
    }
    md.push_str(
        "\n| dataset | variant | outer folds | mean optimism ± std | settings chosen (times) |\n|---|---|---|---|---|\n",
    );
    let mut groups: BTreeMap<(String, String), Vec<&TunedRow>> = BTreeMap::new();
    for r in rows {
        groups
            .entry((r.dataset.clone(), r.variant.clone()))
            .or_default()
            .push(r);
    }
    // Groups in the rows' order (dataset, then the spec's variant order).
    let mut seen = Vec::new();
    for r in rows {
        let key = (r.dataset.clone(), r.variant.clone());
        if seen.contains(&key) {
            continue;
        }
        seen.push(key.clone());
        let group = &groups[&key];
        let values: Vec<f64> = group.iter().map(|r| r.optimism).collect();
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let sd = if values.len() > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:+.4} ± {:.4} | {} |",
            key.0,
            key.1,
            group.len(),
            mean,
            sd,
            stability(group)
        );
    }
    md
}

/// Per parameter, how the choices spread over the outer folds: each value and how often
/// (`model.neighbourhood: 1 ×3, 2 ×2`), or, when no two folds chose the same number (a
/// continuous range), the median and range (`train.lr: median 2.1e-3, 8.0e-4–4.5e-3`).
fn stability(group: &[&TunedRow]) -> String {
    let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in group {
        for part in r.setting.split(' ').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            per_key
                .entry(k.to_string())
                .or_default()
                .push(v.to_string());
        }
    }
    let parts: Vec<String> = per_key
        .into_iter()
        .map(|(k, values)| {
            // All different (a continuous or wide integer range): median and range; else counts.
            let numbers: Option<Vec<f64>> = values.iter().map(|v| v.parse::<f64>().ok()).collect();
            let mut distinct = values.clone();
            distinct.sort();
            distinct.dedup();
            if let Some(mut xs) = numbers.filter(|xs| xs.len() > 2 && distinct.len() == xs.len()) {
                xs.sort_by(f64::total_cmp);
                let integers = values.iter().all(|v| !v.contains('.') && !v.contains('e'));
                let show = |x: f64| {
                    if integers {
                        format!("{x}")
                    } else {
                        format!("{x:.2e}")
                    }
                };
                return format!(
                    "{k}: median {}, {}–{}",
                    show(xs[xs.len() / 2]),
                    show(xs[0]),
                    show(xs[xs.len() - 1])
                );
            }
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for v in values {
                *counts.entry(v).or_default() += 1;
            }
            let mut counts: Vec<(String, usize)> = counts.into_iter().collect();
            counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let shown: Vec<String> = counts.iter().map(|(v, n)| format!("{v} ×{n}")).collect();
            format!("{k}: {}", shown.join(", "))
        })
        .collect();
    parts.join("; ")
}
