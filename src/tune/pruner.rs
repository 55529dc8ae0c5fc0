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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn curve(values: &[f64]) -> BTreeMap<u64, f64> {
        values
            .iter()
            .enumerate()
            .map(|(s, v)| (s as u64, *v))
            .collect()
    }

    fn complete(curves: &[&[f64]]) -> Vec<Trial> {
        curves
            .iter()
            .enumerate()
            .map(|(number, c)| Trial {
                number,
                params: BTreeMap::new(),
                state: State::Complete(*c.last().unwrap()),
                curve: curve(c),
            })
            .collect()
    }

    #[test]
    fn median_rule_by_hand() {
        let p = MedianPruner::default();
        // Five complete curves; at step 2 their values are 0.3, 0.5, 0.6, 0.7, 0.9: median 0.6.
        let done = complete(&[
            &[0.1, 0.2, 0.3],
            &[0.2, 0.4, 0.5],
            &[0.3, 0.5, 0.6],
            &[0.4, 0.6, 0.7],
            &[0.5, 0.8, 0.9],
        ]);
        let up = Direction::Maximize;
        // Best so far 0.59 < 0.6: pruned. Best 0.61 (at step 1): kept, though it fell at step 2.
        assert!(p.prune(&curve(&[0.2, 0.3, 0.59]), &done, up));
        assert!(!p.prune(&curve(&[0.2, 0.61, 0.4]), &done, up));
        // Minimising the same numbers: median 0.6, best (lowest) 0.65 is worse: pruned.
        assert!(p.prune(&curve(&[0.7, 0.66, 0.65]), &done, Direction::Minimize));
        assert!(!p.prune(&curve(&[0.7, 0.66, 0.55]), &done, Direction::Minimize));
        // Even count at step 0 (a sixth curve of one step): median of 0.1..0.5 and 0.9 is 0.35.
        let mut six = done.clone();
        six.push(Trial {
            number: 5,
            params: BTreeMap::new(),
            state: State::Complete(0.9),
            curve: curve(&[0.9]),
        });
        assert!(p.prune(&curve(&[0.34]), &six, up));
        assert!(!p.prune(&curve(&[0.36]), &six, up));
    }

    #[test]
    fn startup_warmup_and_interval() {
        let done = complete(&[&[0.5, 0.5], &[0.5, 0.5], &[0.5, 0.5], &[0.5, 0.5]]);
        let bad = curve(&[0.1, 0.1]);
        let up = Direction::Maximize;
        // Four complete trials, five needed.
        assert!(!MedianPruner::default().prune(&bad, &done, up));
        let p = MedianPruner {
            n_startup_trials: 4,
            ..Default::default()
        };
        assert!(p.prune(&bad, &done, up));
        // Step 1 is inside a 2-step warm-up.
        let p = MedianPruner {
            n_startup_trials: 4,
            n_warmup_steps: 2,
            ..Default::default()
        };
        assert!(!p.prune(&bad, &done, up));
        // Every 2nd step: step 1 (after step 0) is not a pruning step.
        let p = MedianPruner {
            n_startup_trials: 4,
            interval_steps: 2,
            ..Default::default()
        };
        assert!(!p.prune(&bad, &done, up));
        assert!(p.prune(&curve(&[0.1]), &done, up));
        // Running and pruned trials do not count towards the median.
        let mut others = done.clone();
        others[0].state = State::Pruned;
        assert!(!MedianPruner {
            n_startup_trials: 4,
            ..Default::default()
        }
        .prune(&bad, &others, up));
        // A curve of NaNs only is pruned; no values at the step: kept.
        let p = MedianPruner {
            n_startup_trials: 4,
            ..Default::default()
        };
        assert!(p.prune(&curve(&[f64::NAN]), &done, up));
        assert!(!p.prune(&curve(&[0.1, 0.1, 0.1]), &done, up));
    }
}
