//! Conformal bands for a map (`stats::conformal`), calibrated on the runs' own held-out tiles:
//!
//! - **CV+** when the runs are the cross-validation folds of one variant (each run's
//!   `predictions.csv` holds its out-of-fold test tiles, and each run is the model that did not
//!   see them): a tile's band comes from every fold model's prediction there. With several
//!   seeds, each seed's folds pair their own residuals with their own models.
//! - **split conformal** otherwise (holdout runs): the pooled test residuals of the runs around
//!   the ensemble mean. Each residual is one run's, and the mean of several runs is usually more
//!   accurate than one, so such a band is conservative.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::TrainedRun;
use crate::stats::conformal::{self, Calibration};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    CvPlus,
    Split,
}

/// What the bands' widths follow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// One width up to the fold models' disagreement (absolute residuals; pinned against MAPIE).
    #[default]
    None,
    /// Widths proportional to DI + β: each residual divided by its tile's DI (against the model
    /// that did not see it) plus β, the calibration DIs' median; a new tile's half-width is the
    /// quantile of those scores times its own DI (capped at the largest calibration DI) + β.
    /// Needs the training city to score the calibration tiles.
    Di,
}

impl Scale {
    pub fn is_none(&self) -> bool {
        *self == Scale::None
    }
}

/// How the bands are made: the nominal level and what their widths follow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandOptions {
    pub level: f64,
    pub scale: Scale,
}

impl From<f64> for BandOptions {
    fn from(level: f64) -> Self {
        Self {
            level,
            scale: Scale::None,
        }
    }
}

/// The calibration of one prediction's bands.
pub struct Calibrator {
    pub method: Method,
    pub level: f64,
    pub scale: Scale,
    /// CV+: (run index, residual) of every held-out tile of every run.
    calibration: Vec<Calibration>,
    /// `Scale::Di`: each calibration point's DI + β (CV+), in `calibration`'s order.
    scales: Vec<f64>,
    /// `Scale::Di`: β, added to every DI.
    beta: f64,
    /// `Scale::Di`: the largest calibration DI; a new tile's DI is capped there, since no
    /// calibration point says how wide a band beyond it must be (such tiles are outside the
    /// area of applicability, and flagged).
    cap: f64,
    /// Split conformal: the half-width (scaled: the quantile of the scaled scores).
    half_width: f64,
    pub points: usize,
}

/// (target, prediction) of each test tile of a finished run directory.
fn held_out(dir: &Path) -> Result<Vec<(f64, f64)>> {
    Ok(
        crate::record::predictions::read_csv(&dir.join("predictions.csv"))?
            .into_iter()
            .map(|t| (t.target, t.prediction))
            .collect(),
    )
}

impl Calibrator {
    /// The bands' calibration from the runs' held-out tiles; `Ok(None)` (with the reason) when a
    /// run carries none (a bundle exported without them).
    pub fn of(
        runs: &[TrainedRun],
        options: BandOptions,
    ) -> Result<std::result::Result<Self, String>> {
        let BandOptions { level, scale } = options;
        conformal::check_level(level)?;
        let mut per_run = Vec::with_capacity(runs.len());
        for run in runs {
            if !run.dir.join("predictions.csv").is_file() {
                return Ok(Err(format!(
                    "{} holds no held-out predictions (predictions.csv) to calibrate bands on",
                    run.dir.display()
                )));
            }
            per_run.push(held_out(&run.dir)?);
        }
        let folds = runs.len() >= 2 && runs.iter().all(|r| r.spec.split.fold().is_some());
        let points: usize = per_run.iter().map(Vec::len).sum();
        // Each held-out tile's DI against its own run's training tiles, plus β.
        let (scales, beta, cap) = match scale {
            Scale::None => (vec![], 0.0, f64::INFINITY),
            Scale::Di => match calibration_dis(runs)? {
                Ok(dis) => {
                    let all: Vec<f64> = dis.iter().flatten().copied().collect();
                    let Some(beta) = positive_centre(&all) else {
                        return Ok(Err("every calibration tile has DI 0: DI-scaled bands would have no width to scale".into()));
                    };
                    let cap = all.iter().copied().fold(0.0, f64::max);
                    (all.into_iter().map(|d| d + beta).collect(), beta, cap)
                }
                Err(why) => return Ok(Err(why)),
            },
        };
        let calibrator = if folds {
            let calibration = per_run
                .iter()
                .enumerate()
                .flat_map(|(run, tiles)| {
                    tiles.iter().map(move |&(y, p)| Calibration {
                        fold: run,
                        residual: (y - p).abs(),
                    })
                })
                .collect();
            Self {
                method: Method::CvPlus,
                level,
                scale,
                calibration,
                scales,
                beta,
                cap,
                half_width: f64::NAN,
                points,
            }
        } else {
            let (targets, predictions): (Vec<f64>, Vec<f64>) =
                per_run.into_iter().flatten().unzip();
            let half_width = match scale {
                Scale::None => conformal::split_half_width(&targets, &predictions, level),
                Scale::Di => {
                    conformal::scaled_split_quantile(&targets, &predictions, &scales, level)
                }
            };
            let Some(half_width) = half_width else {
                return Ok(Err(format!(
                    "{points} held-out tiles are too few for {:.0} % bands",
                    level * 100.0
                )));
            };
            Self {
                method: Method::Split,
                level,
                scale,
                calibration: vec![],
                scales: vec![],
                beta,
                cap,
                half_width,
                points,
            }
        };
        Ok(Ok(calibrator))
    }

