//! `comparison.{csv,parquet,md}`: every variant against a reference variant, per dataset and
//! metric, over the pairs of runs that share dataset, seed and cross-validation fold. Each row has
//! the mean difference with a seeded bootstrap 95 % interval, the paired t-test (Nadeau–Bengio
//! corrected when the pairs are CV folds), the Wilcoxon signed-rank test, both Holm-adjusted across
//! the variants, the effect size d_z and the pairs a difference of that size would need for 80 %
//! power. Across datasets: mean ranks, the Friedman test and the Nemenyi critical difference.
//! A difference that is not significant is written as such.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::{display_name, RunRow, METRICS};
use crate::stats::{paired, ranks};
use crate::track::atomic;

pub const ALPHA: f64 = 0.05;
const RESAMPLES: usize = 10_000;

/// One variant against the reference on one dataset and metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonRow {
    pub dataset: String,
    pub variant: String,
    pub reference: String,
    pub metric: String,
    pub n_pairs: usize,
    /// Mean of (variant − reference) over the pairs.
    pub mean_diff: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// `paired t` over independent seeds, or `corrected resampled t` (Nadeau–Bengio) over folds.
    pub test: String,
    pub t: f64,
    pub df: f64,
    pub p_t: f64,
    pub p_t_holm: f64,
    pub wilcoxon: f64,
    pub p_wilcoxon: f64,
    pub p_wilcoxon_holm: f64,
    pub wilcoxon_method: String,
    /// Cohen's d_z of the differences.
    pub effect_dz: f64,
    /// Pairs needed for 80 % power at α = 0.05 for a difference of this size, by the same test
    /// (None: no effect, or out of reach: corrected tests over folds level off).
    pub pairs_for_power: Option<usize>,
    /// `better`, `worse` (Holm-adjusted t-test p < α, in the metric's direction), `n.s.`,
    /// `identical` (every pair equal), or `too few pairs`.
    pub verdict: String,
    /// Why the comparison is leak-prone (a window of the variant or the reference reaches
    /// across its split: `RunSpec::leak`); None when neither's is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leak: Option<String>,
}

use super::metric_value as value;

/// The pairs of finished runs of `a` and `b` on `dataset` that share seed and fold, in (seed,
/// fold) order: `a − b` on `metric`, and, when every pair is a cross-validation fold, the mean
/// n_test / n_train of `b`'s runs (for the Nadeau–Bengio correction).
pub(crate) fn differences(
    rows: &[RunRow],
    dataset: &str,
    a: &str,
    b: &str,
    metric: &str,
) -> (Vec<f64>, Option<f64>) {
    type Slot = (Option<f64>, Option<f64>, Option<f64>);
    let mut pairs: BTreeMap<(u64, Option<usize>), Slot> = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r.metrics.is_some() && r.dataset == dataset)
    {
        let slot = pairs.entry((r.seed, r.fold)).or_default();
        if r.variant == a {
            slot.0 = Some(value(r, metric));
        } else if r.variant == b {
            slot.1 = Some(value(r, metric));
            slot.2 = r.cv_test_train_ratio;
        }
    }
    let matched: Vec<(f64, Option<f64>)> = pairs
        .values()
        .filter_map(|&(x, y, ratio)| Some((x? - y?, ratio)))
        .collect();
    let ratio = (!matched.is_empty() && matched.iter().all(|m| m.1.is_some()))
        .then(|| matched.iter().filter_map(|m| m.1).sum::<f64>() / matched.len() as f64);
    (matched.into_iter().map(|m| m.0).collect(), ratio)
}

