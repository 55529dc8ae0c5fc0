//! Paired comparisons of two variants over pairs of runs (same dataset, seed and fold): the paired
//! t-test (with the Nadeau–Bengio correction when the pairs are cross-validation folds that share
//! training data), the Wilcoxon signed-rank test as SciPy computes it, a seeded bootstrap
//! confidence interval, the effect size and the pairs needed for 80 % power.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::special::{nct_cdf, normal_cdf, t_critical, t_two_sided};

/// A paired t-test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TTest {
    pub t: f64,
    pub df: f64,
    pub p: f64,
}

/// `scipy.stats.ttest_rel` on the differences `d` (two-sided). With `test_train_ratio`
/// (n_test / n_train of the folds), Nadeau & Bengio's corrected resampled t-test: the variance
/// of the mean is (1/J + n_test/n_train)·s² instead of s²/J, because folds share training tiles.
/// NaN for fewer than two pairs, or none varying with a zero mean.
pub fn paired_t(d: &[f64], test_train_ratio: Option<f64>) -> TTest {
    let n = d.len() as f64;
    if d.len() < 2 {
        return TTest {
            t: f64::NAN,
            df: n - 1.0,
            p: f64::NAN,
        };
    }
    let m = mean(d);
    let var = d.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    let scale = match test_train_ratio {
        Some(r) => 1.0 / n + r,
        None => 1.0 / n,
    };
    let t = m / (var * scale).sqrt();
    let p = if t.is_nan() {
        f64::NAN
    } else {
        t_two_sided(t, n - 1.0)
    };
    TTest { t, df: n - 1.0, p }
}

/// A Wilcoxon signed-rank test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Wilcoxon {
    /// min(R+, R−), as SciPy reports for a two-sided test.
    pub statistic: f64,
    pub p: f64,
    /// `exact` (no ties or zeros, n ≤ 50), `permutation` (every sign flip, n ≤ 13 with ties or
    /// zeros) or `asymptotic` (the normal approximation with the tie correction).
    pub method: &'static str,
}

/// `scipy.stats.wilcoxon(d)` with its defaults (zeros dropped, no continuity correction,
/// two-sided, `method='auto'`); None when every difference is zero.
pub fn wilcoxon(d: &[f64]) -> Option<Wilcoxon> {
    let nonzero: Vec<f64> = d.iter().copied().filter(|&x| x != 0.0).collect();
    let n = nonzero.len();
    if n == 0 {
        return None;
    }
    let abs: Vec<f64> = nonzero.iter().map(|x| x.abs()).collect();
    let (ranks, ties) = average_ranks(&abs);
    let r_plus: f64 = nonzero
        .iter()
        .zip(&ranks)
        .filter(|(x, _)| **x > 0.0)
        .map(|(_, r)| r)
        .sum();
    let total = n as f64 * (n as f64 + 1.0) / 2.0;
    let statistic = r_plus.min(total - r_plus);
    let has_ties = ties.iter().any(|&t| t > 1);
    let zeros = nonzero.len() < d.len();
    let (p, method) = if d.len() > 50 {
        (asymptotic(r_plus, n, &ties), "asymptotic")
    } else if !has_ties && !zeros {
        (exact(r_plus, n), "exact")
    } else if d.len() <= 13 {
        (sign_flips(r_plus, &ranks), "permutation")
    } else {
        (asymptotic(r_plus, n, &ties), "asymptotic")
    };
    Some(Wilcoxon {
        statistic,
        p,
        method,
    })
}

/// The exact null distribution of R+ (integer ranks 1..n): 2·min(P(R+ ≤ r), P(R+ ≥ r)).
fn exact(r_plus: f64, n: usize) -> f64 {
    let max = n * (n + 1) / 2;
    let mut counts = vec![0f64; max + 1];
    counts[0] = 1.0;
    for k in 1..=n {
        for s in (k..=max).rev() {
            counts[s] += counts[s - k];
        }
    }
    let all = 2f64.powi(n as i32);
    let r = r_plus.round() as usize;
    let below: f64 = counts[..=r].iter().sum::<f64>() / all;
    let above: f64 = counts[r..].iter().sum::<f64>() / all;
    (2.0 * below.min(above)).min(1.0)
}

