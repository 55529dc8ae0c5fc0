//! Regression metrics over a whole split, from sums over every tile (never means of batch values).
//!
//! All metrics are on the log scale the model predicts (`ln(emission)`), as the authors' script
//! reports them. MAPE is a fraction (not ×100) over the tiles whose target is not 0, relative to
//! the log target, again as the script computes it.

use serde::{Deserialize, Serialize};

/// Every metric by name, and whether higher is better.
pub const METRICS: [(&str, bool); 4] = [
    ("r2", true),
    ("rmse", false),
    ("mae", false),
    ("mape", false),
];

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub r2: f64,
    pub rmse: f64,
    pub mae: f64,
    pub mape: f64,
    /// Number of tiles the metrics were computed over.
    pub n: usize,
}

impl Metrics {
    /// Computes the metrics of `predicted` against `target` (same length, at least one tile).
    ///
    /// R² is `1 - SS_res / SS_tot`; it is `NaN` when every target is equal (SS_tot = 0), which is
    /// what a researcher should see rather than a made-up number.
    pub fn compute(target: &[f64], predicted: &[f64]) -> Metrics {
        assert_eq!(
            target.len(),
            predicted.len(),
            "metrics need one prediction per target"
        );
        let n = target.len();
        if n == 0 {
            return Metrics {
                r2: f64::NAN,
                rmse: f64::NAN,
                mae: f64::NAN,
                mape: f64::NAN,
                n,
            };
        }
        let mean = target.iter().sum::<f64>() / n as f64;
        let (mut ss_res, mut ss_tot, mut abs_sum) = (0.0, 0.0, 0.0);
        let (mut ape_sum, mut ape_n) = (0.0, 0usize);
        for (&y, &p) in target.iter().zip(predicted) {
            let e = y - p;
            ss_res += e * e;
            ss_tot += (y - mean) * (y - mean);
            abs_sum += e.abs();
            if y != 0.0 {
                ape_sum += (e / y).abs();
                ape_n += 1;
            }
        }
        Metrics {
            r2: 1.0 - ss_res / ss_tot,
            rmse: (ss_res / n as f64).sqrt(),
            mae: abs_sum / n as f64,
            mape: if ape_n == 0 {
                f64::NAN
            } else {
                ape_sum / ape_n as f64
            },
            n,
        }
    }

    /// `(name, value)` pairs in a fixed order, for logs and tables.
    pub fn named(&self) -> [(&'static str, f64); 4] {
        [
            ("r2", self.r2),
            ("rmse", self.rmse),
            ("mae", self.mae),
            ("mape", self.mape),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_values() {
        // targets 1, 2, 3, 4 (mean 2.5, SS_tot = 5); predictions 1.5, 2, 2, 4
        // errors -0.5, 0, 1, 0: SS_res = 1.25, |e| sum = 1.5, |e/y| = 0.5, 0, 1/3, 0
        let m = Metrics::compute(&[1.0, 2.0, 3.0, 4.0], &[1.5, 2.0, 2.0, 4.0]);
        assert!((m.r2 - 0.75).abs() < 1e-12);
        assert!((m.rmse - (1.25f64 / 4.0).sqrt()).abs() < 1e-12);
        assert!((m.mae - 0.375).abs() < 1e-12);
        assert!((m.mape - (0.5 + 1.0 / 3.0) / 4.0).abs() < 1e-12);
        assert_eq!(m.n, 4);
    }

    #[test]
    fn mape_skips_zero_targets() {
        let m = Metrics::compute(&[0.0, 2.0], &[1.0, 1.0]);
        assert!((m.mape - 0.5).abs() < 1e-12);
        assert!((m.mae - 1.0).abs() < 1e-12);
    }

    #[test]
    fn perfect_and_mean_predictions() {
        let y = [3.0, 5.0, 7.0];
        assert_eq!(Metrics::compute(&y, &y).r2, 1.0);
        assert!(Metrics::compute(&y, &[5.0, 5.0, 5.0]).r2.abs() < 1e-12);
        assert!(Metrics::compute(&[2.0, 2.0], &[2.0, 2.0]).r2.is_nan());
    }
}
