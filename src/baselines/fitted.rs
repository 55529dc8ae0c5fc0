//! A baseline fitted once and kept: what a baseline run saves as `model.json` and what `predict`
//! maps new areas with, so a planner can map with the baseline that won, as with a network.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::{features, gbt, ridge, Baseline};
use crate::data::City;

/// The file a baseline run (and a baseline's bundle) keeps its fitted model in.
pub const FILE: &str = "model.json";

/// A fitted baseline. Features are read from the area's own inputs (`baselines::features`), so
/// lagged covariates are the area's; ridge keeps the training rows' standardisation.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fitted {
    /// The mean training target everywhere.
    Mean { value: f64 },
    Ridge {
        columns: Vec<String>,
        model: ridge::Ridge,
    },
    Gbt {
        columns: Vec<String>,
        model: gbt::Gbt,
    },
}

impl Baseline {
    /// Fits on `train`. The neighbour mean has no model apart from its training targets, so it
    /// cannot map an unlabelled area: `Ok(None)`.
    pub fn fit(&self, city: &City, train: &[usize]) -> Result<Option<Fitted>> {
        if train.is_empty() {
            bail!("baseline: no training tiles to fit on");
        }
        let y: Vec<f64> = train.iter().map(|&i| city.target(i)).collect();
        Ok(Some(match self {
            Baseline::Mean => Fitted::Mean {
                value: y.iter().sum::<f64>() / y.len() as f64,
            },
            Baseline::Ridge { columns, lambda } => Fitted::Ridge {
                columns: columns.clone(),
                model: ridge::Ridge::fit(&features(city, columns, train)?, &y, *lambda)?,
            },
            Baseline::Gbt { columns, params } => Fitted::Gbt {
                columns: columns.clone(),
                model: gbt::Gbt::fit(&features(city, columns, train)?, &y, *params)?,
            },
            Baseline::NeighbourMean => return Ok(None),
        }))
    }
}

impl Fitted {
    /// ln(emission) of `tiles` of `city`, which must carry the features the model was fitted on.
    pub fn predict(&self, city: &City, tiles: &[usize]) -> Result<Vec<f64>> {
        Ok(match self {
            Fitted::Mean { value } => vec![*value; tiles.len()],
            Fitted::Ridge { columns, model } => features(city, columns, tiles)?
                .iter()
                .map(|x| model.predict(x))
                .collect(),
            Fitted::Gbt { columns, model } => model.predict(&features(city, columns, tiles)?),
        })
    }

    /// The features it reads.
    pub fn columns(&self) -> &[String] {
        match self {
            Fitted::Mean { .. } => &[],
            Fitted::Ridge { columns, .. } | Fitted::Gbt { columns, .. } => columns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baselines::gbt::GbtParams;

    /// What `model.json` keeps predicts bit for bit as the model it was written from.
    #[test]
    fn model_json_round_trips_to_the_same_predictions() {
        use crate::data::synthetic::{generate, Preset, SynthConfig};
        let city = generate(&SynthConfig {
            preset: Preset::Monocentric,
            width: 6,
            height: 6,
            tile_side: 8,
            poi_categories: 3,
            seed: 1,
            signal: Default::default(),
        })
        .unwrap();
        let tiles = city.samples();
        let columns = vec!["poi:*".to_string(), "lag1:poi:*".to_string()];
        for baseline in [
            Baseline::Mean,
            Baseline::Ridge {
                columns: columns.clone(),
                lambda: 0.5,
            },
            Baseline::Gbt {
                columns,
                params: GbtParams::default(),
            },
        ] {
            let fitted = baseline.fit(&city, &tiles[..20]).unwrap().unwrap();
            let text = serde_json::to_string(&fitted).unwrap();
            let back: Fitted = serde_json::from_str(&text).unwrap();
            let (a, b) = (
                fitted.predict(&city, &tiles).unwrap(),
                back.predict(&city, &tiles).unwrap(),
            );
            assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{baseline:?}"
            );
        }
        assert!(Baseline::NeighbourMean
            .fit(&city, &tiles)
            .unwrap()
            .is_none());
    }
}
