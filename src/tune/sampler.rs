//! The samplers a `search:` block names: `random`, `grid` and `tpe`. Each is a function of its
//! seed and the trials so far: the same seed and the same history give the same next
//! suggestion, so a search interrupted and resumed from its trial records suggests what it
//! would have. Trial n draws from ChaCha8 seeded with `seed` on stream n.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::space::{Domain, Space, Value};
use super::tpe::{self, TpeOptions};
use super::trial::{Direction, Trial};

/// `search.sampler`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SamplerConfig {
    Random {
        #[serde(default)]
        seed: u64,
    },
    /// Every combination, in a seeded order; intervals need `points` values each.
    Grid {
        #[serde(default)]
        seed: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        points: Option<usize>,
    },
    Tpe {
        #[serde(default)]
        seed: u64,
        #[serde(default = "startup")]
        n_startup_trials: usize,
        #[serde(default = "candidates")]
        n_ei_candidates: usize,
    },
}

fn startup() -> usize {
    TpeOptions::default().n_startup_trials
}
fn candidates() -> usize {
    TpeOptions::default().n_ei_candidates
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig::Tpe {
            seed: 0,
            n_startup_trials: startup(),
            n_ei_candidates: candidates(),
        }
    }
}

/// Above this many points a grid is a typo, not a plan.
const MAX_GRID: usize = 100_000;

/// Parameters by key: one suggestion.
pub type Params = BTreeMap<String, Value>;

/// A sampler ready to suggest over one space.
#[derive(Debug, Clone)]
pub struct Sampler {
    seed: u64,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Random,
    /// Every point, already in its seeded order.
    Grid(Vec<Params>),
    Tpe(TpeOptions),
}

impl Sampler {
    /// Checks the sampler against the space: a grid must be finite and not absurd, TPE needs at
    /// least one candidate. Errors name `search.sampler.<key>` or `search.space.<key>`.
    pub fn new(config: &SamplerConfig, space: &Space) -> Result<Sampler> {
        Ok(match *config {
            SamplerConfig::Random { seed } => Sampler {
                seed,
                kind: Kind::Random,
            },
            SamplerConfig::Grid { seed, points } => {
                let mut axes: Vec<(&str, Vec<Value>)> = Vec::new();
                let mut problems = Vec::new();
                for (key, domain) in space.params() {
                    match domain.grid(points) {
                        Ok(values) => axes.push((key, values)),
                        Err(why) => problems.push(format!("search.space.{key}: {why}")),
                    }
                }
                if !problems.is_empty() {
                    bail!("{}", problems.join("\n"));
                }
                let size = axes
                    .iter()
                    .try_fold(1usize, |n, (_, v)| n.checked_mul(v.len()))
                    .filter(|&n| n <= MAX_GRID);
                let Some(size) = size else {
                    bail!("search.sampler: the grid has more than {MAX_GRID} points; use `tpe` or `random`, or fewer values");
                };
                let mut points: Vec<Params> = (0..size)
                    .map(|mut i| {
                        let mut p = Params::new();
                        for (key, values) in axes.iter().rev() {
                            p.insert(key.to_string(), values[i % values.len()].clone());
                            i /= values.len();
                        }
                        p
                    })
                    .collect();
                points.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
                Sampler {
                    seed,
                    kind: Kind::Grid(points),
                }
            }
            SamplerConfig::Tpe {
                seed,
                n_startup_trials,
                n_ei_candidates,
            } => {
                if n_ei_candidates == 0 {
                    bail!("search.sampler.n_ei_candidates: 0; TPE needs at least 1 candidate");
                }
                Sampler {
                    seed,
                    kind: Kind::Tpe(TpeOptions {
                        n_startup_trials,
                        n_ei_candidates,
                    }),
                }
            }
        })
    }

    /// How many points a grid has (None: not a grid).
    pub fn grid_size(&self) -> Option<usize> {
        match &self.kind {
            Kind::Grid(points) => Some(points.len()),
            _ => None,
        }
    }

    /// The parameters of trial number `history.len()`.
    pub fn suggest(
        &self,
        space: &Space,
        history: &[Trial],
        direction: Direction,
    ) -> Result<Params> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(history.len() as u64);
        match &self.kind {
            Kind::Random => Ok(random(space, &mut rng)),
            Kind::Grid(points) => match points
                .iter()
                .find(|p| !history.iter().any(|t| &t.params == *p))
            {
                Some(p) => Ok(p.clone()),
                None => bail!(
                    "search.trials: every one of the grid's {} points has been tried",
                    points.len()
                ),
            },
            Kind::Tpe(options) => {
                if !tpe::started(history, options) {
                    return Ok(random(space, &mut rng));
                }
                let mut out = Params::new();
                for (key, domain) in space.params() {
                    let x = tpe::suggest(key, domain, history, direction, options, &mut rng)?;
                    out.insert(key.to_string(), external(domain, x));
                }
                Ok(out)
            }
        }
    }
}

