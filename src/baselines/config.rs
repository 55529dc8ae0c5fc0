//! The `baseline:` section of a run: which non-neural model replaces the network, on which
//! features. Checked once here; [`BaselineSpec::baseline`] turns it into the fitted kind.

use serde::{Deserialize, Serialize};

use super::{split_lag, Baseline};
use crate::model::Modality;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum BaselineKind {
    Mean,
    Ridge,
    Gbt,
    NeighbourMean,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineSpec {
    pub kind: BaselineKind,
    /// Features for ridge and gbt: covariate names, `poi:<category>` or `poi:*` (POI totals).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// Ridge penalty.
    #[serde(default)]
    pub lambda: f64,
    /// Gradient-boosted trees: how many (default 200), how deep (4) and the learning rate
    /// (shrinkage, 0.05). Left out of resolved specs while unset, so older run ids stand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trees: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
}

impl BaselineSpec {
    pub fn baseline(&self) -> Baseline {
        match self.kind {
            BaselineKind::Mean => Baseline::Mean,
            BaselineKind::NeighbourMean => Baseline::NeighbourMean,
            BaselineKind::Ridge => Baseline::Ridge {
                columns: self.columns.clone(),
                lambda: self.lambda,
            },
            BaselineKind::Gbt => {
                let d = super::gbt::GbtParams::default();
                Baseline::Gbt {
                    columns: self.columns.clone(),
                    params: super::gbt::GbtParams {
                        trees: self.trees.unwrap_or(d.trees),
                        depth: self.depth.unwrap_or(d.depth),
                        shrinkage: self.rate.map_or(d.shrinkage, |r| r as f32),
                    },
                }
            }
        }
    }

    /// How far around a tile (tiles, Chebyshev) it reads: 1 for the neighbour mean (its
    /// neighbours' targets), the widest spatial lag of its features, else 0.
    pub fn window_radius(&self) -> usize {
        match self.kind {
            BaselineKind::Mean => 0,
            BaselineKind::NeighbourMean => 1,
            BaselineKind::Ridge | BaselineKind::Gbt => self
                .columns
                .iter()
                .filter_map(|c| split_lag(c).ok().and_then(|(k, _)| k))
                .max()
                .unwrap_or(0),
        }
    }

    /// The modalities its features name: POI for `poi:…`, tabular for covariates.
    pub fn modalities(&self) -> Vec<Modality> {
        let base = |c: &String| {
            split_lag(c)
                .map(|(_, b)| b.to_string())
                .unwrap_or_else(|_| c.clone())
        };
        let mut m = Vec::new();
        if self.columns.iter().any(|c| base(c).starts_with("poi:")) {
            m.push(Modality::Poi);
        }
        if self.columns.iter().any(|c| !base(c).starts_with("poi:")) {
            m.push(Modality::Tabular);
        }
        m
    }
}

impl crate::checked::Params for BaselineSpec {
    /// Values serde cannot check, each problem naming its key under `baseline`.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if matches!(self.kind, BaselineKind::Ridge | BaselineKind::Gbt) && self.columns.is_empty() {
            problems.push("baseline.columns: ridge and gbt need at least one feature".into());
        }
        let gbt_keys = [
            ("trees", self.trees.is_some()),
            ("depth", self.depth.is_some()),
            ("rate", self.rate.is_some()),
        ];
        for (key, set) in gbt_keys {
            if set && self.kind != BaselineKind::Gbt {
                problems.push(format!(
                    "baseline.{key}: only gradient-boosted trees (`kind: gbt`) have it"
                ));
            }
        }
        if self.trees == Some(0) || self.trees.is_some_and(|t| t > 100_000) {
            problems.push(format!(
                "baseline.trees: {} must be between 1 and 100000",
                self.trees.unwrap_or(0)
            ));
        }
        if self.depth == Some(0) || self.depth.is_some_and(|d| d > 30) {
            problems.push(format!(
                "baseline.depth: {} must be between 1 and 30",
                self.depth.unwrap_or(0)
            ));
        }
        if let Some(r) = self.rate {
            if !(r > 0.0 && r <= 1.0) {
                problems.push(format!("baseline.rate: {r} must lie in (0, 1]"));
            }
        }
        if !(self.lambda >= 0.0 && self.lambda.is_finite()) {
            problems.push(format!("baseline.lambda: {} must be ≥ 0", self.lambda));
        }
        problems
    }
}
