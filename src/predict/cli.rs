//! The `opencarbon predict` subcommand.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::backend::{self, DeviceChoice};
use crate::spec::RunSpec;

/// Map every tile of an area with one trained run, or an ensemble of several.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct PredictArgs {
    #[command(subcommand)]
    merge: Option<MergeCommand>,
    /// A finished run directory or a model bundle (repeatable: the runs' mean and spread per tile)
    #[arg(long = "run", value_name = "RUN_DIR")]
    runs: Vec<PathBuf>,
    /// Every finished run of `--variant` in this experiment directory (results/<experiment>)
    #[arg(long, value_name = "EXPERIMENT_DIR", requires = "variant")]
    from: Option<PathBuf>,
    /// The variant whose runs `--from` takes
    #[arg(long)]
    variant: Option<String>,
    /// The training dataset whose runs `--from` takes (needed when the variant ran on several)
    #[arg(long, requires = "from")]
    dataset: Option<String>,
    /// The area: a canonical city directory, an ODIAC tile table (.csv) or a dataset .yaml
    #[arg(long, required = true)]
    city: Option<PathBuf>,
    /// Output directory (created)
    #[arg(long, required = true)]
    out: Option<PathBuf>,
    /// Predict one share of the area's chunks, i of n (0-based), for `predict merge`
    #[arg(long, default_value = "0/1")]
    shard: super::Shard,
    /// cpu (libtorch CPU when built with `tch`, else flex), flex, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
    /// Tiles encoded per forward pass
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Predict the area in chunks of N×N tiles (plus a halo of the neighbourhood radius), so that
    /// device memory is bounded by the chunk; 0: the whole area at once
    #[arg(long, default_value_t = 128)]
    chunk: usize,
    /// Nominal level of the conformal prediction intervals (calibrated on the runs' held-out
    /// tiles: CV+ for the folds of a cross-validated variant, else split conformal)
    #[arg(long, default_value_t = 0.9)]
    level: f64,
    /// What the bands' widths follow: none (one width up to the fold models' disagreement) or
    /// di (proportional to the tile's dissimilarity index plus β, wider where the inputs are
    /// unlike the training tiles; needs the training city's data)
    #[arg(long, value_enum, default_value_t = super::intervals::Scale::None)]
    scale: super::intervals::Scale,
}

#[derive(clap::Subcommand)]
enum MergeCommand {
    /// Join the outputs of `predict --shard i/n` (every i once) into the area's outputs.
    Merge {
        /// The shards' output directories
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        /// Output directory for the area's outputs (created)
        #[arg(long)]
        out: PathBuf,
    },
}

/// The finished runs of `variant` (trained on `dataset`, which may be left out when the variant
/// ran on one dataset only) under `experiment/runs/`, by run id.
fn runs_of_variant(
    experiment: &Path,
    variant: &str,
    dataset: Option<&str>,
) -> Result<Vec<PathBuf>> {
    let runs = experiment.join("runs");
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    let entries =
        std::fs::read_dir(&runs).with_context(|| format!("reading {}", runs.display()))?;
    for entry in entries {
        let dir = entry?.path();
        let spec = match RunSpec::load(&dir.join("spec.resolved.yaml"), &[]) {
            Ok(spec) => spec,
            Err(e) => {
                eprintln!("{}: skipped ({e:#})", dir.display());
                continue;
            }
        };
        let label = spec.dataset_label();
        if spec.variant == variant
            && dataset.is_none_or(|d| d == label)
            && matches!(
                crate::record::state::check(&dir, None),
                crate::record::state::State::Done(_)
            )
        {
            found.push((label, dir));
        }
    }
    found.sort_by(|a, b| a.1.cmp(&b.1));
    let mut datasets: Vec<&str> = found.iter().map(|(d, _)| d.as_str()).collect();
    datasets.sort_unstable();
    datasets.dedup();
    if datasets.len() > 1 {
        bail!(
            "{}: variant `{variant}` has finished runs on {} datasets ({}); an ensemble is one model trained on one city: add --dataset NAME",
            experiment.display(),
            datasets.len(),
            datasets.join(", ")
        );
    }
    if found.is_empty() {
        bail!(
            "{}: no finished run of variant `{variant}`{}",
            experiment.display(),
            dataset
                .map(|d| format!(" on dataset `{d}`"))
                .unwrap_or_default()
        );
    }
    Ok(found.into_iter().map(|(_, dir)| dir).collect())
}

