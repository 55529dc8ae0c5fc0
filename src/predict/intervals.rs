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

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::TrainedRun;
use crate::stats::conformal::{self, Calibration};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    CvPlus,
    Split,
}

/// The calibration of one prediction's bands.
pub struct Calibrator {
    pub method: Method,
    pub level: f64,
    /// CV+: (run index, residual) of every held-out tile of every run.
    calibration: Vec<Calibration>,
    /// Split conformal: the half-width.
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
    pub fn of(runs: &[TrainedRun], level: f64) -> Result<std::result::Result<Self, String>> {
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
                calibration,
                half_width: f64::NAN,
                points,
            }
        } else {
            let (targets, predictions): (Vec<f64>, Vec<f64>) =
                per_run.into_iter().flatten().unzip();
            let Some(half_width) = conformal::split_half_width(&targets, &predictions, level)
            else {
                return Ok(Err(format!(
                    "{points} held-out tiles are too few for {:.0} % bands",
                    level * 100.0
                )));
            };
            Self {
                method: Method::Split,
                level,
                calibration: vec![],
                half_width,
                points,
            }
        };
        Ok(Ok(calibrator))
    }

    /// The band (ln scale) of a tile from each run's prediction there and their mean; NaN when
    /// there are too few calibration points.
    pub fn band(&self, per_run: &[f64], mean: f64) -> (f64, f64) {
        match self.method {
            Method::CvPlus => conformal::cv_plus_interval(&self.calibration, per_run, self.level)
                .unwrap_or((f64::NAN, f64::NAN)),
            Method::Split => conformal::split_interval(mean, self.half_width),
        }
    }
}

/// What `predict.json` says of the bands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IntervalSummary {
    pub method: Method,
    pub level: f64,
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
}