/// Every variant of `rows` against `reference` (variants in `order`).
pub fn compare(rows: &[RunRow], reference: &str, order: &[String]) -> Vec<ComparisonRow> {
    let mut datasets: Vec<String> = rows
        .iter()
        .filter(|r| r.metrics.is_some())
        .map(|r| r.dataset.clone())
        .collect();
    datasets.sort();
    datasets.dedup();
    let mut out = Vec::new();
    for dataset in &datasets {
        for (metric, higher_is_better) in METRICS {
            let mut block: Vec<ComparisonRow> = order
                .iter()
                .filter(|v| v.as_str() != reference)
                .filter_map(|variant| {
                    let (d, ratio) = differences(rows, dataset, variant, reference, metric);
                    (!d.is_empty()).then(|| row(dataset, variant, reference, metric, &d, ratio))
                })
                .collect();
            let p_t: Vec<f64> = block.iter().map(|r| r.p_t).collect();
            let p_w: Vec<f64> = block.iter().map(|r| r.p_wilcoxon).collect();
            for ((r, t), w) in block
                .iter_mut()
                .zip(paired::holm(&p_t))
                .zip(paired::holm(&p_w))
            {
                r.p_t_holm = t;
                r.p_wilcoxon_holm = w;
                r.verdict = verdict(r, higher_is_better);
                r.leak = leak(rows, dataset, &r.variant, reference);
            }
            out.extend(block);
        }
    }
    out
}

