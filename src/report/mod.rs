//! `opencarbon report results/<experiment>`: the figures a researcher puts in a paper, in one
//! page. Writes `report/` beside the summary: each figure as PNG and SVG, `report.md` (figures
//! embedded, for a repository page) and `index.html` (self-contained: images inlined as data
//! URIs, no scripts, no network, every string escaped).

use std::path::{Path, PathBuf};

use crate::track::atomic;
use anyhow::{Context, Result};

pub mod bars;
pub mod cd;
pub mod cli;
pub mod colormap;
pub mod curves;
pub mod figure;
pub mod inputs;
pub mod maps;
pub mod page;
pub mod scatter;
pub mod transfer;

use figure::{save, Saved};
use inputs::Inputs;

/// What `write` produced.
pub struct Report {
    pub dir: PathBuf,
    pub figures: Vec<Saved>,
    /// Runs left out and figures that could not be drawn, and why (shown on the page too).
    pub skipped: Vec<String>,
}

/// Writes `<experiment_dir>/report/` from the experiment's finished runs.
pub fn write(experiment_dir: &Path) -> Result<Report> {
    let inputs = Inputs::read(experiment_dir)?;
    let dir = experiment_dir.join("report");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // A report killed mid-write leaves its writer's scratch files; the next one sweeps them.
    atomic::remove_dead_scratch(&dir);
    let mut figures = Vec::new();
    let mut skipped = inputs.left_out.clone();
    for dataset in &inputs.datasets {
        let slug = slug(dataset);
        if let Some(f) = bars::AblationBars::of(&inputs, dataset) {
            figures.push(save(
                &f,
                &dir,
                &format!("bars-{slug}"),
                &format!(
                    "{dataset}: ablation bars with 95 % intervals and paired tests against {}",
                    f.reference
                ),
            )?);
        }
        if let Some(f) = curves::LearningCurves::of(&inputs, dataset) {
            figures.push(save(
                &f,
                &dir,
                &format!("curves-{slug}"),
                &format!("{dataset}: learning curves (mean ± std over runs)"),
            )?);
        }
        if let Some(f) = scatter::PredictedVsTrue::of(&inputs, dataset) {
            figures.push(save(
                &f,
                &dir,
                &format!("predicted-{slug}"),
                &format!("{dataset}: predicted against true ln-emission on the test tiles"),
            )?);
        }
        if let Some(f) = maps::predictions(&inputs, dataset) {
            figures.push(save(
                &f,
                &dir,
                &format!("map-{slug}"),
                &format!("{dataset}: target, prediction and residual on the tile grid"),
            )?);
        }
        if let Some(f) = maps::split(&inputs, dataset) {
            figures.push(save(
                &f,
                &dir,
                &format!("split-{slug}"),
                &format!("{dataset}: the split on the tile grid"),
            )?);
        }
        match city_preview(&inputs, dataset, &dir, &slug) {
            Ok(Some(saved)) => figures.push(saved),
            Ok(None) => {}
            Err(e) => skipped.push(format!("{dataset}: city preview not drawn: {e:#}")),
        }
    }
    if let Some(f) = transfer::TransferHeatmap::of(&inputs) {
        figures.push(save(
            &f,
            &dir,
            "transfer",
            "Transfer matrix: test R², trained on (rows) × tested on (columns)",
        )?);
    }
    if let Some(f) = cd::CriticalDifference::of(&inputs) {
        figures.push(save(
            &f,
            &dir,
            "critical-difference",
            "Critical-difference diagram of test R² over datasets",
        )?);
    }
    let report = Report {
        dir,
        figures,
        skipped,
    };
    page::write(&inputs, &report)?;
    Ok(report)
}

/// Writes `<out>/report/` at the end of `run`. The runs and tables are written and intact either
/// way: a figure that cannot be drawn is a warning, not a failed run.
pub fn refresh(out: &Path) {
    match write(out) {
        Ok(r) => println!(
            "report: {} figures → {}",
            r.figures.len(),
            r.dir.join("index.html").display()
        ),
        Err(e) => eprintln!("warning: report not written: {e:#}"),
    }
}

/// A synthetic city's satellite mosaic beside its emission map (`datasets preview`), PNG only.
fn city_preview(inputs: &Inputs, dataset: &str, dir: &Path, slug: &str) -> Result<Option<Saved>> {
    let Some(run) = inputs.runs.iter().find(|r| r.row.dataset == dataset) else {
        return Ok(None);
    };
    let spec = run.spec()?;
    if !matches!(spec.dataset, crate::spec::DatasetSpec::Synthetic(_)) {
        return Ok(None);
    }
    let city = crate::data::load_city(&spec.dataset, &Default::default())?;
    let stem = format!("city-{slug}");
    let side = city.keys.iter().map(|k| k.x).max().unwrap_or(0)
        - city.keys.iter().map(|k| k.x).min().unwrap_or(0)
        + 1;
    let cell = (480 / side.max(1) as usize).clamp(4, 32);
    crate::data::preview::write_png(&city, &dir.join(format!("{stem}.png")), cell)?;
    Ok(Some(Saved {
        stem,
        caption: format!(
            "{dataset}: satellite mosaic (left) and ln-emission (right; black: no tile)"
        ),
    }))
}

/// A file-name-safe form of a dataset label.
pub fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}
