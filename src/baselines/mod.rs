//! Non-neural baselines behind the same contract as the network: fit on the training tiles,
//! predict ln(emission) for any tiles, scored with the same metrics on the same split.

pub mod config;
pub mod fitted;
pub mod gbt;
pub mod ridge;

use anyhow::{bail, Result};

pub use config::{BaselineKind, BaselineSpec};
pub use fitted::Fitted;

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
    let (metrics, predicted, _) = evaluate_fitted(baseline, city, split)?;
    Ok((metrics, predicted))
}

/// As [`evaluate`], with the fitted model (none for the neighbour mean).
pub fn evaluate_fitted(
    baseline: &Baseline,
    city: &City,
    split: &Split,
) -> Result<(Metrics, Vec<f64>, Option<Fitted>)> {
    let fitted = baseline.fit(city, &split.train)?;
    let predicted: Vec<f64> = match &fitted {
        Some(model) => model.predict(city, &split.test)?,
        // The neighbour mean: its training neighbours' targets, else the global mean.
        None => {
            let mean =
                split.train.iter().map(|&i| city.target(i)).sum::<f64>() / split.train.len() as f64;
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
    Ok((Metrics::compute(&target, &predicted), predicted, fitted))
}

/// A feature name with its spatial lag split off: `lag2:ln_gdp` → (Some(2), `ln_gdp`). Only
/// `lag<digits>:` (or `lag:`, an error) starts a lag, so a covariate may be called `lagoon`.
pub fn split_lag(column: &str) -> Result<(Option<usize>, &str)> {
    let Some(rest) = column.strip_prefix("lag") else {
        return Ok((None, column));
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if rest.as_bytes().get(digits) != Some(&b':') {
        return Ok((None, column));
    }
    let (k, base) = (&rest[..digits], &rest[digits + 1..]);
    match k.parse::<usize>() {
        Ok(k) if (1..=5).contains(&k) && !base.starts_with("lag") => Ok((Some(k), base)),
        _ => bail!(
            "feature `{column}`: a spatial lag is lag<k>:<feature> with k from 1 to 5, e.g. lag1:ln_population"
        ),
    }
}

type Getter<'a> = Box<dyn Fn(usize) -> f64 + 'a>;

/// Rows of named features for `tiles`: a tabular covariate by its column name, or `poi:<category>`
/// (or `poi:*` for every category) for the tile's POI density summed over its raster, i.e. a POI
/// count; `lag<k>:<feature>` is that feature's mean over the tile's (2k+1)² window, the tile
/// included and missing neighbours skipped (a spatially-lagged covariate: inputs only, never
/// targets, so it is known on every tile).
pub fn features(city: &City, columns: &[String], tiles: &[usize]) -> Result<Vec<Vec<f64>>> {
    if columns.is_empty() {
        bail!("baseline: name at least one feature");
    }
    let mut radii = Vec::new();
    for c in columns {
        if let (Some(k), _) = split_lag(c)? {
            radii.push(k);
        }
    }
    radii.sort_unstable();
    radii.dedup();
    let windows: Vec<(usize, NeighbourIndex)> = radii
        .into_iter()
        .map(|k| (k, NeighbourIndex::new(city, k)))
        .collect();
    let mut getters: Vec<Getter> = Vec::new();
    for c in columns {
        let (lag, base) = split_lag(c)?;
        let plain = plain_features(city, base)?;
        match lag {
            None => getters.extend(plain),
            Some(k) => {
                let index = &windows.iter().find(|(r, _)| *r == k).expect("indexed").1;
                for g in plain {
                    getters.push(Box::new(move |i| {
                        let (sum, n) = index.windows[i]
                            .iter()
                            .flatten()
                            .fold((0.0, 0usize), |(s, n), &j| (s + g(j), n + 1));
                        sum / n as f64
                    }));
                }
            }
        }
    }
    Ok(tiles
        .iter()
        .map(|&i| getters.iter().map(|g| g(i)).collect())
        .collect())
}

/// The getters of one feature without a lag (`poi:*` gives one per category).
fn plain_features<'a>(city: &'a City, c: &str) -> Result<Vec<Getter<'a>>> {
    let mut getters: Vec<Getter> = Vec::new();
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
    Ok(getters)
}
