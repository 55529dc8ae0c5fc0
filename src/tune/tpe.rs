//! Optuna's `TPESampler` in its default, univariate form: after `n_startup_trials` random
//! trials, the finished trials are split into the γ(n) = min(⌈0.1 n⌉, 25) best ("below") and the
//! rest ("above"; running trials join them, as Optuna's default `constant_liar` does); each
//! parameter gets a Parzen estimator per group ([`super::parzen`]), `n_ei_candidates` draws from
//! the "below" estimator, and the draw with the largest ln l(x) − ln g(x) wins. With
//! `multivariate` (Optuna 5's default for one objective), one product estimator over every
//! parameter instead: a kernel is drawn once for all of them, and l and g are joint densities.

use anyhow::{bail, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::parzen::{joint_log_pdf, Parzen};
use super::space::{Domain, Space, Value};
use super::trial::{Direction, State, Trial};

/// The TPE knobs a spec may set; Optuna's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpeOptions {
    #[serde(default = "default_startup")]
    pub n_startup_trials: usize,
    #[serde(default = "default_candidates")]
    pub n_ei_candidates: usize,
    #[serde(default)]
    pub multivariate: bool,
}

fn default_startup() -> usize {
    10
}
fn default_candidates() -> usize {
    24
}

impl Default for TpeOptions {
    fn default() -> Self {
        TpeOptions {
            n_startup_trials: default_startup(),
            n_ei_candidates: default_candidates(),
            multivariate: false,
        }
    }
}

/// Optuna's prior weight (fixed since 4.9).
pub const PRIOR_WEIGHT: f64 = 1.0;

/// How many of n finished trials form the "below" group.
pub fn gamma(n: usize) -> usize {
    n.div_ceil(10).min(25)
}

