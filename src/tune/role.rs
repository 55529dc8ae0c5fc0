//! What a run is to a search, recorded in its resolved spec (so in its run id and its records):
//! one trial on one inner fold, or the chosen setting refitted on an outer fold.

use serde::{Deserialize, Serialize};

use super::sampler::Params;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case", deny_unknown_fields)]
pub enum Tuning {
    /// Trial `trial` of the search, scored on its inner test fold; never a row of the tables.
    Trial { trial: usize, params: Params },
    /// The best trial's setting, trained on the outer fold's training tiles and tested on its
    /// test tiles: a row of the tables like any variant's run.
    Refit {
        params: Params,
        /// Which trial was best, of how many that finished.
        best_trial: usize,
        trials: usize,
        /// The objective (`metric` on the inner test folds, averaged over them) of the best
        /// trial: what a search reports when it is not nested.
        inner_best: f64,
        /// The objective's metric (`r2`, `rmse`, `mae`, `mape`).
        metric: String,
    },
}

impl Tuning {
    pub fn params(&self) -> &Params {
        match self {
            Tuning::Trial { params, .. } | Tuning::Refit { params, .. } => params,
        }
    }

    pub fn is_trial(&self) -> bool {
        matches!(self, Tuning::Trial { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tune::Value;

    #[test]
    fn round_trips_through_yaml() {
        let mut params = Params::new();
        params.insert("train.lr".into(), Value::Float(0.003));
        params.insert("model.neighbourhood".into(), Value::Int(2));
        params.insert("model.clip_covariates".into(), Value::Bool(true));
        for t in [
            Tuning::Trial {
                trial: 3,
                params: params.clone(),
            },
            Tuning::Refit {
                params,
                best_trial: 1,
                trials: 8,
                inner_best: 0.61,
                metric: "r2".into(),
            },
        ] {
            let text = serde_norway::to_string(&t).unwrap();
            let back: Tuning = serde_norway::from_str(&text).unwrap();
            assert_eq!(back, t, "{text}");
        }
    }
}
