//! Non-neural baselines behind the same contract as the network: fit on the training tiles,
//! predict ln(emission) for any tiles, scored with the same metrics on the same split.

pub mod gbt;
pub mod ridge;

use anyhow::{bail, Result};

use crate::data::{City, NeighbourIndex, Split};
use crate::metrics::Metrics;

/// A baseline that can be fitted on a split.
#[derive(Debug, Clone, PartialEq)]
pub enum Baseline {
    /// The mean training target everywhere.
    Mean,
    /// Ridge regression on named features (standardised on the training tiles).
    Ridge { columns: Vec<String>, lambda: f64 },
    /// Gradient-boosted regression trees on named features.
    Gbt {
        columns: Vec<String>,
        params: gbt::GbtParams,
    },
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
            let model =
                ridge::Ridge::fit(&features(city, columns, &split.train)?, &y_train, *lambda)?;
            features(city, columns, &split.test)?
                .iter()
                .map(|x| model.predict(x))
                .collect()
        }
        Baseline::Gbt { columns, params } => {
            let model = gbt::Gbt::fit(&features(city, columns, &split.train)?, &y_train, *params)?;
            model.predict(&features(city, columns, &split.test)?)
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
                    if lag.is_empty() {
                        mean
                    } else {
                        lag.iter().sum::<f64>() / lag.len() as f64
                    }
                })
                .collect()
        }
    };
    let target: Vec<f64> = split.test.iter().map(|&i| city.target(i)).collect();
    Ok((Metrics::compute(&target, &predicted), predicted))
}

/// Rows of named features for `tiles`: a tabular covariate by its column name, or `poi:<category>`
/// (or `poi:*` for every category) for the tile's POI density summed over its raster, i.e. a POI count.
pub fn features(city: &City, columns: &[String], tiles: &[usize]) -> Result<Vec<Vec<f64>>> {
    if columns.is_empty() {
        bail!("baseline: name at least one feature");
    }
    let mut getters: Vec<Box<dyn Fn(usize) -> f64 + '_>> = Vec::new();
    for c in columns {
        if let Some(category) = c.strip_prefix("poi:") {
            let p = city.poi.as_ref().ok_or_else(|| {
                anyhow::anyhow!("feature `{c}`: city `{}` has no POI rasters", city.name)
            })?;
            let channels: Vec<usize> = if category == "*" {
                (0..p.categories.len()).collect()
            } else {
                vec![p
                    .categories
                    .iter()
                    .position(|n| n == category)
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "feature `{c}`: no POI category `{category}` (has {})",
                            p.categories.join(", ")
                        )
                    })?]
            };
            for ch in channels {
                let (n_ch, plane) = (p.categories.len(), p.side * p.side);
                getters.push(Box::new(move |i| {
                    let start = (i * n_ch + ch) * plane;
                    p.data[start..start + plane]
                        .iter()
                        .map(|&v| v as f64)
                        .sum::<f64>()
                        * p.scale[ch] as f64
                }));
            }
        } else {
            let t = city.tabular.as_ref().ok_or_else(|| {
                anyhow::anyhow!(
                    "feature `{c}`: city `{}` has no tabular covariates",
                    city.name
                )
            })?;
            let j = t.columns.iter().position(|n| n == c).ok_or_else(|| {
                anyhow::anyhow!("feature `{c}`: no covariate `{c}` in city `{}` (has {}; POI totals are poi:<category>)", city.name, t.columns.join(", "))
            })?;
            let f = t.columns.len();
            getters.push(Box::new(move |i| t.values[i * f + j] as f64));
        }
    }
    Ok(tiles
        .iter()
        .map(|&i| getters.iter().map(|g| g(i)).collect())
        .collect())
}
