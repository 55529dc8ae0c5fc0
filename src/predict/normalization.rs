//! A run's `normalization.json` (`train::normalization`), recomputed from the resolved spec for run
//! directories written before it existed.

use std::path::Path;

use anyhow::{Context, Result};

use crate::data::{load_city, CityOptions, Standardizer};
use crate::spec::RunSpec;
pub use crate::train::normalization::{InputSignature, Normalization, FILE};

/// The run's `normalization.json`, or, for a run written before it existed, the same values
/// recomputed from its resolved spec (the training city and split are rebuilt), saying so.
pub fn read_or_recompute(run_dir: &Path, spec: &RunSpec) -> Result<Normalization> {
    let path = run_dir.join(FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let saved: Normalization =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if saved.applicability.is_some() || spec.transfer.is_some() {
            return Ok(saved);
        }
    }
    eprintln!(
        "{}: no {FILE}, or one without the area-of-applicability reference (older runs); recomputing it from spec.resolved.yaml",
        run_dir.display()
    );
    if spec.transfer.is_some() {
        anyhow::bail!(
            "{}: no {FILE}, and a transfer run's normalisation cannot be rebuilt here; run it again to write one",
            run_dir.display()
        );
    }
    let city = load_city(&spec.dataset, &CityOptions::default())
        .with_context(|| format!("rebuilding the training city of {}", run_dir.display()))?;
    let split = spec.split.split(&city, spec.seed)?;
    let standardizer = Standardizer::fit(&city, &split.train, spec.model.clip_covariates);
    let scaling =
        crate::train::trainer::target_scaling(&city, &split.train, spec.train.standardize_target);
    Ok(Normalization::new(
        &city,
        standardizer,
        scaling,
        &spec.modalities_read(),
        &split.train,
        spec.seed,
    ))
}
