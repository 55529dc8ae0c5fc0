//! The `search:` section of a spec: what to search over, how, for how many trials, judged by
//! which validation metric, pruned or not, on how many inner spatial folds. Parsed by serde
//! (unknown keys rejected), then checked once into a [`Search`] whose parts cannot be invalid.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::pruner::MedianPruner;
use super::sampler::{Sampler, SamplerConfig};
use super::space::{nearest, Space};
use super::trial::Direction;
use crate::checked::Params;
use crate::metrics::METRICS;

/// `search:` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchConfig {
    /// Dotted spec key → expression (`log(interval(1e-4, 1e-2))`, see [`super::space`]).
    pub space: BTreeMap<String, String>,
    #[serde(default)]
    pub sampler: SamplerConfig,
    /// The budget: trials per search.
    pub trials: usize,
    #[serde(default)]
    pub objective: ObjectiveConfig,
    #[serde(default)]
    pub pruning: PruningConfig,
    /// Spatial folds of the outer training tiles the search is scored on.
    #[serde(default = "default_inner_folds")]
    pub inner_folds: usize,
}

fn default_inner_folds() -> usize {
    3
}

/// `search.objective`: a validation metric (`valid_r2`, `valid_rmse`, `valid_mae`,
/// `valid_mape`) and its direction (default: the metric's better side).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectiveConfig {
    #[serde(default = "default_metric")]
    pub metric: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
}

fn default_metric() -> String {
    "valid_r2".into()
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        ObjectiveConfig {
            metric: default_metric(),
            direction: None,
        }
    }
}

/// `search.pruning`: `none` (the default) or `{median: {...}}`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum PruningConfig {
    #[default]
    None,
    Median(MedianPruner),
}

impl Serialize for PruningConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            PruningConfig::None => s.serialize_str("none"),
            PruningConfig::Median(m) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("median", m)?;
                map.end()
            }
        }
    }
}

