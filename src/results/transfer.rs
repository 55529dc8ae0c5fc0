//! The transfer matrix: train city × test city, each metric as mean ± std over seeds, per variant
//! and setting (in-city on the diagonal; zero-shot on every target tile; after fine-tuning on a
//! few-shot fraction, on the held-out tiles). Written as `transfer.{csv,parquet,md}`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use polars::prelude::*;

use super::{RunRow, METRICS};
use crate::track::atomic;

pub const IN_CITY: &str = "in-city (test split)";
pub const ZERO_SHOT_ALL: &str = "zero-shot, all tiles";
pub const ZERO_SHOT_IN_AOA: &str = "zero-shot, tiles inside the area of applicability";

/// The setting label of a transfer row, and its rank in tables.
fn setting(fraction: f64, tiles: &str) -> (String, u32) {
    match tiles {
        "all" => (ZERO_SHOT_ALL.into(), 1),
        crate::transfer::IN_AOA => (ZERO_SHOT_IN_AOA.into(), 2),
        _ => (
            format!("{}% fine-tune, held-out tiles", fmt_percent(fraction)),
            3 + (fraction * 10_000.0).round() as u32,
        ),
    }
}

fn fmt_percent(fraction: f64) -> String {
    let p = fraction * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{}", p.round() as i64)
    } else {
        format!("{p}")
    }
}

/// One row per run × (target, setting), the source's in-city test included.
pub fn long_frame(rows: &[RunRow]) -> Result<DataFrame> {
    let mut variant = Vec::new();
    let mut source = Vec::new();
    let mut target = Vec::new();
    let mut setting_label = Vec::new();
    let mut rank = Vec::new();
    let mut seed = Vec::new();
    let mut n = Vec::new();
    let mut fine_tune = Vec::new();
    let mut aoa_inside: Vec<Option<f64>> = Vec::new();
    let mut values: [Vec<f64>; 4] = Default::default();
    for r in rows.iter().filter(|r| !r.transfer.is_empty()) {
        let Some(m) = &r.metrics else { continue };
        let mut push =
            |t: &str, s: (String, u32), count: usize, ft: usize, aoa: Option<f64>, v: [f64; 4]| {
                variant.push(r.variant.clone());
                source.push(r.dataset.clone());
                target.push(t.to_string());
                setting_label.push(s.0);
                rank.push(s.1);
                seed.push(r.seed);
                n.push(count as u64);
                fine_tune.push(ft as u64);
                aoa_inside.push(aoa);
                for (slot, x) in values.iter_mut().zip(v) {
                    slot.push(x);
                }
            };
        push(
            &r.dataset,
            (IN_CITY.into(), 0),
            m.n,
            0,
            None,
            [m.r2, m.rmse, m.mae, m.mape],
        );
        for t in &r.transfer {
            let tm = &t.metrics;
            push(
                &t.target,
                setting(t.fraction, &t.tiles),
                tm.n,
                t.fine_tune_tiles,
                t.aoa_inside,
                [tm.r2, tm.rmse, tm.mae, tm.mape],
            );
        }
    }
    let [r2, rmse, mae, mape] = values;
    Ok(df!(
        "variant" => variant,
        "source" => source,
        "target" => target,
        "setting" => setting_label,
        "setting_rank" => rank,
        "seed" => seed,
        "n" => n,
        "fine_tune_tiles" => fine_tune,
        "aoa_inside" => aoa_inside,
        "r2" => r2,
        "rmse" => rmse,
        "mae" => mae,
        "mape" => mape,
    )?)
}

/// Mean, std (n − 1) and run count per variant × source × target × setting.
pub fn matrix_frame(rows: &[RunRow], variant_order: &[String]) -> Result<DataFrame> {
    let long = long_frame(rows)?;
    let mut aggs = vec![
        col("seed").count().alias("runs"),
        col("n").mean().alias("tiles"),
        col("fine_tune_tiles").mean().alias("fine_tune_tiles"),
        col("aoa_inside").mean().alias("aoa_inside"),
    ];
    for (name, _) in METRICS {
        aggs.push(col(name).mean().alias(format!("{name}_mean")));
        aggs.push(col(name).std(1).alias(format!("{name}_std")));
    }
    let mut frame = long
        .lazy()
        .group_by([
            col("variant"),
            col("source"),
            col("target"),
            col("setting"),
            col("setting_rank"),
        ])
        .agg(aggs)
        .collect()?;
    let variant_rank: Vec<u32> = frame
        .column("variant")?
        .str()?
        .iter()
        .map(|v| {
            variant_order
                .iter()
                .position(|o| Some(o.as_str()) == v)
                .unwrap_or(usize::MAX) as u32
        })
        .collect();
    frame.with_column(Column::new("variant_rank".into(), variant_rank))?;
    Ok(frame
        .lazy()
        .sort(
            [
                "variant_rank",
                "variant",
                "source",
                "setting_rank",
                "target",
            ],
            SortMultipleOptions::default(),
        )
        .select([all()
            .exclude_cols(["variant_rank", "setting_rank"])
            .as_expr()])
        .collect()?)
}