/// A sampler's number as the parameter's value.
fn external(domain: &Domain, x: f64) -> Value {
    match domain {
        Domain::Choice(choices) => choices[(x as usize).min(choices.len() - 1)].clone(),
        Domain::Numeric(r) => r.value(x),
    }
}

/// Independent uniform draws, as Optuna's `RandomSampler`: uniform in ln space for `log`, over a
/// half-step-widened range snapped to the grid for stepped domains, uniform over choices.
fn random(space: &Space, rng: &mut impl Rng) -> Params {
    let mut out = Params::new();
    for (key, domain) in space.params() {
        let v = match domain {
            Domain::Choice(choices) => choices[rng.random_range(0..choices.len())].clone(),
            Domain::Numeric(r) => {
                let half = r.step().unwrap_or(0.0) / 2.0;
                let (mut lo, mut hi) = (r.lo() - half, r.hi() + half);
                if r.log() {
                    (lo, hi) = (lo.ln(), hi.ln());
                }
                let t = lo + (hi - lo) * rng.random::<f64>();
                let x = if r.log() { t.exp() } else { t };
                let x = match r.step() {
                    Some(step) => {
                        (r.lo() + ((x - r.lo()) / step).round() * step).clamp(r.lo(), r.hi())
                    }
                    None => x.clamp(r.lo(), r.hi()),
                };
                r.value(x)
            }
        };
        out.insert(key.to_string(), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tune::trial::State;

    fn quadratic_best(config: &SamplerConfig, trials: usize) -> f64 {
        let mut raw = BTreeMap::new();
        raw.insert("x".to_string(), "interval(-5, 5)".to_string());
        raw.insert("y".to_string(), "interval(-5, 5)".to_string());
        let space = Space::parse(&raw).unwrap();
        let sampler = Sampler::new(config, &space).unwrap();
        let mut history: Vec<Trial> = Vec::new();
        for number in 0..trials {
            let p = sampler
                .suggest(&space, &history, Direction::Minimize)
                .unwrap();
            let f: f64 = p
                .values()
                .map(|v| match v {
                    Value::Float(x) => x * x,
                    _ => unreachable!(),
                })
                .sum();
            history.push(Trial {
                number,
                params: p,
                state: State::Complete(f),
                curve: BTreeMap::new(),
            });
        }
        history
            .iter()
            .filter_map(Trial::value)
            .fold(f64::INFINITY, f64::min)
    }

    #[test]
    fn tmp_quadratic_means() {
        let seeds = 1000;
        let tpe: f64 = (0..seeds)
            .map(|seed| {
                quadratic_best(
                    &SamplerConfig::Tpe {
                        seed,
                        n_startup_trials: 10,
                        n_ei_candidates: 24,
                    },
                    40,
                )
            })
            .sum::<f64>()
            / seeds as f64;
        let random: f64 = (0..seeds)
            .map(|seed| quadratic_best(&SamplerConfig::Random { seed }, 40))
            .sum::<f64>()
            / seeds as f64;
        eprintln!("TMP tpe {tpe} random {random}");
    }
}
#[cfg(test)]
mod tmp_dist {
    use super::*;
    use crate::tune::trial::State;
    #[test]
    fn tmp_dist() {
        let text = std::fs::read_to_string("/tmp/hist.json").unwrap();
        let hist: Vec<(f64, f64)> = serde_json::from_str(&text).unwrap();
        let mut raw = BTreeMap::new();
        raw.insert("x".to_string(), "interval(-5, 5)".to_string());
        let space = Space::parse(&raw).unwrap();
        let history: Vec<Trial> = hist
            .iter()
            .enumerate()
            .map(|(i, (x, v))| {
                let mut p = Params::new();
                p.insert("x".into(), Value::Float(*x));
                Trial {
                    number: i,
                    params: p,
                    state: State::Complete(*v),
                    curve: BTreeMap::new(),
                }
            })
            .collect();
        let mut xs: Vec<f64> = (0..3000)
            .map(|seed| {
                let s = Sampler::new(
                    &SamplerConfig::Tpe {
                        seed,
                        n_startup_trials: 10,
                        n_ei_candidates: 24,
                    },
                    &space,
                )
                .unwrap();
                match s.suggest(&space, &history, Direction::Minimize).unwrap()["x"] {
                    Value::Float(x) => x,
                    _ => unreachable!(),
                }
            })
            .collect();
        xs.sort_by(f64::total_cmp);
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let q = |p: f64| xs[(p * (xs.len() - 1) as f64) as usize];
        eprintln!(
            "TMP ours mean {mean} q {:?}",
            [q(0.05), q(0.25), q(0.5), q(0.75), q(0.95)]
        );
    }
}