/// The "below" (best γ(n)) and "above" trials, each in trial order. Complete trials rank by
/// value; if γ(n) exceeds them, pruned trials fill up, deepest curve first, then by their last
/// value (a NaN last); trials still running are always "above".
pub fn split(history: &[Trial], direction: Direction) -> (Vec<&Trial>, Vec<&Trial>) {
    let n = history.iter().filter(|t| t.state != State::Running).count();
    let mut n_below = gamma(n);
    let mut complete: Vec<&Trial> = history.iter().filter(|t| t.value().is_some()).collect();
    let sign = match direction {
        Direction::Minimize => 1.0,
        Direction::Maximize => -1.0,
    };
    // Stable, as Python's sorted: ties keep trial order.
    complete.sort_by(|a, b| {
        let (x, y) = (a.value().unwrap_or(0.0), b.value().unwrap_or(0.0));
        (sign * x).total_cmp(&(sign * y))
    });
    let mut pruned: Vec<&Trial> = history
        .iter()
        .filter(|t| t.state == State::Pruned)
        .collect();
    pruned.sort_by(|a, b| {
        pruned_score(a, sign)
            .partial_cmp(&pruned_score(b, sign))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let (mut below, mut above) = (Vec::new(), Vec::new());
    for group in [complete, pruned] {
        let k = n_below.min(group.len());
        below.extend_from_slice(&group[..k]);
        above.extend_from_slice(&group[k..]);
        n_below -= k;
    }
    above.extend(history.iter().filter(|t| t.state == State::Running));
    below.sort_by_key(|t| t.number);
    above.sort_by_key(|t| t.number);
    (below, above)
}

/// Optuna's `_get_pruned_trial_score`: (−last step, last value signed so lower is better).
fn pruned_score(t: &Trial, sign: f64) -> (f64, f64) {
    match t.curve.iter().next_back() {
        Some((&step, &v)) if v.is_nan() => (-(step as f64), f64::INFINITY),
        Some((&step, &v)) => (-(step as f64), sign * v),
        None => (1.0, 0.0),
    }
}

/// The sampler's number for a trial's value of `key` (a choice's index for `choice`).
pub fn internal(key: &str, domain: &Domain, trial: &Trial) -> Result<Option<f64>> {
    let Some(v) = trial.params.get(key) else {
        return Ok(None);
    };
    let x = match (domain, v) {
        (Domain::Choice(choices), v) => choices.iter().position(|c| c == v).map(|i| i as f64),
        (Domain::Numeric(_), Value::Int(i)) => Some(*i as f64),
        (Domain::Numeric(_), Value::Float(x)) => Some(*x),
        _ => None,
    };
    match x {
        Some(x) => Ok(Some(x)),
        None => bail!(
            "search.space.{key}: trial {} has {key} = {v}, which is not in the space (was the space changed after trials ran?)",
            trial.number
        ),
    }
}

/// The "below" and "above" estimators of one parameter.
pub fn estimators(
    key: &str,
    domain: &Domain,
    history: &[Trial],
    direction: Direction,
) -> Result<(Parzen, Parzen)> {
    let (below, above) = split(history, direction);
    let obs = |group: &[&Trial]| -> Result<Vec<f64>> {
        let mut out = Vec::new();
        for t in group {
            if let Some(x) = internal(key, domain, t)? {
                out.push(x);
            }
        }
        Ok(out)
    };
    Ok((
        Parzen::new(&obs(&below)?, domain, PRIOR_WEIGHT),
        Parzen::new(&obs(&above)?, domain, PRIOR_WEIGHT),
    ))
}

/// ln l(x) − ln g(x) at each candidate: what TPE maximises.
pub fn acquisition(below: &Parzen, above: &Parzen, candidates: &[f64]) -> Vec<f64> {
    candidates
        .iter()
        .map(|&x| below.log_pdf(x) - above.log_pdf(x))
        .collect()
}

/// TPE's next value of one parameter (internal form), once the startup trials are done.
pub fn suggest(
    key: &str,
    domain: &Domain,
    history: &[Trial],
    direction: Direction,
    options: &TpeOptions,
    rng: &mut impl Rng,
) -> Result<f64> {
    let (below, above) = estimators(key, domain, history, direction)?;
    let candidates = below.sample(rng, options.n_ei_candidates.max(1));
    let scores = acquisition(&below, &above, &candidates);
    // The first largest, as numpy's argmax.
    let mut best = 0;
    for (i, s) in scores.iter().enumerate() {
        if *s > scores[best] {
            best = i;
        }
    }
    Ok(candidates[best])
}

/// Multivariate TPE's next values of every parameter (internal form, in key order): one
/// estimator per parameter over the trials that have them all, kernels drawn jointly.
pub fn suggest_joint(
    space: &Space,
    history: &[Trial],
    direction: Direction,
    options: &TpeOptions,
    rng: &mut impl Rng,
) -> Result<Vec<f64>> {
    let (below, above) = joint_estimators(space, history, direction)?;
    let l: Vec<&Parzen> = below.iter().collect();
    let g: Vec<&Parzen> = above.iter().collect();
    let Some(first) = l.first() else {
        return Ok(vec![]);
    };
    let active = first.pick_kernels(rng, options.n_ei_candidates.max(1));
    // Optuna draws parameter by parameter, all candidates at once.
    let columns: Vec<Vec<f64>> = l
        .iter()
        .map(|d| active.iter().map(|&k| d.draw(k, rng)).collect())
        .collect();
    let candidates: Vec<Vec<f64>> = (0..active.len())
        .map(|i| columns.iter().map(|c| c[i]).collect())
        .collect();
    let scores = joint_acquisition(&l, &g, &candidates);
    let mut best = 0;
    for (i, s) in scores.iter().enumerate() {
        if *s > scores[best] {
            best = i;
        }
    }
    Ok(candidates[best].clone())
}

/// The "below" and "above" estimators of every parameter (key order), over the trials that
/// have all of them.
pub fn joint_estimators(
    space: &Space,
    history: &[Trial],
    direction: Direction,
) -> Result<(Vec<Parzen>, Vec<Parzen>)> {
    let (below, above) = split(history, direction);
    let build = |group: &[&Trial]| -> Result<Vec<Parzen>> {
        let mut columns: Vec<Vec<f64>> = vec![Vec::new(); space.len()];
        for t in group {
            let mut row = Vec::with_capacity(space.len());
            for (key, domain) in space.params() {
                match internal(key, domain, t)? {
                    Some(x) => row.push(x),
                    None => break,
                }
            }
            if row.len() == space.len() {
                columns.iter_mut().zip(row).for_each(|(c, x)| c.push(x));
            }
        }
        Ok(space
            .params()
            .zip(&columns)
            .map(|((_, domain), obs)| Parzen::new(obs, domain, PRIOR_WEIGHT))
            .collect())
    };
    Ok((build(&below)?, build(&above)?))
}

/// Joint ln l(x) − ln g(x) at each candidate (one value per parameter, key order).
pub fn joint_acquisition(
    below: &[&Parzen],
    above: &[&Parzen],
    candidates: &[Vec<f64>],
) -> Vec<f64> {
    candidates
        .iter()
        .map(|x| joint_log_pdf(below, x) - joint_log_pdf(above, x))
        .collect()
}

/// Whether TPE is past its random start: Optuna counts complete and pruned trials.
pub fn started(history: &[Trial], options: &TpeOptions) -> bool {
    history.iter().filter(|t| t.state != State::Running).count() >= options.n_startup_trials
}
