//! Non-neural baselines behind the same contract as the network: fit on the training tiles,
//! predict ln(emission) for any tiles, scored with the same metrics on the same split.

pub mod ridge;

use anyhow::{bail, Result};

use crate::data::{City, NeighbourIndex, Split};
use crate::metrics::Metrics;

/// A baseline that can be fitted on a split.
#[derive(Debug, Clone, PartialEq)]
pub enum Baseline {
    /// The mean training target everywhere.
    Mean,
    /// Ridge regression on named tabular covariates (standardised on the training tiles).
    Ridge { columns: Vec<String>, lambda: f64 },
    /// The mean training target of the tile's 8 neighbours (spatial lag), else the global mean.
    NeighbourMean,
}

/// Fits `baseline` on `split.train` and returns its test metrics and predictions.
pub fn evaluate(baseline: &Baseline, city: &City, split: &Split) -> Result<(Metrics, Vec<f64>)> {
    let y_train: Vec<f64> = split.train.iter().map(|&i| city.target(i)).collect();
    let mean = y_train.iter().sum::<f64>() / y_train.len() as f64;
    let predicted: Vec<f64> = match baseline {
        Baseline::Mean => vec![mean; split.test.len()],
        Baseline::Ridge { columns, lambda } => {
            let t = city.tabular.as_ref().ok_or_else(|| anyhow::anyhow!("ridge: city `{}` has no tabular covariates", city.name))?;
            let idx: Vec<usize> = columns
                .iter()
                .map(|c| {
                    t.columns.iter().position(|n| n == c).ok_or_else(|| {
                        anyhow::anyhow!("ridge: no covariate `{c}` in city `{}` (has {})", city.name, t.columns.join(", "))
                    })
                })
                .collect::<Result<_>>()?;
            if idx.is_empty() {
                bail!("ridge: name at least one covariate");
            }
            let f = t.columns.len();
            let rows = |tiles: &[usize]| -> Vec<Vec<f64>> {
                tiles.iter().map(|&i| idx.iter().map(|&c| t.values[i * f + c] as f64).collect()).collect()
            };
            let model = ridge::Ridge::fit(&rows(&split.train), &y_train, *lambda)?;
            rows(&split.test).iter().map(|x| model.predict(x)).collect()
        }
        Baseline::NeighbourMean => {
            let index = NeighbourIndex::new(city, 1);
            let mut is_train = vec![false; city.len()];
            for &i in &split.train {
                is_train[i] = true;
            }
            split
                .test
                .iter()
                .map(|&i| {
                    let lag: Vec<f64> = index.windows[i]
                        .iter()
                        .flatten()
                        .filter(|&&j| j != i && is_train[j])
                        .map(|&j| city.target(j))
                        .collect();
                    if lag.is_empty() { mean } else { lag.iter().sum::<f64>() / lag.len() as f64 }
                })
                .collect()
        }
    };
    let target: Vec<f64> = split.test.iter().map(|&i| city.target(i)).collect();
    Ok((Metrics::compute(&target, &predicted), predicted))
}