/// Writes `transfer.{csv,parquet,md}` and returns the Markdown.
pub fn write_tables(dir: &Path, rows: &[RunRow], variant_order: &[String]) -> Result<String> {
    let mut frame = matrix_frame(rows, variant_order)?;
    super::write_frame(dir, "transfer", &mut frame)?;
    let md = markdown(&frame)?;
    atomic::write(&dir.join("transfer.md"), md.as_bytes())?;
    Ok(md)
}

fn markdown(frame: &DataFrame) -> Result<String> {
    let text = |name: &str| super::text_column(frame, name);
    let floats = |name: &str| super::float_column(frame, name);
    let (variants, sources, targets, settings) = (
        text("variant")?,
        text("source")?,
        text("target")?,
        text("setting")?,
    );
    let runs = floats("runs")?;
    // Columns: every city, in order of first appearance (sources first).
    let mut cities: Vec<String> = Vec::new();
    for c in sources.iter().chain(&targets) {
        if !cities.contains(c) {
            cities.push(c.clone());
        }
    }
    // Table rows: (variant, source, setting) in frame order, in-city folded into the diagonal.
    let mut keys: Vec<(String, String, String)> = Vec::new();
    let mut in_city: HashMap<(String, String), usize> = HashMap::new();
    let mut cells: HashMap<(String, String, String, String), usize> = HashMap::new();
    for i in 0..variants.len() {
        if settings[i] == IN_CITY {
            in_city.insert((variants[i].clone(), sources[i].clone()), i);
            continue;
        }
        let key = (variants[i].clone(), sources[i].clone(), settings[i].clone());
        if !keys.contains(&key) {
            keys.push(key.clone());
        }
        cells.insert((key.0, key.1, key.2, targets[i].clone()), i);
    }
    let max_runs = runs.iter().cloned().fold(0.0, f64::max);
    let mut out = String::from("## Transfer matrix (rows: trained on; columns: tested on)\n\n");
    writeln!(
        out,
        "Diagonal: the training city's own test split. Zero-shot scores every target tile; a \
         fine-tuning row scores the target tiles outside the largest few-shot set, the same tiles \
         for every fraction (0 % = the source model unchanged). Mean ± std over up to {max_runs} seeds.\n"
    )?;
    for (name, higher) in METRICS {
        let (mean, std) = (
            floats(&format!("{name}_mean"))?,
            floats(&format!("{name}_std"))?,
        );
        let cell = |i: usize| {
            if std[i].is_finite() {
                format!("{:.3} ± {:.3}", mean[i], std[i])
            } else {
                format!("{:.3}", mean[i])
            }
        };
        let arrow = if higher { "↑" } else { "↓" };
        writeln!(out, "### {} {arrow}\n", super::display_name(name))?;
        writeln!(
            out,
            "| variant | trained on | setting | {} |",
            cities.join(" | ")
        )?;
        writeln!(out, "|---|---|---|{}", "---|".repeat(cities.len()))?;
        let mut last: Option<(String, String)> = None;
        for (variant, source, setting) in &keys {
            let first_of_source = last.as_ref() != Some(&(variant.clone(), source.clone()));
            last = Some((variant.clone(), source.clone()));
            let row: Vec<String> = cities
                .iter()
                .map(|c| {
                    if c == source {
                        match (
                            first_of_source,
                            in_city.get(&(variant.clone(), source.clone())),
                        ) {
                            (true, Some(&i)) => format!("*{}* (in-city)", cell(i)),
                            _ => "·".into(),
                        }
                    } else {
                        cells
                            .get(&(variant.clone(), source.clone(), setting.clone(), c.clone()))
                            .map_or("—".into(), |&i| cell(i))
                    }
                })
                .collect();
            writeln!(
                out,
                "| {variant} | {source} | {setting} | {} |",
                row.join(" | ")
            )?;
        }
        out.push('\n');
    }
    // The share of each target inside the source's area of applicability (zero-shot rows).
    let inside = floats("aoa_inside")?;
    let shares: Vec<usize> = (0..variants.len())
        .filter(|&i| settings[i] == ZERO_SHOT_ALL && inside[i].is_finite())
        .collect();
    if !shares.is_empty() {
        writeln!(
            out,
            "### Target tiles inside the area of applicability\n\n\
             Share of each target's tiles whose inputs resemble the training tiles' (Meyer & \
             Pebesma's dissimilarity index at most the training data's own threshold); the row \
             *{ZERO_SHOT_IN_AOA}* above scores those tiles alone. Mean over seeds.\n"
        )?;
        writeln!(
            out,
            "| variant | trained on | tested on | inside |\n|---|---|---|---|"
        )?;
        for i in shares {
            writeln!(
                out,
                "| {} | {} | {} | {:.1} % |",
                variants[i],
                sources[i],
                targets[i],
                100.0 * inside[i]
            )?;
        }
        out.push('\n');
    }
    Ok(out)
}
