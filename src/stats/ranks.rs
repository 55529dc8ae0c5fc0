//! Comparing several variants over several datasets (Demšar 2006): mean ranks, the Friedman test
//! and the Nemenyi critical difference.

use super::paired::average_ranks;
use super::special::{chi2_sf, normal_cdf};

/// Per variant (column), its rank in each dataset (row), 1 = best, ties averaged; `higher_is_better`
/// says which way the metric points. Returns each variant's mean rank.
pub fn mean_ranks(table: &[Vec<f64>], higher_is_better: bool) -> Vec<f64> {
    let k = table.first().map_or(0, Vec::len);
    let mut sums = vec![0.0; k];
    for row in table {
        let keyed: Vec<f64> = row
            .iter()
            .map(|&v| if higher_is_better { -v } else { v })
            .collect();
        let (ranks, _) = average_ranks(&keyed);
        for (s, r) in sums.iter_mut().zip(ranks) {
            *s += r;
        }
    }
    sums.iter().map(|s| s / table.len() as f64).collect()
}

/// `scipy.stats.friedmanchisquare` over `table` (rows: datasets, columns: variants; at least 3
/// variants): the tie-corrected statistic and its χ² p-value with k − 1 degrees of freedom.
pub fn friedman(table: &[Vec<f64>]) -> Option<(f64, f64)> {
    let n = table.len() as f64;
    let k = table.first().map_or(0, Vec::len);
    if k < 3 || table.len() < 2 || table.iter().any(|r| r.len() != k) {
        return None;
    }
    let kf = k as f64;
    let mut sums = vec![0.0; k];
    let mut ties = 0.0;
    for row in table {
        let (ranks, groups) = average_ranks(row);
        for (s, r) in sums.iter_mut().zip(ranks) {
            *s += r;
        }
        ties += groups.iter().map(|&t| (t * t * t - t) as f64).sum::<f64>();
    }
    let correction = 1.0 - ties / (n * kf * (kf * kf - 1.0));
    let ssbn: f64 = sums.iter().map(|s| s * s).sum();
    let chi2 = (12.0 / (n * kf * (kf + 1.0)) * ssbn - 3.0 * n * (kf + 1.0)) / correction;
    Some((chi2, chi2_sf(chi2, kf - 1.0)))
}

/// P(range of `k` standard normals < q): k ∫ φ(z) (Φ(z) − Φ(z − q))^(k−1) dz (Simpson's rule).
fn range_cdf(q: f64, k: usize) -> f64 {
    let (lo, hi) = (-9.0, 9.0 + q);
    let steps = 8000;
    let h = (hi - lo) / steps as f64;
    let f = |z: f64| {
        let density = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
        density * (normal_cdf(z) - normal_cdf(z - q)).powi(k as i32 - 1)
    };
    let mut sum = f(lo) + f(hi);
    for i in 1..steps {
        let w = if i % 2 == 1 { 4.0 } else { 2.0 };
        sum += w * f(lo + i as f64 * h);
    }
    k as f64 * sum * h / 3.0
}

/// The studentized range's upper-`alpha` quantile for `k` means and infinite degrees of freedom,
/// over √2: the Nemenyi test's q_α.
pub fn nemenyi_q(k: usize, alpha: f64) -> f64 {
    let (mut lo, mut hi) = (0.0, 10.0);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if range_cdf(mid, k) < 1.0 - alpha {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi) / std::f64::consts::SQRT_2
}

/// The Nemenyi critical difference of mean ranks for `k` variants over `n` datasets at `alpha`.
pub fn nemenyi_cd(k: usize, n: usize, alpha: f64) -> f64 {
    nemenyi_q(k, alpha) * (k as f64 * (k as f64 + 1.0) / (6.0 * n as f64)).sqrt()
}
