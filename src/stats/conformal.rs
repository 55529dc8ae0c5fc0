//! Conformal prediction intervals from out-of-fold residuals, computed as MAPIE 1.x computes them
//! (`tests/conformal.rs` pins the bounds against MAPIE on the same numbers):
//!
//! - **split conformal** (absolute residuals): ŷ ± q, q the conformal quantile of the
//!   calibration residuals |y − ŷ| at level 1 − α with the finite-sample correction;
//! - **CV+** (Barber et al. 2021, "Predictive inference with the jackknife+"): for a new point x,
//!   the lower bound is the α quantile of μ₋ₖ₍ᵢ₎(x) − Rᵢ and the upper the 1 − α quantile of
//!   μ₋ₖ₍ᵢ₎(x) + Rᵢ over calibration points i, where μ₋ₖ is the model that did not see fold k and
//!   Rᵢ the out-of-fold residual of i.
//!
//! The quantile is MAPIE's: level ⌈a(n + 1)⌉ / n, numpy's `method="lower"`; a level above 1
//! (too few calibration points for the nominal coverage) has no finite bound.

use anyhow::{bail, Result};

/// MAPIE's miscoverage α for a nominal level: 1 − level in decimal, so 0.9 gives exactly 0.1.
pub fn alpha_of(level: f64) -> f64 {
    let text = format!("{level}");
    let decimals = text.split_once('.').map_or(0, |(_, d)| d.len()) as i32;
    let scale = 10f64.powi(decimals);
    let alpha = format!(
        "{:.*}",
        decimals as usize,
        (scale - (level * scale).round()) / scale
    );
    alpha.parse().unwrap_or(1.0 - level)
}

/// Checks a nominal level.
pub fn check_level(level: f64) -> Result<()> {
    if !(level > 0.0 && level < 1.0) {
        bail!("the interval level {level} must lie strictly between 0 and 1");
    }
    Ok(())
}

/// numpy's `quantile(values, q, method="lower")` of ascending `sorted` values.
fn lower_quantile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let index = ((n - 1) as f64 * q).floor() as usize;
    sorted[index.min(n - 1)]
}

/// MAPIE's `_compute_regression_quantile` at level `a` of `values` (not sorted): `None` when
/// ⌈a(n + 1)⌉ > n. `reverse` takes the lower tail: −quantile(−values) at level (1 − 2a) + a.
fn corrected_quantile(values: &[f64], a: f64, reverse: bool) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let (signed, a) = if reverse {
        (-1.0, (1.0 - 2.0 * a) + a)
    } else {
        (1.0, a)
    };
    let level = (a * (n + 1) as f64).ceil() / n as f64;
    if level > 1.0 {
        return None;
    }
    let mut sorted: Vec<f64> = values.iter().map(|v| signed * v).collect();
    sorted.sort_by(f64::total_cmp);
    Some(signed * lower_quantile(&sorted, level))
}

/// The split-conformal half-width q from calibration targets and predictions: the interval of a
/// prediction ŷ is [ŷ − q, ŷ + q]. `None` when there are too few calibration points for `level`
/// (fewer than 1/α − 1).
pub fn split_half_width(targets: &[f64], predictions: &[f64], level: f64) -> Option<f64> {
    let residuals: Vec<f64> = targets
        .iter()
        .zip(predictions)
        .map(|(y, p)| (y - p).abs())
        .collect();
    corrected_quantile(&residuals, 1.0 - alpha_of(level), false)
}

/// [ŷ − q, ŷ + q], as MAPIE adds the signed quantile.
pub fn split_interval(prediction: f64, half_width: f64) -> (f64, f64) {
    (prediction + -half_width, prediction + half_width)
}

/// One calibration point of CV+: the fold whose model did not see it, and its out-of-fold
/// residual |y − μ₋ₖ(xᵢ)|.
#[derive(Debug, Clone, Copy)]
pub struct Calibration {
    pub fold: usize,
    pub residual: f64,
}

/// The CV+ interval of one new point from each fold model's prediction there
/// (`fold_predictions[k]` = μ₋ₖ(x)); `None` when there are too few calibration points.
pub fn cv_plus_interval(
    calibration: &[Calibration],
    fold_predictions: &[f64],
    level: f64,
) -> Option<(f64, f64)> {
    cv_plus_bounds(calibration, fold_predictions, level, |_, c| c.residual)
}

/// CV+'s bounds from each calibration point's half-width `half(i, point)` around the prediction
/// of the fold model that did not see it: the lower bound the ⌊α(n+1)⌋-th smallest of
/// μ₋ₖ(x) − half, the upper the ⌈(1−α)(n+1)⌉-th smallest of μ₋ₖ(x) + half (MAPIE's rule).
fn cv_plus_bounds(
    calibration: &[Calibration],
    fold_predictions: &[f64],
    level: f64,
    half: impl Fn(usize, &Calibration) -> f64,
) -> Option<(f64, f64)> {
    let alpha = alpha_of(level);
    let low: Vec<f64> = calibration
        .iter()
        .enumerate()
        .map(|(i, c)| fold_predictions[c.fold] + -half(i, c))
        .collect();
    let high: Vec<f64> = calibration
        .iter()
        .enumerate()
        .map(|(i, c)| fold_predictions[c.fold] + half(i, c))
        .collect();
    Some((
        corrected_quantile(&low, alpha, true)?,
        corrected_quantile(&high, 1.0 - alpha, false)?,
    ))
}

