//! Ridge regression by the normal equations (features standardised on the training rows; the
//! intercept is not penalised). Small dense systems only: a handful of covariates.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// Saved in a baseline run's `model.json` (JSON floats read back bit-identical).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ridge {
    mean: Vec<f64>,
    std: Vec<f64>,
    weights: Vec<f64>,
    intercept: f64,
}

impl Ridge {
    pub fn fit(x: &[Vec<f64>], y: &[f64], lambda: f64) -> Result<Self> {
        let n = x.len();
        if n == 0 || n != y.len() {
            bail!("ridge: {} rows for {} targets", n, y.len());
        }
        if !(lambda >= 0.0 && lambda.is_finite()) {
            bail!("ridge: lambda {lambda} must be ≥ 0");
        }
        let d = x[0].len();
        let mean: Vec<f64> = (0..d)
            .map(|j| x.iter().map(|r| r[j]).sum::<f64>() / n as f64)
            .collect();
        let std: Vec<f64> = (0..d)
            .map(|j| {
                let v = x.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n as f64;
                if v > 1e-12 {
                    v.sqrt()
                } else {
                    1.0
                }
            })
            .collect();
        let z: Vec<Vec<f64>> = x
            .iter()
            .map(|r| (0..d).map(|j| (r[j] - mean[j]) / std[j]).collect())
            .collect();
        let y_mean = y.iter().sum::<f64>() / n as f64;
        // (ZᵀZ + λI) w = Zᵀ(y − ȳ)
        let mut a = vec![vec![0.0; d + 1]; d];
        for (row, &t) in z.iter().zip(y) {
            for i in 0..d {
                for j in 0..d {
                    a[i][j] += row[i] * row[j];
                }
                a[i][d] += row[i] * (t - y_mean);
            }
        }
        for (i, r) in a.iter_mut().enumerate() {
            r[i] += lambda;
        }
        let weights = solve(a)?;
        Ok(Self {
            mean,
            std,
            weights,
            intercept: y_mean,
        })
    }

    pub fn predict(&self, x: &[f64]) -> f64 {
        self.intercept
            + x.iter()
                .enumerate()
                .map(|(j, v)| self.weights[j] * (v - self.mean[j]) / self.std[j])
                .sum::<f64>()
    }
}

/// Gaussian elimination with partial pivoting on an augmented d×(d+1) matrix.
fn solve(mut a: Vec<Vec<f64>>) -> Result<Vec<f64>> {
    let d = a.len();
    for col in 0..d {
        let pivot = (col..d)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap_or(col);
        if a[pivot][col].abs() < 1e-12 {
            bail!("ridge: the covariates are collinear; add lambda > 0");
        }
        a.swap(col, pivot);
        for row in 0..d {
            if row != col {
                let factor = a[row][col] / a[col][col];
                for k in col..=d {
                    a[row][k] -= factor * a[col][k];
                }
            }
        }
    }
    Ok((0..d).map(|i| a[i][d] / a[i][i]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_line_and_shrinks() {
        // y = 2 + 3x exactly: OLS recovers it; ridge shrinks the slope.
        let x: Vec<Vec<f64>> = (0..5).map(|i| vec![i as f64]).collect();
        let y: Vec<f64> = (0..5).map(|i| 2.0 + 3.0 * i as f64).collect();
        let ols = Ridge::fit(&x, &y, 0.0).unwrap();
        assert!((ols.predict(&[10.0]) - 32.0).abs() < 1e-9);
        // Standardised x has ZᵀZ = n = 5, so the slope shrinks by 5/(5+5) = ½.
        let ridge = Ridge::fit(&x, &y, 5.0).unwrap();
        assert!(
            (ridge.predict(&[2.0]) - 8.0).abs() < 1e-9,
            "mean point stays"
        );
        assert!((ridge.predict(&[3.0]) - (8.0 + 1.5)).abs() < 1e-9);
    }
}