/// Every assignment of signs to the (average) ranks: the exact permutation distribution.
fn sign_flips(r_plus: f64, ranks: &[f64]) -> f64 {
    let n = ranks.len();
    let gamma = (f64::EPSILON * 100.0 * r_plus).abs();
    let (mut below, mut above) = (0u64, 0u64);
    for signs in 0u64..(1 << n) {
        let r: f64 = (0..n)
            .filter(|i| signs >> i & 1 == 1)
            .map(|i| ranks[i])
            .sum();
        below += (r <= r_plus + gamma) as u64;
        above += (r >= r_plus - gamma) as u64;
    }
    let all = (1u64 << n) as f64;
    (2.0 * (below as f64 / all).min(above as f64 / all)).min(1.0)
}

/// The normal approximation with the tie correction, no continuity correction.
fn asymptotic(r_plus: f64, n: usize, ties: &[usize]) -> f64 {
    let n = n as f64;
    let mean = n * (n + 1.0) / 4.0;
    let tie: f64 = ties.iter().map(|&t| (t * t * t - t) as f64).sum();
    let se = ((n * (n + 1.0) * (2.0 * n + 1.0) - tie / 2.0) / 24.0).sqrt();
    let z = (r_plus - mean) / se;
    2.0 * normal_cdf(-z.abs())
}

/// Average ranks (1-based, ties share their mean rank) and the size of each tie group.
pub fn average_ranks(values: &[f64]) -> (Vec<f64>, Vec<usize>) {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut groups = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        let rank = (start + end + 1) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        groups.push(end - start);
        start = end;
    }
    (ranks, groups)
}

/// A percentile bootstrap confidence interval of the mean of `d` (`level`, e.g. 0.95), from
/// `resamples` seeded resamples.
pub fn bootstrap_ci(d: &[f64], level: f64, resamples: usize, seed: u64) -> (f64, f64) {
    if d.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = d.len();
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| d[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((means.len() - 1) as f64 * q).round() as usize];
    let tail = (1.0 - level) / 2.0;
    (at(tail), at(1.0 - tail))
}

/// Cohen's d_z: the mean difference over the differences' standard deviation (n − 1).
pub fn effect_size(d: &[f64]) -> f64 {
    if d.len() < 2 {
        return f64::NAN;
    }
    let m = mean(d);
    let sd = (d.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (d.len() as f64 - 1.0)).sqrt();
    m / sd
}

/// The power of a two-sided paired t-test at level `alpha` with `n` pairs and effect `dz`; with
/// `test_train_ratio`, of the Nadeau–Bengio corrected test (noncentrality d_z / √(1/n + ratio)).
pub fn power(dz: f64, n: usize, alpha: f64, test_train_ratio: Option<f64>) -> f64 {
    let df = n as f64 - 1.0;
    let crit = t_critical(alpha, df);
    let delta = dz / (1.0 / n as f64 + test_train_ratio.unwrap_or(0.0)).sqrt();
    1.0 - nct_cdf(crit, df, delta) + nct_cdf(-crit, df, delta)
}

/// The fewest pairs (≥ 2) at which the (corrected) paired t-test at `alpha` reaches `target`
/// power for an effect of size `dz`; None for no effect, or beyond 100,000 pairs (with the
/// correction, more folds of the same data add little: the power levels off below the target
/// when d_z / √ratio is small).
pub fn pairs_for_power(
    dz: f64,
    alpha: f64,
    target: f64,
    test_train_ratio: Option<f64>,
) -> Option<usize> {
    if !dz.is_finite() || dz == 0.0 {
        return None;
    }
    let power = |n: usize| power(dz, n, alpha, test_train_ratio);
    let mut hi = 2;
    while power(hi) < target {
        hi *= 2;
        if hi > 100_000 {
            return None;
        }
    }
    let mut lo = hi / 2;
    if lo < 2 {
        return Some(hi);
    }
    // power(lo) < target ≤ power(hi); power grows with n.
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if power(mid) >= target {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// Holm's step-down adjustment of `p` (NaN stays NaN and does not count as a test).
pub fn holm(p: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| !p[i].is_nan()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let m = order.len();
    let mut adjusted = vec![f64::NAN; p.len()];
    let mut running = 0.0f64;
    for (j, &i) in order.iter().enumerate() {
        running = running.max(((m - j) as f64 * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

pub(crate) fn mean(d: &[f64]) -> f64 {
    d.iter().sum::<f64>() / d.len() as f64
}
