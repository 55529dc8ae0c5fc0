//! A trained model as a portable bundle (`opencarbon export-model`): what `predict` needs and
//! nothing else, plus a model card saying what the model was trained on and how well it did.
//!
//! ```text
//! <bundle>/bundle.json          format, version, where it came from
//! <bundle>/spec.resolved.yaml   the run's resolved spec (network, training, data, split, seed)
//! <bundle>/model.safetensors    the best checkpoint's weights (a network)
//! <bundle>/model.json           the fitted model (a baseline: ridge, gbt or mean)
//! <bundle>/normalization.json   target scaling, covariate statistics, inputs, applicability
//! <bundle>/test_metrics.json    the run's test metrics
//! <bundle>/MODEL_CARD.md        for people
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::normalization::{self, Normalization};
use crate::baselines::fitted;
use crate::checked::Checked;
use crate::record::{state as resume, TestMetrics};
use crate::spec::RunSpec;
use crate::track::{atomic, RunMeta};

pub const MANIFEST: &str = "bundle.json";
pub const WEIGHTS: &str = "model.safetensors";
const FORMAT: &str = "opencarbon-model";
const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleManifest {
    pub format: String,
    pub version: u32,
    pub run_id: String,
    pub experiment: String,
    pub variant: String,
    pub dataset: String,
    pub seed: u64,
    /// The run directory it was exported from.
    pub source_run: String,
    pub exported: String,
    pub opencarbon_version: String,
    /// Backend and device the model was trained on, and the code version, from `meta.json`.
    pub trained_on: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
}

/// Package a trained model.
#[derive(clap::Args)]
pub struct ExportArgs {
    /// A finished run directory (a network, or a ridge, gbt or mean baseline)
    run: PathBuf,
    /// The bundle's directory (created; files in it are replaced)
    #[arg(long)]
    out: PathBuf,
}

pub fn main(args: ExportArgs) -> Result<()> {
    let manifest = export(&args.run, &args.out)?;
    println!(
        "exported run {} ({} on {}, seed {}) into {}; `opencarbon predict --run {} --city <area> --out <dir>` maps with it",
        manifest.run_id,
        manifest.variant,
        manifest.dataset,
        manifest.seed,
        args.out.display(),
        args.out.display()
    );
    Ok(())
}

/// Whether `dir` is a bundle (rather than a run directory).
pub fn is_bundle(dir: &Path) -> bool {
    dir.join(MANIFEST).is_file()
}

