//! The Parzen estimator of one parameter, as Optuna's `_ParzenEstimator` builds it (univariate):
//! one kernel per observation plus a prior kernel, mixture weights from Optuna's
//! `default_weights` (flat up to 25 observations, older ones ramped down beyond) and the prior
//! weight, bandwidths from the gaps to the neighbouring observations (`consider_endpoints=False`,
//! magic clip on), truncated to the domain; categorical kernels put weight 1 on the observed
//! choice over a prior spread evenly.

use rand::Rng;

use super::space::{Domain, Numeric};
use super::truncnorm;

/// Optuna's `default_weights(n)`: ones, or for n ≥ 25 a ramp from 1/n over the oldest n − 25.
pub fn default_weights(n: usize) -> Vec<f64> {
    if n < 25 {
        return vec![1.0; n];
    }
    // numpy.linspace(1/n, 1, n - 25), then 25 ones.
    let m = n - 25;
    let start = 1.0 / n as f64;
    let mut w: Vec<f64> = match m {
        0 => vec![],
        1 => vec![start],
        _ => {
            let step = (1.0 - start) / (m - 1) as f64;
            let mut v: Vec<f64> = (0..m).map(|i| start + i as f64 * step).collect();
            v[m - 1] = 1.0;
            v
        }
    };
    w.extend(std::iter::repeat_n(1.0, 25));
    w
}

