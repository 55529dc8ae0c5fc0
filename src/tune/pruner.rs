//! Median pruning of validation curves, as Optuna's `MedianPruner` decides: after
//! `n_startup_trials` complete trials and `n_warmup_steps` steps, at every `interval_steps`-th
//! step a trial stops when its best value so far is worse than the median of the complete
//! trials' values at the same step (NaNs ignored; fewer than `n_min_trials` values there: go on).

use serde::{Deserialize, Serialize};

use super::trial::{Direction, State, Trial};

/// `search.pruning.median`; Optuna's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MedianPruner {
    #[serde(default = "five")]
    pub n_startup_trials: usize,
    #[serde(default)]
    pub n_warmup_steps: u64,
    #[serde(default = "one")]
    pub interval_steps: u64,
    #[serde(default = "one_usize")]
    pub n_min_trials: usize,
}

fn five() -> usize {
    5
}
fn one() -> u64 {
    1
}
fn one_usize() -> usize {
    1
}

impl Default for MedianPruner {
    fn default() -> Self {
        MedianPruner {
            n_startup_trials: 5,
            n_warmup_steps: 0,
            interval_steps: 1,
            n_min_trials: 1,
        }
    }
}

impl MedianPruner {
    /// Problems with the settings, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.interval_steps == 0 {
            out.push("search.pruning.median.interval_steps: 0; must be at least 1".into());
        }
        if self.n_min_trials == 0 {
            out.push("search.pruning.median.n_min_trials: 0; must be at least 1".into());
        }
        out
    }

    /// Whether to stop a trial whose curve so far is `curve` (its last step the one just
    /// reported), given the other trials.
    pub fn prune(
        &self,
        curve: &std::collections::BTreeMap<u64, f64>,
        history: &[Trial],
        direction: Direction,
    ) -> bool {
        let complete: Vec<&Trial> = history
            .iter()
            .filter(|t| matches!(t.state, State::Complete(_)))
            .collect();
        if complete.is_empty() || complete.len() < self.n_startup_trials {
            return false;
        }
        let Some((&step, _)) = curve.iter().next_back() else {
            return false;
        };
        if step < self.n_warmup_steps {
            return false;
        }
        // Only the first reported step at or past each pruning step is judged.
        let interval = self.interval_steps.max(1);
        let nearest = (step - self.n_warmup_steps) / interval * interval + self.n_warmup_steps;
        let second_last = curve.keys().filter(|&&s| s != step).max();
        if second_last.is_some_and(|&s| s >= nearest) {
            return false;
        }
        let values: Vec<f64> = curve.values().copied().filter(|v| !v.is_nan()).collect();
        if values.is_empty() {
            return true;
        }
        let best = match direction {
            Direction::Maximize => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Direction::Minimize => values.iter().copied().fold(f64::INFINITY, f64::min),
        };
        let mut at_step: Vec<f64> = complete
            .iter()
            .filter_map(|t| t.curve.get(&step).copied())
            .collect();
        let present = at_step.len();
        at_step.retain(|v| !v.is_nan());
        if present < self.n_min_trials || at_step.is_empty() {
            return false;
        }
        let m = median(&mut at_step);
        direction.better(m, best)
    }
}

/// numpy's 50th percentile (linear interpolation): the middle value, or the mean of the two.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        0.5 * (values[n / 2 - 1] + values[n / 2])
    }
}
