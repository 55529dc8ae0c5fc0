//! What a sampler and a pruner read: the trials so far, each with its parameters, its state and
//! its validation curve.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::space::Value;

/// Which way the objective is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Maximize,
    Minimize,
}

impl Direction {
    /// `a` is better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Direction::Maximize => a > b,
            Direction::Minimize => a < b,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Finished with this objective value.
    Complete(f64),
    /// Stopped early by the pruner; its curve says how far it got.
    Pruned,
    /// Still running (another worker): TPE counts it among the worse trials, as Optuna's
    /// `constant_liar` does, so parallel workers do not all suggest the same point.
    Running,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    /// The order trials were suggested in (0, 1, …).
    pub number: usize,
    pub params: BTreeMap<String, Value>,
    pub state: State,
    /// The objective on the validation split after each epoch (step → value).
    pub curve: BTreeMap<u64, f64>,
}

impl Trial {
    pub fn value(&self) -> Option<f64> {
        match self.state {
            State::Complete(v) => Some(v),
            _ => None,
        }
    }
}