/// Kernels of a numeric parameter, in the space the sampler works in (ln for `log`).
#[derive(Debug, Clone, PartialEq)]
pub struct NumericKernels {
    pub mus: Vec<f64>,
    pub sigmas: Vec<f64>,
    /// Truncation bounds in the working space (half a step wider for a stepped domain).
    pub low: f64,
    pub high: f64,
    domain: Numeric,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kernels {
    /// Per kernel, a probability per choice.
    Categorical(Vec<Vec<f64>>),
    Numeric(NumericKernels),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Parzen {
    /// Mixture weights, the prior's last, summing to 1.
    pub weights: Vec<f64>,
    pub kernels: Kernels,
}

impl Parzen {
    /// The estimator over `observations` (values; a choice's index for `choice`) in trial order.
    pub fn new(observations: &[f64], domain: &Domain, prior_weight: f64) -> Parzen {
        let n = observations.len();
        let mut weights = if n == 0 {
            vec![1.0]
        } else {
            let mut w = default_weights(n);
            w.push(prior_weight);
            w
        };
        let total: f64 = weights.iter().sum();
        weights.iter_mut().for_each(|w| *w /= total);
        let kernels = match domain {
            Domain::Choice(choices) => {
                Kernels::Categorical(categorical(observations, choices.len(), prior_weight))
            }
            Domain::Numeric(r) => Kernels::Numeric(numeric(observations, r)),
        };
        Parzen { weights, kernels }
    }

    /// `size` draws: a kernel by weight, then a value from it (a choice's index for `choice`),
    /// in the order Optuna draws them (all kernels first, then all values).
    pub fn sample(&self, rng: &mut impl Rng, size: usize) -> Vec<f64> {
        let active = self.pick_kernels(rng, size);
        active.iter().map(|&k| self.draw(k, rng)).collect()
    }

    /// `size` kernels drawn by weight.
    pub fn pick_kernels(&self, rng: &mut impl Rng, size: usize) -> Vec<usize> {
        (0..size).map(|_| pick(&self.weights, rng)).collect()
    }

    /// A value from kernel `k` alone.
    pub fn draw(&self, k: usize, rng: &mut impl Rng) -> f64 {
        match &self.kernels {
            Kernels::Categorical(rows) => {
                let u: f64 = rng.random();
                let mut cum = 0.0;
                let mut index = 0;
                for (j, p) in rows[k].iter().enumerate() {
                    cum += p;
                    // The last cumulative probability counts as exactly 1.
                    if j + 1 < rows[k].len() && cum < u {
                        index = j + 1;
                    }
                }
                index as f64
            }
            Kernels::Numeric(nk) => {
                let (mu, sigma) = (nk.mus[k], nk.sigmas[k]);
                let q: f64 = rng.random();
                let z = truncnorm::ppf(q, (nk.low - mu) / sigma, (nk.high - mu) / sigma);
                nk.external(z * sigma + mu)
            }
        }
    }

    /// ln density (ln mass for a stepped domain or a choice) of kernel `k` alone at `x`.
    pub fn kernel_log_pdf(&self, k: usize, x: f64) -> f64 {
        match &self.kernels {
            // A choice outside the domain has no mass (ln 0), rather than a panic.
            Kernels::Categorical(rows) => rows[k]
                .get(x as usize)
                .filter(|_| x >= 0.0 && x.fract() == 0.0)
                .map_or(f64::NEG_INFINITY, |p| p.ln()),
            Kernels::Numeric(nk) => nk.log_pdf(k, x),
        }
    }

    /// ln density (ln mass for a stepped domain or a choice) of the mixture at value `x`.
    pub fn log_pdf(&self, x: f64) -> f64 {
        let terms: Vec<f64> = (0..self.weights.len())
            .map(|k| self.kernel_log_pdf(k, x) + self.weights[k].ln())
            .collect();
        log_sum_exp(&terms)
    }
}

/// The product of per-parameter estimators built on the same trials (so with the same kernel
/// weights): Optuna's multivariate TPE, where a kernel is drawn once for all parameters.
pub fn joint_log_pdf(dims: &[&Parzen], x: &[f64]) -> f64 {
    let Some(first) = dims.first() else {
        return 0.0;
    };
    let terms: Vec<f64> = (0..first.weights.len())
        .map(|k| {
            dims.iter()
                .zip(x)
                .map(|(d, &xi)| d.kernel_log_pdf(k, xi))
                .sum::<f64>()
                + first.weights[k].ln()
        })
        .collect();
    log_sum_exp(&terms)
}

impl NumericKernels {
    /// A working-space draw as a value of the domain (exp for `log`, on the step grid).
    fn external(&self, t: f64) -> f64 {
        let r = &self.domain;
        let x = if r.log() { t.exp() } else { t };
        match r.step() {
            Some(step) => {
                let snapped = r.lo() + ((x - r.lo()) / step).round_ties_even() * step;
                snapped.clamp(r.lo(), r.hi())
            }
            None => x,
        }
    }

    fn working(&self, x: f64) -> f64 {
        if self.domain.log() {
            x.ln()
        } else {
            x
        }
    }

    fn log_pdf(&self, k: usize, x: f64) -> f64 {
        let (mu, sigma) = (self.mus[k], self.sigmas[k]);
        let (a, b) = ((self.low - mu) / sigma, (self.high - mu) / sigma);
        match self.domain.step() {
            None => truncnorm::logpdf(self.working(x), a, b, mu, sigma),
            Some(step) => {
                let left = self.working(x - step / 2.0);
                let right = self.working(x + step / 2.0);
                truncnorm::log_gauss_mass((left - mu) / sigma, (right - mu) / sigma)
                    - truncnorm::log_gauss_mass(a, b)
            }
        }
    }
}

fn categorical(observations: &[f64], n_choices: usize, prior_weight: f64) -> Vec<Vec<f64>> {
    if observations.is_empty() {
        return vec![vec![1.0 / n_choices as f64; n_choices]];
    }
    let n_kernels = observations.len() + 1;
    let mut rows = vec![vec![prior_weight / n_kernels as f64; n_choices]; n_kernels];
    for (row, &o) in rows.iter_mut().zip(observations) {
        row[o as usize] += 1.0;
    }
    for row in &mut rows {
        let sum: f64 = row.iter().sum();
        if sum != 0.0 {
            row.iter_mut().for_each(|p| *p /= sum);
        }
    }
    rows
}

fn numeric(observations: &[f64], r: &Numeric) -> NumericKernels {
    let (mut low, mut high) = (r.lo(), r.hi());
    if let Some(step) = r.step() {
        low -= step / 2.0;
        high += step / 2.0;
    }
    let mus: Vec<f64> = if r.log() {
        (low, high) = (low.ln(), high.ln());
        observations.iter().map(|x| x.ln()).collect()
    } else {
        observations.to_vec()
    };
    let mut sigmas = bandwidths(&mus, low, high);
    let mut mus = mus;
    mus.push(0.5 * (low + high));
    sigmas.push(high - low);
    NumericKernels {
        mus,
        sigmas,
        low,
        high,
        domain: r.clone(),
    }
}

/// Each kernel's σ: the larger gap to its sorted neighbours (the domain's ends as the outer
/// neighbours, except that the outermost kernels look inward only: `consider_endpoints=False`),
/// clipped to [(high − low) / min(100, n + 2), high − low] (Optuna's magic clip).
fn bandwidths(mus: &[f64], low: f64, high: f64) -> Vec<f64> {
    let n = mus.len();
    if n == 0 {
        return vec![];
    }
    let mut order: Vec<usize> = (0..n).collect();
    // numpy's argsort (quicksort) is not stable, but equal μs get equal σs either way.
    order.sort_by(|&i, &j| mus[i].total_cmp(&mus[j]));
    let mut ends = Vec::with_capacity(n + 2);
    ends.push(low);
    ends.extend(order.iter().map(|&i| mus[i]));
    ends.push(high);
    let mut sorted: Vec<f64> = (1..=n)
        .map(|i| (ends[i] - ends[i - 1]).max(ends[i + 1] - ends[i]))
        .collect();
    if ends.len() >= 4 {
        sorted[0] = ends[2] - ends[1];
        sorted[n - 1] = ends[n] - ends[n - 1];
    }
    let n_kernels = (n + 1) as f64;
    let max_sigma = high - low;
    let min_sigma = (high - low) / 100f64.min(1.0 + n_kernels);
    let mut sigmas = vec![0.0; n];
    for (rank, &i) in order.iter().enumerate() {
        sigmas[i] = sorted[rank].clamp(min_sigma, max_sigma);
    }
    sigmas
}

/// An index drawn with probability `weights[i]`, as numpy's `choice(p=…)`: the first whose
/// cumulative weight exceeds a uniform draw.
fn pick(weights: &[f64], rng: &mut impl Rng) -> usize {
    let total: f64 = weights.iter().sum();
    let u: f64 = rng.random::<f64>() * total;
    let mut cum = 0.0;
    for (i, w) in weights.iter().enumerate() {
        cum += w;
        if cum > u {
            return i;
        }
    }
    weights.len() - 1
}

fn log_sum_exp(terms: &[f64]) -> f64 {
    let mut max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        max = 0.0;
    }
    terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln() + max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_ramp_after_25() {
        assert_eq!(default_weights(3), vec![1.0; 3]);
        let w = default_weights(28);
        assert_eq!(w.len(), 28);
        // linspace(1/28, 1, 3) = [0.0357…, 0.5178…, 1]
        assert!((w[0] - 1.0 / 28.0).abs() < 1e-15);
        assert!((w[1] - (1.0 / 28.0 + 1.0) / 2.0).abs() < 1e-15);
        assert_eq!(&w[2..], &[1.0; 26][..]);
    }

    #[test]
    fn bandwidths_by_hand() {
        // μ = 0.2, 0.5, 0.6 on [0, 1]: inner σ = max gap (0.3 and 0.1 → 0.3); the outer ones look
        // inward only (0.3, 0.1); min σ = 1 / min(100, 5) = 0.2 lifts 0.1 to 0.2.
        let s = bandwidths(&[0.5, 0.2, 0.6], 0.0, 1.0);
        assert_eq!(s.len(), 3);
        for (got, want) in s.iter().zip([0.3, 0.3, 0.2]) {
            assert!((got - want).abs() < 1e-12, "{s:?}");
        }
    }
}
