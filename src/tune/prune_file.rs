//! What a trial run needs to be pruned (issue 31): the pruner, the validation metric it watches,
//! and the curves of the trials before it on the same inner fold. The search writes it beside
//! the trial's spec (`<search>/launch/prune/<run id>.json`), so that a worker process prunes
//! exactly as a run in the search's own process would; the runner reads it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::pruner::MedianPruner;
use super::trial::{Direction, State, Trial};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneFile {
    pub pruner: MedianPruner,
    /// The validation metric of the curves (`r2`, `rmse`, `mae`, `mape`).
    pub metric: String,
    pub direction: Direction,
    /// The finished trials' validation curves (epoch → value) on this inner fold, in trial order.
    pub finished: Vec<BTreeMap<u64, f64>>,
}

impl PruneFile {
    pub fn dir(search_launch: &std::path::Path) -> std::path::PathBuf {
        search_launch.join("prune")
    }

    /// The decision after each validation: true stops the run (pruned).
    pub fn decider(&self) -> impl FnMut(u64, f64) -> bool + use<> {
        let history: Vec<Trial> = self
            .finished
            .iter()
            .enumerate()
            .map(|(number, curve)| Trial {
                number,
                params: Default::default(),
                // The pruner reads complete trials' curves, not their final values.
                state: State::Complete(f64::NAN),
                curve: curve.clone(),
            })
            .collect();
        let (pruner, direction) = (self.pruner, self.direction);
        let mut curve = BTreeMap::new();
        move |epoch, value| {
            curve.insert(epoch, value);
            pruner.prune(&curve, &history, direction)
        }
    }
}
