//! Tables are evidence: a command may add runs to them, never silently drop any. Before the
//! tables of an experiment are rewritten, the runs they would be built from are compared with
//! the runs the current `summary.csv` counts per dataset × variant; fewer anywhere is refused
//! (unless `--force`), naming what is missing, and nothing is written.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use polars::prelude::{CsvReadOptions, SerReader};

use super::RunRow;

/// Whether tables built from `rows` may replace those in `dir`.
pub fn check(dir: &Path, rows: &[RunRow], force: bool) -> Result<()> {
    let mut now: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.metrics.is_some()) {
        *now.entry((r.dataset.clone(), r.variant.clone()))
            .or_default() += 1;
    }
    let before = counted(dir)?;
    if now.is_empty() && before.is_empty() {
        bail!(
            "{}: no finished run in runs/ or records/: nothing to build tables from",
            dir.display()
        );
    }
    let missing: Vec<String> = before
        .iter()
        .filter_map(|(key, &had)| {
            let has = now.get(key).copied().unwrap_or(0);
            (has < had).then(|| format!("{} / {}: {had} → {has} runs", key.0, key.1))
        })
        .collect();
    if missing.is_empty() || force {
        return Ok(());
    }
    let mut unfinished: Vec<String> = rows
        .iter()
        .filter(|r| r.metrics.is_none())
        .map(|r| {
            format!(
                "{} ({} / {} / seed {}): {}",
                r.run_id, r.dataset, r.variant, r.seed, r.status
            )
        })
        .collect();
    let more = unfinished.len().saturating_sub(20);
    unfinished.truncate(20);
    if more > 0 {
        unfinished.push(format!("… and {more} more"));
    }
    bail!(
        "{}: refusing to replace its tables with ones built from fewer runs (nothing was written; --force replaces them anyway):\n  {}{}",
        dir.display(),
        missing.join("\n  "),
        if unfinished.is_empty() {
            format!(
                "\nno run of these is in {}/runs or {}/records (a fresh clone without its records?)",
                dir.display(),
                dir.display()
            )
        } else {
            format!("\nruns found but not counted:\n  {}", unfinished.join("\n  "))
        }
    )
}

/// The runs the existing `summary.csv` counts per (dataset, variant); empty without one.
fn counted(dir: &Path) -> Result<BTreeMap<(String, String), usize>> {
    let path = dir.join("summary.csv");
    if !path.is_file() {
        return Ok(BTreeMap::new());
    }
    let frame = CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(path.clone()))
        .and_then(|r| r.finish())
        .with_context(|| format!("reading {}", path.display()))?;
    if frame.height() == 0 {
        return Ok(BTreeMap::new());
    }
    let text = |name: &str| super::text_column(&frame, name);
    let (datasets, variants) = (text("dataset")?, text("variant")?);
    let runs = super::float_column(&frame, "runs")
        .with_context(|| format!("{}: column `runs`", path.display()))?;
    Ok(datasets
        .into_iter()
        .zip(variants)
        .zip(runs)
        .map(|(key, n)| (key, n.max(0.0) as usize))
        .collect())
}