pub fn main(args: PredictArgs) -> Result<()> {
    if let Some(MergeCommand::Merge { shards, out }) = &args.merge {
        let summary = super::merge(shards, out)?;
        println!("{} shards merged into {}", shards.len(), out.display());
        return report(&summary);
    }
    let (Some(city), Some(out)) = (&args.city, &args.out) else {
        bail!("predict needs --city and --out");
    };
    let mut dirs = args.runs.clone();
    if let (Some(experiment), Some(variant)) = (&args.from, &args.variant) {
        dirs.extend(runs_of_variant(
            experiment,
            variant,
            args.dataset.as_deref(),
        )?);
    }
    if dirs.is_empty() {
        bail!("name the model: --run <run-dir> (repeatable) or --from <experiment-dir> --variant <name>");
    }
    let device = backend::device(&args.device)?;
    let runs = dirs
        .iter()
        .map(|d| super::open_run(d, &device))
        .collect::<Result<Vec<_>>>()?;
    let mut area = super::load_area(city)?;
    let predictions = super::predict_area(
        &runs, &mut area, &device, args.batch, args.chunk, args.shard,
    )?;
    let Some(summary) = super::write_outputs(
        out,
        &runs,
        &area,
        &predictions,
        super::intervals::BandOptions {
            level: args.level,
            scale: args.scale,
        },
    )?
    else {
        println!(
            "shard {}/{}: {} of {} tiles predicted into {}; `opencarbon predict merge <shard dirs> --out DIR` joins them",
            args.shard.index,
            args.shard.count,
            predictions.predicted.len(),
            area.city.len(),
            out.display()
        );
        return Ok(());
    };
    println!("{} mapped into {}", summary.area, out.display());
    report(&summary)
}

fn report(summary: &super::PredictSummary) -> Result<()> {
    println!(
        "{} tiles mapped with {} run(s) ({}×{} raster, placement {}{})",
        summary.tiles,
        summary.runs.len(),
        summary.raster[0],
        summary.raster[1],
        summary.georef.kind,
        if summary.georef.kind == "fitted" {
            format!(
                ": affine fit to {} WGS84 corners, residual RMS {:.1} m, max {:.1} m",
                summary.georef.corners,
                summary.georef.residual_rms_m,
                summary.georef.residual_max_m
            )
        } else {
            String::new()
        }
    );
    if let Some(m) = &summary.labelled {
        println!(
            "labelled tiles: {} (every labelled tile, training tiles included if this is the training city): R² {:.4}, RMSE {:.4}, MAE {:.4}",
            m.n, m.r2, m.rmse, m.mae
        );
    }
    println!(
        "area of applicability: {:.1} % of tiles inside (DI ≤ {:.3}); the rest are flagged and greyed",
        100.0 * summary.aoa_inside,
        summary.aoa_threshold
    );
    if summary.mostly_outside {
        eprintln!(
            "warning: {:.1} % of the area lies outside the model's area of applicability: this map is mostly extrapolation, and its bands cover less there (predict.json: mostly_outside)",
            100.0 * (1.0 - summary.aoa_inside)
        );
    }
    if let Some(c) = summary.band_coverage {
        println!(
            "mean ± 1.96σ over the runs holds the truth on {:.1} % of labelled tiles",
            100.0 * c
        );
    }
    if let Some(b) = &summary.interval {
        let pct = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{:.1} %", 100.0 * v));
        println!(
            "{:.0} % conformal intervals ({:?}{}, {} held-out tiles): mean width {:.3} (ln); on labelled tiles coverage {}, inside the area of applicability {} ({} tiles), outside {} ({} tiles)",
            100.0 * b.level,
            b.method,
            if b.scale.is_none() { "" } else { ", widths scaled by the DI" },
            b.calibration_points,
            b.mean_width,
            pct(b.coverage),
            pct(b.coverage_in_aoa),
            b.labelled_in_aoa,
            pct(b.coverage_outside_aoa),
            b.labelled_outside_aoa
        );
    }
    Ok(())
}
