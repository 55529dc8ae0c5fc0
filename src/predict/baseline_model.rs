//! The fitted model of a baseline run: its `model.json`, or, for a run written before baselines
//! kept one, the same model fitted again from the run's resolved spec and checked against the
//! test predictions the run recorded.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::baselines::Fitted;
use crate::data::{load_city, CityOptions};
use crate::spec::RunSpec;

/// Relative difference allowed between a refitted baseline's test predictions and the recorded
/// ones: the same arithmetic repeats bit for bit on one machine, another CPU may round the ridge
/// solve or the trees' f32 sums differently in the last places.
const REFIT_TOLERANCE: f64 = 1e-6;

/// The fitted baseline of run (or bundle) `dir`, from `file` when it is there.
pub fn open(dir: &Path, spec: &RunSpec, file: &Path) -> Result<Fitted> {
    if file.is_file() {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        return serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()));
    }
    if crate::predict::bundle::is_bundle(dir) {
        bail!("{}: a baseline bundle without its model", file.display());
    }
    eprintln!(
        "{}: no {} (a run written before baselines kept their model); fitting it again from spec.resolved.yaml",
        dir.display(),
        crate::baselines::fitted::FILE
    );
    refit(dir, spec)
}

/// Fits the run's baseline again on its training tiles and checks that it predicts the run's
/// recorded test tiles as the run did.
fn refit(dir: &Path, spec: &RunSpec) -> Result<Fitted> {
    let Some(baseline) = &spec.baseline else {
        bail!("run {}: not a baseline run", dir.display());
    };
    let city = load_city(&spec.dataset, &CityOptions::default())
        .with_context(|| format!("rebuilding the training city of {}", dir.display()))?;
    let split = spec.split.split(&city, spec.seed)?;
    let fitted = baseline
        .baseline()
        .fit(&city, &split.train)?
        .with_context(|| format!("run {}: this baseline keeps no model", dir.display()))?;
    let (recorded, tiles) = super::recorded_tiles(dir, &city)?;
    let again = fitted.predict(&city, &tiles)?;
    for (t, p) in recorded.iter().zip(&again) {
        if (t.prediction - p).abs() > REFIT_TOLERANCE * t.prediction.abs().max(1.0) {
            bail!(
                "run {}: fitted again, the baseline predicts {p} at tile ({}, {}) where the run recorded {}; the data or the code changed since, run it again",
                dir.display(),
                t.x,
                t.y,
                t.prediction
            );
        }
    }
    Ok(fitted)
}