/// Writes the bundle of the finished network run `run` into `out`.
pub fn export(run: &Path, out: &Path) -> Result<BundleManifest> {
    let (spec, metrics) = super::finished_run(run)?;
    let normalization = normalization::read_or_recompute(run, &spec)?;
    let meta: RunMeta = read_json(&run.join("meta.json"))?;
    // A network's best checkpoint, or a baseline's fitted model (fitted again for older runs).
    let (model_file, model) = if spec.baseline.is_some() {
        let fitted = super::baseline_model::open(run, &spec, &run.join(fitted::FILE))?;
        (fitted::FILE, json(&fitted)?)
    } else {
        let weights = std::fs::read(run.join("checkpoints/best.safetensors"))
            .with_context(|| format!("reading the best checkpoint of {}", run.display()))?;
        (WEIGHTS, weights)
    };
    let manifest = BundleManifest {
        format: FORMAT.into(),
        version: VERSION,
        run_id: spec.run_id(),
        experiment: spec.name.clone(),
        variant: spec.variant.clone(),
        dataset: spec.dataset_label(),
        seed: spec.seed,
        source_run: run.display().to_string(),
        exported: crate::track::meta::now(),
        opencarbon_version: env!("CARGO_PKG_VERSION").into(),
        trained_on: format!("{} on {}", meta.backend, meta.device),
        git_commit: meta.git_commit.clone(),
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    // The model first and the manifest last: a directory without `bundle.json` is no bundle.
    atomic::write(&out.join(model_file), &model)?;
    atomic::write(
        &out.join("spec.resolved.yaml"),
        spec.resolved_yaml().as_bytes(),
    )?;
    atomic::write(&out.join(normalization::FILE), &json(&normalization)?)?;
    atomic::write(&out.join("test_metrics.json"), &json(&metrics)?)?;
    atomic::write(
        &out.join("MODEL_CARD.md"),
        model_card(&manifest, &spec, &normalization, &metrics)?.as_bytes(),
    )?;
    atomic::write(&out.join(MANIFEST), &json(&manifest)?)?;
    Ok(manifest)
}

/// A bundle's spec, normalisation and weights file, checked.
pub fn open(dir: &Path) -> Result<(Checked<RunSpec>, Normalization, PathBuf)> {
    let manifest: BundleManifest = read_json(&dir.join(MANIFEST))?;
    if manifest.format != FORMAT || manifest.version > VERSION {
        bail!(
            "{}: format `{}` version {}; this opencarbon reads `{FORMAT}` up to version {VERSION}",
            dir.join(MANIFEST).display(),
            manifest.format,
            manifest.version
        );
    }
    let spec = RunSpec::load(&dir.join("spec.resolved.yaml"), &[])?;
    let normalization: Normalization = read_json(&dir.join(normalization::FILE))?;
    if spec.baseline.is_some() {
        return Ok((spec, normalization, dir.join(fitted::FILE)));
    }
    let weights = dir.join(WEIGHTS);
    resume::check_safetensors(&weights)
        .map_err(|e| anyhow::anyhow!("{}: {e}", weights.display()))?;
    Ok((spec, normalization, weights))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    Ok(text.into_bytes())
}

fn yaml<T: Serialize>(value: &T) -> Result<String> {
    Ok(serde_norway::to_string(value)?)
}

fn model_card(
    manifest: &BundleManifest,
    spec: &RunSpec,
    n: &Normalization,
    metrics: &TestMetrics,
) -> Result<String> {
    let s = &n.inputs;
    let mut card = String::new();
    writeln!(
        card,
        "# Model card: OpenCarbon `{}` trained on {} (seed {})\n",
        manifest.variant, manifest.dataset, manifest.seed
    )?;
    writeln!(
        card,
        "Exported from run `{}` of experiment `{}` ({}) on {} by opencarbon {}. Trained with {}{}.\n",
        manifest.run_id,
        manifest.experiment,
        manifest.source_run,
        manifest.exported,
        manifest.opencarbon_version,
        manifest.trained_on,
        manifest
            .git_commit
            .as_deref()
            .map(|c| format!(" at commit {c}"))
            .unwrap_or_default()
    )?;
    writeln!(card, "## What it does\n")?;
    writeln!(
        card,
        "Predicts the natural log of a tile's ODIAC CO₂ emission from its {} (and those of its \
         neighbours within {} tile(s)). Map an area with \
         `opencarbon predict --run <this directory> --city <area> --out <dir>`; the area must carry \
         the inputs below. Tiles whose inputs lie outside what the model saw (dissimilarity index \
         above {:.3}, Meyer & Pebesma's area of applicability) are flagged: predictions there are \
         extrapolations.\n",
        spec.modalities_read()
            .iter()
            .map(|m| match m.name() {
                "image" => "satellite image",
                "poi" => "POI rasters",
                _ => "covariates",
            })
            .collect::<Vec<_>>()
            .join(" and "),
        spec.baseline
            .as_ref()
            .map_or(spec.model.neighbourhood, |b| b.window_radius()),
        n.applicability.as_ref().map_or(f64::NAN, |a| a.threshold)
    )?;
    writeln!(card, "## Training data\n")?;
    writeln!(
        card,
        "- City: `{}`, {} training tiles.",
        s.city, n.train_tiles
    )?;
    if let Some(side) = s.image_side {
        writeln!(card, "- Satellite images: {side}×{side} px RGB.")?;
    }
    if let (Some(c), Some(side)) = (&s.poi_categories, s.poi_side) {
        writeln!(
            card,
            "- POI rasters: {side}×{side}, {} categories: {}.",
            c.len(),
            c.join(", ")
        )?;
    }
    if let Some(c) = &s.covariates {
        writeln!(
            card,
            "- Covariates (standardised with the training tiles' mean and std): {}.",
            c.join(", ")
        )?;
    }
    if spec.baseline.is_none() {
        writeln!(
            card,
            "- Target: ln(emission), fed to the network as (ln − {:.6}) / {:.6}.\n",
            n.target_shift, n.target_scale
        )?;
    } else {
        writeln!(card, "- Target: ln(emission).\n")?;
    }
    writeln!(
        card,
        "Dataset, as the spec gives it:\n\n```yaml\n{}```\n",
        yaml(&spec.dataset)?
    )?;
    writeln!(
        card,
        "Split (seed {}):\n\n```yaml\n{}```\n",
        spec.seed,
        yaml(&spec.split)?
    )?;
    writeln!(card, "## Test metrics ({} tiles, ln scale)\n", metrics.n)?;
    writeln!(card, "| R² | RMSE | MAE | MAPE |\n|---|---|---|---|")?;
    writeln!(
        card,
        "| {:.4} | {:.4} | {:.4} | {:.4} |\n",
        metrics.r2, metrics.rmse, metrics.mae, metrics.mape
    )?;
    if spec.baseline.is_none() {
        writeln!(
            card,
            "Best validation epoch {} of {} run (validation R² {:.4}); {:.0} s of training.\n",
            metrics.best_epoch, metrics.epochs_run, metrics.valid.r2, metrics.train_seconds
        )?;
    } else {
        writeln!(
            card,
            "Validation R² {:.4}; {:.1} s to fit.\n",
            metrics.valid.r2, metrics.train_seconds
        )?;
    }
    writeln!(card, "## Limitations\n")?;
    writeln!(
        card,
        "- One run, one seed: the spread across seeds is not in these numbers. An ensemble \
         (`predict --run A --run B …`) gives a per-tile standard deviation and reports how often \
         its band holds the truth."
    )?;
    writeln!(
        card,
        "- Test metrics are on the split above, in the training city. Other cities score lower; \
         see the project's transfer results."
    )?;
    writeln!(
        card,
        "- Another CPU or backend gives slightly different floats for the same inputs.\n"
    )?;
    match &spec.baseline {
        Some(b) => writeln!(
            card,
            "## Baseline\n\nNo network: a {:?} baseline on the features below, fitted on the \
             training tiles (`model.json`).\n\n```yaml\nbaseline:\n{}```",
            b.kind,
            indent(&yaml(b)?)
        )?,
        None => writeln!(
            card,
            "## Network and training\n\n```yaml\nmodel:\n{}train:\n{}```",
            indent(&yaml(&spec.model)?),
            indent(&yaml(&spec.train)?)
        )?,
    }
    Ok(card)
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}