/// The comparison of one variant with the reference from their differences `d` (Holm columns
/// and the verdict are filled in by [`compare`]).
fn row(
    dataset: &str,
    variant: &str,
    reference: &str,
    metric: &str,
    d: &[f64],
    ratio: Option<f64>,
) -> ComparisonRow {
    let t = paired::paired_t(d, ratio);
    let w = paired::wilcoxon(d);
    // A fixed seed per cell: the same runs give the same interval.
    let seed = format!("{dataset}/{variant}/{reference}/{metric}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
    let (ci_low, ci_high) = paired::bootstrap_ci(d, 0.95, RESAMPLES, seed);
    let effect_dz = paired::effect_size(d);
    ComparisonRow {
        dataset: dataset.into(),
        variant: variant.into(),
        reference: reference.into(),
        metric: metric.into(),
        n_pairs: d.len(),
        mean_diff: paired::mean(d),
        ci_low,
        ci_high,
        test: if ratio.is_some() {
            "corrected resampled t".into()
        } else {
            "paired t".into()
        },
        t: t.t,
        df: t.df,
        p_t: t.p,
        p_t_holm: f64::NAN,
        wilcoxon: w.map_or(f64::NAN, |w| w.statistic),
        p_wilcoxon: w.map_or(f64::NAN, |w| w.p),
        p_wilcoxon_holm: f64::NAN,
        wilcoxon_method: w.map_or("none (all differences 0)", |w| w.method).into(),
        effect_dz,
        pairs_for_power: paired::pairs_for_power(effect_dz, ALPHA, 0.8, ratio),
        verdict: String::new(),
        leak: None,
    }
}

/// Why a comparison of `variant` with `reference` on `dataset` is leak-prone, if it is.
fn leak(rows: &[RunRow], dataset: &str, variant: &str, reference: &str) -> Option<String> {
    let mut reasons: Vec<&str> = rows
        .iter()
        .filter(|r| r.dataset == dataset && (r.variant == variant || r.variant == reference))
        .filter_map(|r| r.leak.as_deref())
        .collect();
    reasons.sort();
    reasons.dedup();
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

fn verdict(r: &ComparisonRow, higher_is_better: bool) -> String {
    if r.n_pairs >= 1 && r.mean_diff == 0.0 && r.ci_low == 0.0 && r.ci_high == 0.0 {
        return "identical".into();
    }
    if r.n_pairs < 2 || r.p_t_holm.is_nan() {
        return "too few pairs".into();
    }
    if r.p_t_holm >= ALPHA {
        return "n.s.".into();
    }
    if (r.mean_diff > 0.0) == higher_is_better {
        "better".into()
    } else {
        "worse".into()
    }
}

/// Mean ranks, the Friedman test and the Nemenyi critical difference of one metric over the
/// datasets every listed variant ran on.
#[derive(Debug, Clone, PartialEq)]
pub struct RankTest {
    pub metric: String,
    pub variants: Vec<String>,
    pub datasets: Vec<String>,
    pub mean_ranks: Vec<f64>,
    /// (χ², p); None for fewer than 3 variants or 2 datasets.
    pub friedman: Option<(f64, f64)>,
    pub critical_difference: f64,
}

pub fn rank_tests(rows: &[RunRow], order: &[String]) -> Vec<RankTest> {
    let mut means: BTreeMap<(String, String), Vec<&RunRow>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.metrics.is_some()) {
        means
            .entry((r.dataset.clone(), r.variant.clone()))
            .or_default()
            .push(r);
    }
    let mut datasets: Vec<String> = means.keys().map(|k| k.0.clone()).collect();
    datasets.dedup();
    let variants: Vec<String> = order
        .iter()
        .filter(|v| {
            datasets
                .iter()
                .all(|d| means.contains_key(&(d.clone(), (*v).clone())))
        })
        .cloned()
        .collect();
    if datasets.len() < 2 || variants.len() < 2 {
        return vec![];
    }
    METRICS
        .iter()
        .map(|&(metric, higher_is_better)| {
            let table: Vec<Vec<f64>> = datasets
                .iter()
                .map(|d| {
                    variants
                        .iter()
                        .map(|v| {
                            let runs = &means[&(d.clone(), v.clone())];
                            runs.iter().map(|r| value(r, metric)).sum::<f64>() / runs.len() as f64
                        })
                        .collect()
                })
                .collect();
            RankTest {
                metric: metric.into(),
                variants: variants.clone(),
                datasets: datasets.clone(),
                mean_ranks: ranks::mean_ranks(&table, higher_is_better),
                friedman: ranks::friedman(&table),
                critical_difference: ranks::nemenyi_cd(variants.len(), datasets.len(), ALPHA),
            }
        })
        .collect()
}

fn frame(rows: &[ComparisonRow]) -> Result<DataFrame> {
    let s =
        |f: fn(&ComparisonRow) -> &str| rows.iter().map(|r| f(r).to_string()).collect::<Vec<_>>();
    let x = |f: fn(&ComparisonRow) -> f64| rows.iter().map(f).collect::<Vec<_>>();
    Ok(df!(
        "dataset" => s(|r| &r.dataset),
        "variant" => s(|r| &r.variant),
        "reference" => s(|r| &r.reference),
        "metric" => s(|r| &r.metric),
        "n_pairs" => rows.iter().map(|r| r.n_pairs as u32).collect::<Vec<_>>(),
        "mean_diff" => x(|r| r.mean_diff),
        "ci_low" => x(|r| r.ci_low),
        "ci_high" => x(|r| r.ci_high),
        "test" => s(|r| &r.test),
        "t" => x(|r| r.t),
        "df" => x(|r| r.df),
        "p_t" => x(|r| r.p_t),
        "p_t_holm" => x(|r| r.p_t_holm),
        "wilcoxon" => x(|r| r.wilcoxon),
        "p_wilcoxon" => x(|r| r.p_wilcoxon),
        "p_wilcoxon_holm" => x(|r| r.p_wilcoxon_holm),
        "wilcoxon_method" => s(|r| &r.wilcoxon_method),
        "effect_dz" => x(|r| r.effect_dz),
        "pairs_for_80_power" => rows.iter().map(|r| r.pairs_for_power.map(|n| n as u32)).collect::<Vec<_>>(),
        "verdict" => s(|r| &r.verdict),
        "leak_prone" => rows.iter().map(|r| r.leak.clone()).collect::<Vec<_>>(),
    )?)
}

fn p(v: f64) -> String {
    if v.is_nan() {
        "—".into()
    } else if v < 1e-4 {
        format!("{v:.1e}")
    } else {
        format!("{v:.4}")
    }
}

fn markdown(rows: &[ComparisonRow], rank_tests: &[RankTest]) -> Result<String> {
    let mut out = String::from("## Comparison with the reference variant\n\n");
    if let Some(first) = rows.first() {
        writeln!(
            out,
            "Each variant minus `{}` over pairs of runs sharing dataset, seed and fold. 95 % CI: \
             seeded percentile bootstrap of the mean difference. p: two-sided paired t-test \
             (Nadeau–Bengio corrected over cross-validation folds) and Wilcoxon signed-rank, each \
             Holm-adjusted across the variants of a dataset and metric; the verdict uses the \
             adjusted t-test at α = {ALPHA}. d_z: mean difference over its standard deviation; \
             pairs for 80 %: how many pairs the same test needs to detect a difference of this \
             size 80 % of the time (— : never, as over folds of one city the corrected test's \
             power levels off).\n",
            first.reference
        )?;
    } else {
        out.push_str("No variant shares a dataset, seed and fold with the reference.\n");
    }
    let mut last = String::new();
    for r in rows {
        if r.dataset != last {
            writeln!(
                out,
                "\n### {}\n\n| variant | metric | pairs | Δ mean | 95 % CI | test | p (Holm) | Wilcoxon p (Holm) | d_z | pairs for 80 % | verdict |\n|---|---|---|---|---|---|---|---|---|---|---|",
                r.dataset
            )?;
            last = r.dataset.clone();
        }
        let mut verdict = match r.verdict.as_str() {
            "better" | "worse" => format!("**{}**", r.verdict),
            v => v.to_string(),
        };
        if r.leak.is_some() {
            verdict.push_str(" ⚠ leak-prone");
        }
        writeln!(
            out,
            "| {} | {} | {} | {:+.4} | [{:+.4}, {:+.4}] | {} | {} ({}) | {} ({}) | {:.2} | {} | {} |",
            r.variant,
            display_name(&r.metric),
            r.n_pairs,
            r.mean_diff,
            r.ci_low,
            r.ci_high,
            r.test,
            p(r.p_t),
            p(r.p_t_holm),
            p(r.p_wilcoxon),
            p(r.p_wilcoxon_holm),
            r.effect_dz,
            r.pairs_for_power
                .map_or("—".into(), |n| n.to_string()),
            verdict
        )?;
    }
    let mut leaks: Vec<&str> = rows.iter().filter_map(|r| r.leak.as_deref()).collect();
    leaks.sort();
    leaks.dedup();
    if !leaks.is_empty() {
        writeln!(
            out,
            "\n⚠ **Leak-prone comparisons**: a window reaches across the split, so a test tile's score can come from its training neighbours' targets rather than the model (docs/conclusions.md). Compare under `spatial_cv` with a buffer at least the window's radius.\n"
        )?;
        for reason in leaks {
            writeln!(out, "- {reason}")?;
        }
    }
    if !rank_tests.is_empty() {
        writeln!(
            out,
            "\n## Ranks over datasets\n\nMean rank of each variant over {} datasets (1 = best; the mean over runs per dataset). Friedman test over the ranks; two variants whose mean ranks differ by more than the Nemenyi critical difference (CD, α = {ALPHA}) differ.\n",
            rank_tests[0].datasets.len()
        )?;
        writeln!(
            out,
            "| metric | {} | Friedman χ² | p | CD |\n|---|{}---|---|---|",
            rank_tests[0].variants.join(" | "),
            "---|".repeat(rank_tests[0].variants.len())
        )?;
        for t in rank_tests {
            let (chi2, pv) = t.friedman.unwrap_or((f64::NAN, f64::NAN));
            writeln!(
                out,
                "| {} | {} | {:.3} | {} | {:.3} |",
                display_name(&t.metric),
                t.mean_ranks
                    .iter()
                    .map(|r| format!("{r:.2}"))
                    .collect::<Vec<_>>()
                    .join(" | "),
                chi2,
                p(pv),
                t.critical_difference
            )?;
        }
    }
    Ok(out)
}

/// Writes `comparison.{csv,parquet,md}` and returns the rows and the Markdown.
pub fn write_tables(
    dir: &Path,
    rows: &[RunRow],
    reference: &str,
    order: &[String],
) -> Result<(Vec<ComparisonRow>, String)> {
    let comparison = compare(rows, reference, order);
    let rank_tests = rank_tests(rows, order);
    let mut f = frame(&comparison)?;
    super::write_frame(dir, "comparison", &mut f)?;
    let md = markdown(&comparison, &rank_tests)?;
    // The file carries the provenance footer; summary.md, which embeds `md`, has its own.
    let file = format!("{md}{}", super::provenance::footer(rows));
    atomic::write(&dir.join("comparison.md"), file.as_bytes())?;
    Ok((comparison, md))
}