/// Normalised split conformal (MAPIE's `ResidualNormalisedScore` with a prefit scale): the
/// quantile q of the scores |y − ŷ| / sᵢ of the calibration points, whose interval at a point of
/// scale s is [ŷ − q·s, ŷ + q·s]. Scales must be positive. `None` as [`split_half_width`].
pub fn scaled_split_quantile(
    targets: &[f64],
    predictions: &[f64],
    scales: &[f64],
    level: f64,
) -> Option<f64> {
    let scores: Vec<f64> = targets
        .iter()
        .zip(predictions)
        .zip(scales)
        .map(|((y, p), s)| ((y - p) / s).abs())
        .collect();
    corrected_quantile(&scores, 1.0 - alpha_of(level), false)
}

/// [ŷ − q·s, ŷ + q·s].
pub fn scaled_split_interval(prediction: f64, quantile: f64, scale: f64) -> (f64, f64) {
    let half = quantile * scale;
    (prediction + -half, prediction + half)
}

/// Normalised CV+ (the locally weighted form of Barber et al.'s CV+): calibration point i of
/// fold k has score Rᵢ / sᵢ; at a new point, fold k's model contributes μ₋ₖ(x) ∓ (Rᵢ / sᵢ)·s₋ₖ(x),
/// with s₋ₖ(x) its own scale there (`fold_scales[k]`); the bounds are CV+'s quantiles of these.
/// `scales[i]` is calibration point i's scale.
pub fn scaled_cv_plus_interval(
    calibration: &[Calibration],
    scales: &[f64],
    fold_predictions: &[f64],
    fold_scales: &[f64],
    level: f64,
) -> Option<(f64, f64)> {
    cv_plus_bounds(calibration, fold_predictions, level, |i, c| {
        c.residual / scales[i] * fold_scales[c.fold]
    })
}

/// Whether `target` lies in [low, high].
pub fn covers(target: f64, (low, high): (f64, f64)) -> bool {
    low <= target && target <= high
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_is_the_decimal_complement() {
        assert_eq!(alpha_of(0.9), 0.1);
        assert_eq!(alpha_of(0.95), 0.05);
        assert_eq!(alpha_of(0.8), 0.2);
        assert_eq!(alpha_of(0.975), 0.025);
    }

    /// By hand: 9 residuals 1…9 at 80 %: level ⌈0.8·10⌉/9 = 8/9, index ⌊8·8/9⌋ = 7 → 8.
    #[test]
    fn the_split_quantile_has_the_finite_sample_correction() {
        let targets: Vec<f64> = (1..=9).map(|v| v as f64).collect();
        let predictions = vec![0.0; 9];
        assert_eq!(split_half_width(&targets, &predictions, 0.8), Some(8.0));
        // 90 % needs ⌈0.9·10⌉ = 9 ≤ 9 points: the largest residual.
        assert_eq!(split_half_width(&targets, &predictions, 0.9), Some(9.0));
        // 95 % needs ⌈0.95·10⌉ = 10 > 9: no finite bound.
        assert_eq!(split_half_width(&targets, &predictions, 0.95), None);
        assert_eq!(split_interval(5.0, 8.0), (-3.0, 13.0));
    }

    /// With every fold model predicting the same value, CV+ is split conformal around it.
    #[test]
    fn cv_plus_with_equal_fold_models_is_split_conformal() {
        let residuals = [0.5, 1.5, 0.25, 2.0, 1.0, 0.75, 3.0, 0.1, 1.25];
        let calibration: Vec<Calibration> = residuals
            .iter()
            .enumerate()
            .map(|(i, &r)| Calibration {
                fold: i % 3,
                residual: r,
            })
            .collect();
        let (low, high) = cv_plus_interval(&calibration, &[4.0, 4.0, 4.0], 0.8).unwrap();
        let q = split_half_width(&residuals, &[0.0; 9], 0.8).unwrap();
        assert_eq!((low, high), (4.0 - q, 4.0 + q));
        assert!(covers(4.0 + q, (low, high)) && !covers(4.0 + q + 1e-9, (low, high)));
    }

    /// Unit scales give the unscaled bands exactly; doubling every scale at a point and keeping
    /// the calibration's doubles the half-widths there.
    #[test]
    fn unit_scales_are_the_plain_bands_and_scales_stretch_them() {
        let residuals = [0.5, 1.5, 0.25, 2.0, 1.0, 0.75, 3.0, 0.1, 1.25];
        let calibration: Vec<Calibration> = residuals
            .iter()
            .enumerate()
            .map(|(i, &r)| Calibration {
                fold: i % 3,
                residual: r,
            })
            .collect();
        let ones = [1.0; 9];
        let fold_predictions = [3.0, 4.0, 5.5];
        assert_eq!(
            scaled_cv_plus_interval(&calibration, &ones, &fold_predictions, &[1.0; 3], 0.8),
            cv_plus_interval(&calibration, &fold_predictions, 0.8)
        );
        let q = scaled_split_quantile(&residuals, &[0.0; 9], &ones, 0.8).unwrap();
        assert_eq!(Some(q), split_half_width(&residuals, &[0.0; 9], 0.8));
        let (low, high) = scaled_split_interval(4.0, q, 2.0);
        assert_eq!((4.0 - low, high - 4.0), (2.0 * q, 2.0 * q));
        let (low, high) =
            scaled_cv_plus_interval(&calibration, &ones, &[4.0; 3], &[2.0; 3], 0.8).unwrap();
        assert_eq!((4.0 - low, high - 4.0), (2.0 * q, 2.0 * q));
    }
}