// By hand: serde's externally tagged enums want YAML tags (`!median`) from serde_norway.
impl<'de> Deserialize<'de> for PruningConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = PruningConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`none` or `{median: {...}}`")
            }
            fn visit_str<E: serde::de::Error>(
                self,
                v: &str,
            ) -> std::result::Result<Self::Value, E> {
                match v {
                    "none" => Ok(PruningConfig::None),
                    "median" => Ok(PruningConfig::Median(MedianPruner::default())),
                    _ => Err(E::unknown_variant(v, &["none", "median"])),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                use serde::de::Error;
                let Some(key) = map.next_key::<String>()? else {
                    return Err(A::Error::invalid_length(0, &self));
                };
                if key != "median" {
                    return Err(A::Error::unknown_variant(&key, &["none", "median"]));
                }
                let m: Option<MedianPruner> = map.next_value()?;
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(A::Error::unknown_field(&extra, &["median"]));
                }
                Ok(PruningConfig::Median(m.unwrap_or_default()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// More trials or folds than this is a typo (each is a run).
const MAX_TRIALS: usize = 100_000;
const MAX_FOLDS: usize = 1000;

/// A checked `search:` section.
#[derive(Debug, Clone)]
pub struct Search {
    pub space: Space,
    pub sampler: Sampler,
    pub trials: usize,
    /// The metric's name in [`crate::metrics::Metrics::named`] (`r2`, …), scored on validation.
    pub metric: &'static str,
    pub direction: Direction,
    pub pruner: Option<MedianPruner>,
    pub inner_folds: usize,
}

impl SearchConfig {
    /// Checks every part; the error lists every problem, each naming its key.
    pub fn resolve(&self) -> Result<Search> {
        let mut problems = Vec::new();
        if self.trials == 0 {
            problems.push("search.trials: 0; a search needs at least 1 trial".to_string());
        } else if self.trials > MAX_TRIALS {
            problems.push(format!(
                "search.trials: {}; at most {MAX_TRIALS} (each trial is a run per inner fold)",
                self.trials
            ));
        }
        if self.inner_folds < 2 || self.inner_folds > MAX_FOLDS {
            problems.push(format!(
                "search.inner_folds: {}; between 2 and {MAX_FOLDS}",
                self.inner_folds
            ));
        }
        let objective = self.objective();
        if let Err(e) = &objective {
            problems.push(e.clone());
        }
        let pruner = match self.pruning {
            PruningConfig::None => None,
            PruningConfig::Median(m) => {
                problems.extend(m.problems());
                Some(m)
            }
        };
        let space = Space::parse(&self.space);
        let sampler = match &space {
            Ok(space) => match Sampler::new(&self.sampler, space) {
                Ok(s) => {
                    if let Some(n) = s.grid_size().filter(|&n| self.trials > n) {
                        problems.push(format!(
                            "search.trials: {}; the grid has only {n} points",
                            self.trials
                        ));
                    }
                    Some(s)
                }
                Err(e) => {
                    problems.push(e.to_string());
                    None
                }
            },
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        };
        match (space, sampler, objective) {
            (Ok(space), Some(sampler), Ok((metric, direction))) if problems.is_empty() => {
                Ok(Search {
                    space,
                    sampler,
                    trials: self.trials,
                    metric,
                    direction,
                    pruner,
                    inner_folds: self.inner_folds,
                })
            }
            _ => bail!("{}", problems.join("\n")),
        }
    }

    /// The metric's short name and the direction, or the problem naming the key.
    fn objective(&self) -> Result<(&'static str, Direction), String> {
        let o = &self.objective;
        let names: Vec<String> = METRICS.iter().map(|(m, _)| format!("valid_{m}")).collect();
        let Some(i) = names.iter().position(|n| *n == o.metric) else {
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let hint = nearest(&o.metric, &refs)
                .map(|n| format!("; did you mean `{n}`?"))
                .unwrap_or_default();
            return Err(format!(
                "search.objective.metric: `{}` is not a validation metric (one of {}){hint}",
                o.metric,
                names.join(", ")
            ));
        };
        let (metric, higher) = METRICS[i];
        let natural = if higher {
            Direction::Maximize
        } else {
            Direction::Minimize
        };
        match o.direction {
            Some(d) if d != natural => Err(format!(
                "search.objective.direction: {} contradicts {} ({} is better)",
                match d {
                    Direction::Maximize => "maximize",
                    Direction::Minimize => "minimize",
                },
                o.metric,
                if higher { "higher" } else { "lower" }
            )),
            _ => Ok((metric, natural)),
        }
    }
}

impl Params for SearchConfig {
    fn problems(&self) -> Vec<String> {
        match self.resolve() {
            Ok(_) => vec![],
            Err(e) => e.to_string().lines().map(str::to_string).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(yaml: &str) -> Result<SearchConfig> {
        let value: serde_norway::Value = serde_norway::from_str(yaml)?;
        crate::yaml::deserialize_section(value, "spec", "search")
    }

    #[test]
    fn defaults_are_typed() {
        let c = read("space: {model.lr: 'log(interval(1e-4, 1e-2))'}\ntrials: 20\n").unwrap();
        let s = c.resolve().unwrap();
        assert_eq!(
            (s.metric, s.direction, s.inner_folds),
            ("r2", Direction::Maximize, 3)
        );
        assert!(s.pruner.is_none());
        assert_eq!(c.sampler, SamplerConfig::default());
        let c = read("space: {model.lr: 'interval(0.1, 1)'}\ntrials: 5\nobjective: {metric: valid_rmse}\npruning: {median: {}}\n").unwrap();
        let s = c.resolve().unwrap();
        assert_eq!(s.direction, Direction::Minimize);
        assert_eq!(s.pruner, Some(MedianPruner::default()));
    }

    #[test]
    fn every_problem_names_its_key() {
        let c =
            read("space: {}\ntrials: 0\ninner_folds: 1\nobjective: {metric: valid_r3}\n").unwrap();
        let e = c.resolve().unwrap_err().to_string();
        for want in [
            "search.trials: 0; a search needs at least 1 trial",
            "search.inner_folds: 1; between 2 and 1000",
            "search.objective.metric: `valid_r3` is not a validation metric (one of valid_r2, valid_rmse, valid_mae, valid_mape); did you mean `valid_r2`?",
            "search.space: empty",
        ] {
            assert!(e.contains(want), "missing `{want}` in:\n{e}");
        }
        let c = read("space: {model.lr: 'interval(0, 1)'}\ntrials: 3\nobjective: {metric: valid_r2, direction: minimize}\n").unwrap();
        let e = c.resolve().unwrap_err().to_string();
        assert!(
            e.contains("search.objective.direction: minimize contradicts valid_r2"),
            "{e}"
        );
        let c = read("space: {model.lr: 'interval(0, 1)', model.window: 'choice(3, 5)'}\ntrials: 3\nsampler: {kind: grid}\n").unwrap();
        let e = c.resolve().unwrap_err().to_string();
        assert!(
            e.contains("search.space.model.lr: an interval on a grid needs `sampler.points`"),
            "{e}"
        );
        let c = read("space: {model.window: 'choice(3, 5)'}\ntrials: 3\nsampler: {kind: grid}\n")
            .unwrap();
        let e = c.resolve().unwrap_err().to_string();
        assert_eq!(e, "search.trials: 3; the grid has only 2 points");
    }

    #[test]
    fn unknown_keys_are_serde_errors_with_the_path() {
        let e = read(
            "space: {model.lr: 'interval(0, 1)'}\ntrials: 3\nsampler: {kind: tpe, seeds: 1}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("search.sampler") && e.contains("seeds"), "{e}");
        let e = read("space: {model.lr: 'interval(0, 1)'}\ntrials: 3\npruning: {mean: {}}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("search.pruning") && e.contains("mean"), "{e}");
        let e = read("space: {model.lr: 0.5}\ntrials: 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("search.space"), "{e}");
    }
}