    /// The band (ln scale) of a tile from each run's prediction there and their mean, and (for
    /// DI-scaled bands) each run's DI there and the ensemble's; NaN when there are too few
    /// calibration points.
    pub fn band(&self, per_run: &[f64], mean: f64, per_run_di: &[f64], di: f64) -> (f64, f64) {
        let none = (f64::NAN, f64::NAN);
        match (self.method, self.scale) {
            (Method::CvPlus, Scale::None) => {
                conformal::cv_plus_interval(&self.calibration, per_run, self.level).unwrap_or(none)
            }
            (Method::CvPlus, Scale::Di) => {
                let fold_scales: Vec<f64> = per_run_di
                    .iter()
                    .map(|d| d.min(self.cap) + self.beta)
                    .collect();
                conformal::scaled_cv_plus_interval(
                    &self.calibration,
                    &self.scales,
                    per_run,
                    &fold_scales,
                    self.level,
                )
                .unwrap_or(none)
            }
            (Method::Split, Scale::None) => conformal::split_interval(mean, self.half_width),
            (Method::Split, Scale::Di) => conformal::scaled_split_interval(
                mean,
                self.half_width,
                di.min(self.cap) + self.beta,
            ),
        }
    }
}

/// The median of `values`, or their mean when the median is 0; None when neither is positive.
fn positive_centre(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = *sorted.get(sorted.len() / 2)?;
    let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
    [median, mean]
        .into_iter()
        .find(|v| *v > 0.0 && v.is_finite())
}

/// Per run, the DI of each of its held-out tiles (in `predictions.csv` order) against the run's
/// own area of applicability, from its training city loaded again; `Ok(Err(why))` when a city
/// cannot be loaded (a bundle away from its data).
fn calibration_dis(runs: &[TrainedRun]) -> Result<std::result::Result<Vec<Vec<f64>>, String>> {
    let mut cities: Vec<(String, crate::data::City)> = Vec::new();
    let mut out = Vec::with_capacity(runs.len());
    for run in runs {
        let key = serde_json::to_string(&run.spec.dataset)?;
        if !cities.iter().any(|(k, _)| *k == key) {
            match crate::data::load_city(&run.spec.dataset, &Default::default()) {
                Ok(city) => cities.push((key.clone(), city)),
                Err(e) => {
                    return Ok(Err(format!(
                        "DI-scaled bands score each held-out tile's DI on the training city, which {} cannot load: {e:#}",
                        run.dir.display()
                    )))
                }
            }
        }
        let city = &cities.iter().find(|(k, _)| *k == key).expect("loaded").1;
        let (_, tiles) = super::recorded_tiles(&run.dir, city)?;
        let aoa = run.normalization.applicability.as_ref().with_context(|| {
            format!(
                "run {}: no area-of-applicability reference",
                run.dir.display()
            )
        })?;
        out.push(aoa.index(city, &tiles, &run.modalities()));
    }
    Ok(Ok(out))
}

/// What `predict.json` says of the bands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IntervalSummary {
    pub method: Method,
    pub level: f64,
    /// What the widths follow (absent: nothing, one width up to the models' disagreement).
    #[serde(default, skip_serializing_if = "Scale::is_none")]
    pub scale: Scale,
    /// Held-out tiles the bands are calibrated on.
    pub calibration_points: usize,
    /// Mean band width (ln scale).
    pub mean_width: f64,
    /// On the area's labelled tiles: the share inside their band, overall and inside / outside
    /// the area of applicability, with the tile counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage_in_aoa: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage_outside_aoa: Option<f64>,
    pub labelled_in_aoa: usize,
    pub labelled_outside_aoa: usize,
    /// Median band width (ln) over every mapped tile inside and outside the area of
    /// applicability: what a planner meets where the model knows the inputs and where it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median_width_in_aoa: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median_width_outside_aoa: Option<f64>,
}
