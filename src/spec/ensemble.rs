//! A variant's `ensemble:` section: a variant with no runs of its own, averaging other variants'
//! test predictions (the tables build it: `results::ensemble`).

use serde::{Deserialize, Serialize};

/// A variant's `ensemble:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleConfig {
    /// The variants averaged (at least two, none an ensemble itself).
    pub members: Vec<String>,
}

impl EnsembleConfig {
    /// Checks the members against the experiment's variants that have runs.
    pub fn check(&self, name: &str, variants: &[String]) -> Result<(), String> {
        let mut seen: Vec<&String> = Vec::new();
        for m in &self.members {
            if seen.contains(&m) {
                return Err(format!(
                    "variants.{name}.ensemble.members: `{m}` is listed twice"
                ));
            }
            if !variants.contains(m) {
                return Err(format!(
                    "variants.{name}.ensemble.members: `{m}` is not a variant with runs (variants: {})",
                    variants.join(", ")
                ));
            }
            seen.push(m);
        }
        if seen.len() < 2 {
            return Err(format!(
                "variants.{name}.ensemble.members: name at least two variants to average"
            ));
        }
        Ok(())
    }
}
