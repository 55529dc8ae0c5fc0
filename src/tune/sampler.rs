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
        /// One joint estimator over all parameters (Optuna 5's default); off: one per
        /// parameter (Optuna 4's).
        #[serde(default)]
        multivariate: bool,
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
            multivariate: false,
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
                multivariate,
            } => {
                if n_ei_candidates == 0 {
                    bail!("search.sampler.n_ei_candidates: 0; TPE needs at least 1 candidate");
                }
                Sampler {
                    seed,
                    kind: Kind::Tpe(TpeOptions {
                        n_startup_trials,
                        n_ei_candidates,
                        multivariate,
                    }),
                }
            }
        })
    }

    /// The same sampler on its own random streams for one of several independent searches (an
    /// outer fold, a seed): `salt` is mixed into the seed, so each search draws differently and
    /// reproducibly.
    pub fn reseeded(&self, salt: u64) -> Sampler {
        let mut out = self.clone();
        // SplitMix64's finaliser: nearby salts give unrelated seeds.
        let mut z = self.seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.seed = z ^ (z >> 31);
        out
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
                if options.multivariate {
                    let xs = tpe::suggest_joint(space, history, direction, options, &mut rng)?;
                    for ((key, domain), x) in space.params().zip(xs) {
                        out.insert(key.to_string(), external(domain, x));
                    }
                    return Ok(out);
                }
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

    fn space(pairs: &[(&str, &str)]) -> Space {
        let raw = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Space::parse(&raw).unwrap()
    }

    fn run(sampler: &Sampler, space: &Space, n: usize, f: impl Fn(&Params) -> f64) -> Vec<Trial> {
        let mut history = Vec::new();
        for number in 0..n {
            let params = sampler
                .suggest(space, &history, Direction::Minimize)
                .unwrap();
            let v = f(&params);
            history.push(Trial {
                number,
                params,
                state: State::Complete(v),
                curve: BTreeMap::new(),
            });
        }
        history
    }

    fn num(v: &Value) -> f64 {
        match v {
            Value::Int(i) => *i as f64,
            Value::Float(x) => *x,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn same_seed_and_history_same_suggestion() {
        let s = space(&[
            ("a", "log(interval(1e-4, 1e-1))"),
            ("b", "choice(x, y, z)"),
            ("c", "int(interval(1, 9))"),
        ]);
        let f = |p: &Params| num(&p["a"]).ln().abs() + num(&p["c"]);
        for multivariate in [true, false] {
            let config = SamplerConfig::Tpe {
                seed: 0,
                n_startup_trials: 10,
                n_ei_candidates: 24,
                multivariate,
            };
            let tpe = Sampler::new(&config, &s).unwrap();
            let history = run(&tpe, &s, 25, f);
            // Resumed from the first 20 records: the same 21st suggestion.
            let again = tpe
                .suggest(&s, &history[..20], Direction::Minimize)
                .unwrap();
            assert_eq!(again, history[20].params);
        }
        let tpe = Sampler::new(&SamplerConfig::default(), &s).unwrap();
        let history = run(&tpe, &s, 25, f);
        // Another seed, another path.
        let other = Sampler::new(
            &SamplerConfig::Tpe {
                seed: 1,
                n_startup_trials: 10,
                n_ei_candidates: 24,
                multivariate: false,
            },
            &s,
        )
        .unwrap();
        assert_ne!(run(&other, &s, 25, f)[20].params, history[20].params);
    }

    #[test]
    fn tpe_starts_as_random_search() {
        let s = space(&[("a", "interval(0, 1)"), ("b", "choice(1, 2)")]);
        let tpe = Sampler::new(
            &SamplerConfig::Tpe {
                seed: 3,
                n_startup_trials: 4,
                n_ei_candidates: 24,
                multivariate: false,
            },
            &s,
        )
        .unwrap();
        let random = Sampler::new(&SamplerConfig::Random { seed: 3 }, &s).unwrap();
        let a = run(&tpe, &s, 6, |p| num(&p["a"]));
        let b = run(&random, &s, 6, |p| num(&p["a"]));
        assert_eq!(a[..4], b[..4], "the 4 startup trials");
        assert_ne!(a[4].params, b[4].params, "then TPE");
    }

    #[test]
    fn random_draws_stay_in_their_domains() {
        let s = space(&[
            ("f", "interval(-2, 3)"),
            ("l", "log(interval(1e-3, 10))"),
            ("i", "int(interval(2, 5))"),
            ("il", "int(log(interval(1, 100)))"),
            ("r", "range(0, 1, 0.25)"),
        ]);
        let random = Sampler::new(&SamplerConfig::Random { seed: 0 }, &s).unwrap();
        let h = run(&random, &s, 400, |_| 0.0);
        let values = |k: &str| h.iter().map(|t| t.params[k].clone()).collect::<Vec<_>>();
        assert!(values("f").iter().all(|v| (-2.0..=3.0).contains(&num(v))));
        let l: Vec<f64> = values("l").iter().map(num).collect();
        assert!(l.iter().all(|x| (1e-3..=10.0).contains(x)));
        // Log-uniform: about a quarter of the draws below 1e-2 (one decade of four).
        let low = l.iter().filter(|&&x| x < 1e-2).count();
        assert!((60..140).contains(&low), "{low}");
        for k in ["i", "il"] {
            assert!(values(k).iter().all(|v| matches!(v, Value::Int(_))));
        }
        let mut seen: Vec<i64> = values("i").iter().map(|v| num(v) as i64).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen, vec![2, 3, 4, 5], "both ends reachable");
        assert!(values("r")
            .iter()
            .all(|v| [0.0, 0.25, 0.5, 0.75].contains(&num(v))));
    }

    #[test]
    fn grid_tries_every_point_once_then_stops() {
        let s = space(&[("w", "choice(3, 5)"), ("lr", "log(interval(1e-4, 1e-2))")]);
        let config = SamplerConfig::Grid {
            seed: 2,
            points: Some(3),
        };
        let grid = Sampler::new(&config, &s).unwrap();
        assert_eq!(grid.grid_size(), Some(6));
        let h = run(&grid, &s, 6, |_| 0.0);
        for (i, t) in h.iter().enumerate() {
            assert!(
                !h[..i].iter().any(|u| u.params == t.params),
                "{:?} twice",
                t.params
            );
        }
        let e = grid
            .suggest(&s, &h, Direction::Minimize)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "search.trials: every one of the grid's 6 points has been tried"
        );
        let e = Sampler::new(
            &SamplerConfig::Grid {
                seed: 0,
                points: None,
            },
            &s,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("search.space.lr: an interval on a grid needs"),
            "{e}"
        );
    }
}
