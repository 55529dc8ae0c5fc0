//! The search of issue 31 against Optuna: the deterministic parts of TPE (γ, the below/above
//! split, mixture weights, kernel means and bandwidths, the densities and the acquisition at
//! given points) equal Optuna 5.1's own `_split_trials` / `_build_parzen_estimator` /
//! `_compute_acquisition_func` on the same histories (scripts/tpe_reference.py); and on a known
//! function TPE beats random search on average, as Optuna's does. Random streams differ between
//! the two, so suggestions themselves are compared only in distribution.

use std::collections::BTreeMap;

use crate::common;
use opencarbon::tune::parzen::{Kernels, Parzen};
use opencarbon::tune::space::{self, Domain, Space, Value};
use opencarbon::tune::{tpe, Direction, Sampler, SamplerConfig, State, Trial};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value as Json};

/// One parameter's history and the points to score, for both sides.
struct Case {
    expr: &'static str,
    dist: Json,
    direction: Direction,
    trials: Vec<Trial>,
    candidates: Vec<f64>,
}

fn trial(number: usize, param: Value, state: State, curve: &[(u64, f64)]) -> Trial {
    let mut params = BTreeMap::new();
    params.insert("x".to_string(), param);
    Trial {
        number,
        params,
        state,
        curve: curve.iter().copied().collect(),
    }
}

/// `n` trials of `draw` scored by `f` plus noise; those `pruned` picks pruned with a curve
/// (none for every fifth), the last `running` still running. Some values repeat on purpose
/// (ties keep trial order).
fn history(
    seed: u64,
    n: usize,
    pruned: fn(usize) -> bool,
    running: usize,
    mut draw: impl FnMut(&mut ChaCha8Rng) -> Value,
    f: impl Fn(&Value) -> f64,
) -> Vec<Trial> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let p = draw(&mut rng);
            let noise: f64 = rng.random_range(-0.1..0.1);
            let v = if i % 7 == 3 { 1.0 } else { f(&p) + noise };
            let state = if i + running >= n {
                State::Running
            } else if pruned(i) {
                State::Pruned
            } else {
                State::Complete(v)
            };
            let curve: Vec<(u64, f64)> = match state {
                State::Pruned if i % 5 != 0 => {
                    (0..=(i as u64 % 4)).map(|s| (s, v + s as f64)).collect()
                }
                _ => vec![],
            };
            trial(i, p, state, &curve)
        })
        .collect()
}

fn as_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(x) => *x,
        other => panic!("not a number: {other:?}"),
    }
}

fn cases() -> Vec<Case> {
    let choices = ["adam", "sgd", "rmsprop", "lamb"];
    vec![
        Case {
            expr: "interval(-5, 5)",
            dist: json!({"type": "float", "low": -5.0, "high": 5.0, "log": false, "step": null}),
            direction: Direction::Minimize,
            trials: history(
                1,
                15,
                |_| false,
                0,
                |r| Value::Float(r.random_range(-5.0..5.0)),
                |p| (as_f64(p) - 1.0).powi(2),
            ),
            candidates: vec![-4.9, -1.0, 0.0, 0.99, 1.0, 2.5, 4.999],
        },
        Case {
            // 30 trials: γ = 3 below, 27 above, so the "above" weights ramp (n ≥ 25).
            expr: "log(interval(1e-4, 1e-1))",
            dist: json!({"type": "float", "low": 1e-4, "high": 1e-1, "log": true, "step": null}),
            direction: Direction::Maximize,
            trials: history(
                2,
                30,
                |_| false,
                0,
                |r| Value::Float(10f64.powf(r.random_range(-4.0..-1.0))),
                |p| -(as_f64(p).log10() + 2.5).powi(2),
            ),
            candidates: vec![1e-4, 3e-4, 3e-3, 0.0316, 0.0999],
        },
        Case {
            // Pruned trials with curves of different depths, and two still running.
            expr: "int(interval(1, 10))",
            dist: json!({"type": "int", "low": 1, "high": 10, "log": false, "step": 1}),
            direction: Direction::Minimize,
            trials: history(
                3,
                14,
                |i| i % 4 == 3,
                2,
                |r| Value::Int(r.random_range(1..=10)),
                |p| (as_f64(p) - 7.0).abs(),
            ),
            candidates: vec![1.0, 2.0, 6.0, 7.0, 10.0],
        },
        Case {
            // So many pruned that γ(n) reaches past the complete trials into them. Fewer than 25
            // per group: with tied μs numpy's unstable argsort decides which tie gets which σ,
            // and the ramped weights would then tell kernels apart (machine-dependent in Optuna).
            expr: "int(interval(1, 10))",
            dist: json!({"type": "int", "low": 1, "high": 10, "log": false, "step": 1}),
            direction: Direction::Maximize,
            trials: history(
                4,
                24,
                |i| i % 12 != 0,
                0,
                |r| Value::Int(r.random_range(1..=10)),
                as_f64,
            ),
            candidates: vec![1.0, 5.0, 10.0],
        },
        Case {
            expr: "int(log(interval(1, 64)))",
            dist: json!({"type": "int", "low": 1, "high": 64, "log": true, "step": 1}),
            direction: Direction::Minimize,
            trials: history(
                5,
                20,
                |_| false,
                0,
                |r| Value::Int(r.random_range(1..=64)),
                |p| (as_f64(p).ln() - 2.0).abs(),
            ),
            candidates: vec![1.0, 2.0, 7.0, 8.0, 64.0],
        },
        Case {
            expr: "choice(adam, sgd, rmsprop, lamb)",
            dist: json!({"type": "categorical", "choices": choices}),
            direction: Direction::Maximize,
            trials: history(
                6,
                14,
                |_| false,
                1,
                |r| Value::Str(choices[r.random_range(0..4)].to_string()),
                |p| {
                    if *p == Value::Str("rmsprop".into()) {
                        2.0
                    } else {
                        0.0
                    }
                },
            ),
            candidates: vec![0.0, 1.0, 2.0, 3.0],
        },
        Case {
            // A stepped float range: 0, 0.25, 0.5, 0.75 (stop excluded).
            expr: "range(0.0, 1.0, 0.25)",
            dist: json!({"type": "float", "low": 0.0, "high": 0.75, "log": false, "step": 0.25}),
            direction: Direction::Minimize,
            trials: history(
                7,
                11,
                |_| false,
                0,
                |r| Value::Float(0.25 * r.random_range(0..4) as f64),
                |p| (as_f64(p) - 0.5).abs(),
            ),
            candidates: vec![0.0, 0.25, 0.5, 0.75],
        },
        Case {
            // 300 trials: γ is capped at 25.
            expr: "interval(0, 1)",
            dist: json!({"type": "float", "low": 0.0, "high": 1.0, "log": false, "step": null}),
            direction: Direction::Minimize,
            trials: history(
                8,
                300,
                |_| false,
                0,
                |r| Value::Float(r.random_range(0.0..1.0)),
                |p| (as_f64(p) - 0.3).powi(2),
            ),
            candidates: vec![0.0, 0.3, 0.31, 0.9],
        },
    ]
}

fn param_json(v: &Value) -> Json {
    match v {
        Value::Int(i) => json!(i),
        Value::Float(x) => json!(x),
        Value::Str(s) => json!(s),
        Value::Bool(b) => json!(b),
    }
}

fn case_json(c: &Case) -> Json {
    let trials: Vec<Json> = c
        .trials
        .iter()
        .map(|t| {
            let (state, value) = match t.state {
                State::Complete(v) => ("complete", json!(v)),
                State::Pruned => ("pruned", Json::Null),
                State::Running => ("running", Json::Null),
            };
            let curve: Vec<Json> = t.curve.iter().map(|(s, v)| json!([s, v])).collect();
            json!({"state": state, "value": value, "param": param_json(&t.params["x"]), "curve": curve})
        })
        .collect();
    json!({
        "direction": match c.direction { Direction::Minimize => "minimize", Direction::Maximize => "maximize" },
        "distribution": c.dist,
        "trials": trials,
        "candidates": c.candidates,
    })
}

fn optuna(python: &str, args: &[&str]) -> Json {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/tpe_reference.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn floats(v: &Json) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NEG_INFINITY))
        .collect()
}

fn close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs Optuna {want:?}");
    for (g, w) in got.iter().zip(want) {
        let ok = g == w || (g - w).abs() <= 1e-9 * w.abs().max(1.0);
        assert!(ok, "{what}: {got:?} vs Optuna {want:?}");
    }
}

/// Kernels as (μ, σ, weight), sorted: Optuna orders tied μs by numpy's argsort, which is not
/// stable, so only the multiset of kernels is defined; it is what the mixture is.
fn kernels(mus: &[f64], sigmas: &[f64], weights: &[f64]) -> Vec<[f64; 3]> {
    let mut k: Vec<[f64; 3]> = (0..mus.len())
        .map(|i| [mus[i], sigmas[i], weights[i]])
        .collect();
    k.sort_by(|a, b| {
        a[0].total_cmp(&b[0])
            .then(a[1].total_cmp(&b[1]))
            .then(a[2].total_cmp(&b[2]))
    });
    k
}

fn compare_estimator(what: &str, got: &Parzen, want: &Json) {
    let want_weights = floats(&want["weights"]);
    match &got.kernels {
        Kernels::Numeric(k) => {
            let ours = kernels(&k.mus, &k.sigmas, &got.weights);
            let theirs = kernels(
                &floats(&want["mus"]),
                &floats(&want["sigmas"]),
                &want_weights,
            );
            assert_eq!(ours.len(), theirs.len(), "{what}: kernels");
            for (o, t) in ours.iter().zip(&theirs) {
                close(&format!("{what} (μ, σ, weight)"), o, t);
            }
        }
        Kernels::Categorical(rows) => {
            close(&format!("{what} weights"), &got.weights, &want_weights);
            let want_rows = want["categorical"].as_array().unwrap();
            assert_eq!(rows.len(), want_rows.len(), "{what} kernels");
            for (r, w) in rows.iter().zip(want_rows) {
                close(&format!("{what} categorical"), r, &floats(w));
            }
        }
    }
}

#[test]
fn tpe_internals_equal_optunas() {
    let Some(python) = common::python(&["optuna"]) else {
        return;
    };
    let cases = cases();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cases.json");
    let data = json!({"cases": cases.iter().map(case_json).collect::<Vec<_>>()});
    std::fs::write(&input, data.to_string()).unwrap();
    let reference = optuna(&python, &[input.to_str().unwrap()]);
    assert_eq!(reference["version"], "5.1.0", "pinned against Optuna 5.1.0");
    for (i, (c, want)) in cases
        .iter()
        .zip(reference["cases"].as_array().unwrap())
        .enumerate()
    {
        let what = format!("case {i} ({})", c.expr);
        let domain: Domain = space::parse(c.expr).unwrap();
        let n = c
            .trials
            .iter()
            .filter(|t| t.state != State::Running)
            .count();
        assert_eq!(
            tpe::gamma(n) as u64,
            want["gamma"].as_u64().unwrap(),
            "{what}: γ"
        );
        let (below, above) = tpe::split(&c.trials, c.direction);
        let numbers = |g: &[&Trial]| g.iter().map(|t| json!(t.number)).collect::<Vec<_>>();
        assert_eq!(json!(numbers(&below)), want["below"], "{what}: below");
        assert_eq!(json!(numbers(&above)), want["above"], "{what}: above");
        let (l, g) = tpe::estimators("x", &domain, &c.trials, c.direction).unwrap();
        compare_estimator(&format!("{what} l(x)"), &l, &want["l"]);
        compare_estimator(&format!("{what} g(x)"), &g, &want["g"]);
        let log_l: Vec<f64> = c.candidates.iter().map(|&x| l.log_pdf(x)).collect();
        close(&format!("{what} ln l"), &log_l, &floats(&want["log_l"]));
        close(
            &format!("{what} acquisition"),
            &tpe::acquisition(&l, &g, &c.candidates),
            &floats(&want["acquisition"]),
        );
    }
}

/// f(x, y) = x² + y² over [−5, 5]², minimised for `trials` trials; the best value found.
fn best_on_quadratic(config: &SamplerConfig, trials: usize) -> f64 {
    let mut raw = BTreeMap::new();
    raw.insert("x".to_string(), "interval(-5, 5)".to_string());
    raw.insert("y".to_string(), "interval(-5, 5)".to_string());
    let space = Space::parse(&raw).unwrap();
    let sampler = Sampler::new(config, &space).unwrap();
    let mut history: Vec<Trial> = Vec::new();
    for number in 0..trials {
        let params = sampler
            .suggest(&space, &history, Direction::Minimize)
            .unwrap();
        let f = as_f64(&params["x"]).powi(2) + as_f64(&params["y"]).powi(2);
        history.push(Trial {
            number,
            params,
            state: State::Complete(f),
            curve: BTreeMap::new(),
        });
    }
    history
        .iter()
        .filter_map(Trial::value)
        .fold(f64::INFINITY, f64::min)
}

fn mean_best(seeds: u64, trials: usize, make: &dyn Fn(u64) -> SamplerConfig) -> f64 {
    (0..seeds)
        .map(|s| best_on_quadratic(&make(s), trials))
        .sum::<f64>()
        / seeds as f64
}

fn tpe_config(seed: u64) -> SamplerConfig {
    SamplerConfig::Tpe {
        seed,
        n_startup_trials: 10,
        n_ei_candidates: 24,
        multivariate: false,
    }
}

fn joint_config(seed: u64) -> SamplerConfig {
    SamplerConfig::Tpe {
        seed,
        n_startup_trials: 10,
        n_ei_candidates: 24,
        multivariate: true,
    }
}

#[test]
fn tpe_beats_random_on_a_quadratic_as_optunas_does() {
    // Ours: 30 seeds × 40 trials, TPE's mean best well below random search's.
    let tpe = mean_best(30, 40, &tpe_config);
    let random = mean_best(30, 40, &|seed| SamplerConfig::Random { seed });
    eprintln!(
        "mean best of x² + y² after 40 trials over 30 seeds: TPE {tpe:.4}, random {random:.4}"
    );
    assert!(tpe < 0.5 * random, "TPE {tpe} vs random {random}");
    let Some(python) = common::python(&["optuna"]) else {
        return;
    };
    // Optuna's univariate TPE and random search on the same problem, 100 seeds each side: the
    // same algorithm with other random streams gives the same mean best within sampling noise
    // (over 1000 seeds: Optuna 0.187 ± 0.007, ours 0.202; multivariate TPE, Optuna 5's default,
    // 0.08).
    let reference = optuna(&python, &["--quadratic", "100", "40"]);
    let (o_tpe, o_random) = (
        reference["tpe_univariate"].as_f64().unwrap(),
        reference["random"].as_f64().unwrap(),
    );
    let o_joint = reference["tpe_multivariate"].as_f64().unwrap();
    let tpe = mean_best(100, 40, &tpe_config);
    let joint = mean_best(100, 40, &joint_config);
    let random = mean_best(100, 40, &|seed| SamplerConfig::Random { seed });
    eprintln!("100 seeds: ours TPE {tpe:.4}, multivariate {joint:.4}, random {random:.4}; Optuna TPE {o_tpe:.4}, multivariate {o_joint:.4}, random {o_random:.4}");
    assert!(
        (tpe / o_tpe).ln().abs() < 1.5f64.ln(),
        "TPE {tpe} vs Optuna's {o_tpe}"
    );
    assert!(
        (joint / o_joint).ln().abs() < 1.5f64.ln(),
        "multivariate TPE {joint} vs Optuna's {o_joint}"
    );
    assert!(
        (random / o_random).ln().abs() < 1.5f64.ln(),
        "random {random} vs Optuna's {o_random}"
    );
}

/// One TPE step from a fixed history: the distribution of the suggested x over 3000 seeds
/// equals Optuna's (its quantiles within 0.1 on [−5, 5]; they agree to about 0.03). This pins
/// what the deterministic checks cannot: sampling from l(x), and picking the best candidate.
#[test]
fn one_tpe_step_is_distributed_as_optunas() {
    let Some(python) = common::python(&["optuna"]) else {
        return;
    };
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let history: Vec<(f64, f64)> = (0..20)
        .map(|_| {
            let x: f64 = rng.random_range(-5.0..5.0);
            (x, (x - 1.0).powi(2))
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("history.json");
    std::fs::write(&input, json!(history).to_string()).unwrap();
    let seeds = 3000;
    let mut theirs = floats(&optuna(
        &python,
        &["--suggest", input.to_str().unwrap(), &seeds.to_string()],
    ));
    let mut raw = BTreeMap::new();
    raw.insert("x".to_string(), "interval(-5, 5)".to_string());
    let space = Space::parse(&raw).unwrap();
    let trials: Vec<Trial> = history
        .iter()
        .enumerate()
        .map(|(i, &(x, v))| trial(i, Value::Float(x), State::Complete(v), &[]))
        .collect();
    let mut ours: Vec<f64> = (0..seeds as u64)
        .map(|seed| {
            let sampler = Sampler::new(&tpe_config(seed), &space).unwrap();
            as_f64(
                &sampler
                    .suggest(&space, &trials, Direction::Minimize)
                    .unwrap()["x"],
            )
        })
        .collect();
    ours.sort_by(f64::total_cmp);
    theirs.sort_by(f64::total_cmp);
    for q in [0.05, 0.25, 0.5, 0.75, 0.95] {
        let at = |v: &[f64]| v[(q * (v.len() - 1) as f64).round() as usize];
        let (o, t) = (at(&ours), at(&theirs));
        eprintln!("quantile {q}: ours {o:.4}, Optuna {t:.4}");
        assert!((o - t).abs() < 0.1, "quantile {q}: ours {o} vs Optuna {t}");
    }
}

// ---- split.valid_buffer (issue 31, item 4) ----

use opencarbon::data::odiac;
use opencarbon::data::split::{Buffer, Split, SplitConfig};
use opencarbon::data::City;

fn spatial_cv(buffer: Option<Buffer>, valid_buffer: Option<Buffer>, fold: usize) -> SplitConfig {
    blocks_cv(8, buffer, valid_buffer, fold)
}

fn blocks_cv(
    block: usize,
    buffer: Option<Buffer>,
    valid_buffer: Option<Buffer>,
    fold: usize,
) -> SplitConfig {
    SplitConfig::SpatialCv {
        folds: 5,
        block,
        buffer,
        valid_buffer,
        valid: 0.25,
        seed: None,
        fold: Some(fold),
        inner: None,
    }
}

/// Whether tile `i` lies within `r` tiles (Chebyshev) of any tile of `set`.
fn near(city: &City, i: usize, set: &[usize], r: i64) -> bool {
    let k = city.keys[i];
    set.iter().any(|&j| {
        let t = city.keys[j];
        (t.x - k.x).abs() <= r && (t.y - k.y).abs() <= r
    })
}

/// The buffered split keeps validation and test as they were and drops exactly the training
/// tiles within `r` of a validation tile.
fn check_valid_buffer(city: &City, plain: &Split, buffered: &Split, r: i64) -> usize {
    assert_eq!(plain.valid, buffered.valid, "validation blocks unchanged");
    assert_eq!(plain.test, buffered.test, "test blocks unchanged");
    let kept: Vec<usize> = plain
        .train
        .iter()
        .copied()
        .filter(|&i| !near(city, i, &plain.valid, r))
        .collect();
    assert_eq!(
        buffered.train, kept,
        "training minus the tiles near validation"
    );
    plain.train.len() - kept.len()
}

#[test]
fn valid_buffer_absent_leaves_specs_and_splits_as_they_were() {
    let yaml = "{kind: spatial_cv, folds: 5, block: 2, buffer: 1}";
    let config: SplitConfig = serde_norway::from_str(yaml).unwrap();
    assert_eq!(config.valid_buffer(), None);
    let text = serde_norway::to_string(&config).unwrap();
    assert!(
        !text.contains("valid_buffer"),
        "absent stays absent in resolved specs:\n{text}"
    );
    let city = common::tiny_city(3);
    let none = config.with_fold(0).split(&city, 1).unwrap();
    let zero = blocks_cv(2, Some(Buffer::Tiles(1)), Some(Buffer::Tiles(0)), 0)
        .split(&city, 1)
        .unwrap();
    assert_eq!(none, zero);
    // On the small city too: exactly the training tiles next to validation go.
    let one = blocks_cv(2, Some(Buffer::Tiles(1)), Some(Buffer::Tiles(1)), 0)
        .split(&city, 1)
        .unwrap();
    assert!(check_valid_buffer(&city, &none, &one, 1) > 0);
    let config: SplitConfig = serde_norway::from_str(
        "{kind: spatial_cv, folds: 5, block: 8, buffer: 1, valid_buffer: 2}",
    )
    .unwrap();
    assert_eq!(config.valid_buffer(), Some(Buffer::Tiles(2)));
    assert!(serde_norway::to_string(&config)
        .unwrap()
        .contains("valid_buffer: 2"));
}

#[test]
fn default_valid_buffer_is_the_test_buffer() {
    let mut c = spatial_cv(Some(Buffer::Tiles(2)), None, 0);
    c.default_valid_buffer();
    assert_eq!(c.valid_buffer(), Some(Buffer::Tiles(2)));
    let mut c = spatial_cv(Some(Buffer::Tiles(2)), Some(Buffer::Tiles(5)), 0);
    c.default_valid_buffer();
    assert_eq!(c.valid_buffer(), Some(Buffer::Tiles(5)), "a set one stays");
    let mut c = spatial_cv(Some(Buffer::auto(1)), None, 0);
    c.default_valid_buffer();
    assert_eq!(c.valid_buffer(), Some(Buffer::auto(1)));
    let mut c = spatial_cv(Some(Buffer::Tiles(2)), Some(Buffer::auto(0)), 0);
    c.default_valid_buffer();
    assert_eq!(
        c.valid_buffer(),
        Some(Buffer::auto(2)),
        "auto's floor lifted"
    );
}

#[test]
fn valid_buffer_auto_needs_an_auto_test_buffer() {
    let city = common::tiny_city(3);
    let e = blocks_cv(2, Some(Buffer::Tiles(1)), Some(Buffer::auto(1)), 0)
        .split(&city, 1)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("split.valid_buffer: auto"), "{e}");
}

fn real_city(name: &str) -> Option<City> {
    let path = common::shared_data_file(&format!("odiac-tiles/labels/{name}.csv"))?;
    Some(odiac::import(&path).unwrap().0)
}

/// How many training tiles the valid buffer takes out per fold under the committed real-tile
/// settings (experiments/real/network-spatial-cv.yaml: 5 folds, 8×8 blocks, buffer 1, seeds 1
/// and 2), at the test buffer (1: the 3×3 window) and at 2 (a 5×5 window's).
#[test]
fn valid_buffer_on_the_real_tiles() {
    for name in ["Beijing", "Shanghai"] {
        let Some(city) = real_city(name) else {
            return;
        };
        for r in [1usize, 2] {
            let mut line = Vec::new();
            let (mut removed_all, mut train_all) = (0, 0);
            for seed in [1u64, 2] {
                for fold in 0..5 {
                    let test = Some(Buffer::Tiles(r));
                    let plain = spatial_cv(test, None, fold).split(&city, seed).unwrap();
                    let buffered = spatial_cv(test, Some(Buffer::Tiles(r)), fold)
                        .split(&city, seed)
                        .unwrap();
                    let removed = check_valid_buffer(&city, &plain, &buffered, r as i64);
                    line.push(format!("{removed}/{}", plain.train.len()));
                    removed_all += removed;
                    train_all += plain.train.len();
                }
            }
            eprintln!(
                "{name}, buffer {r}: training tiles removed per fold (seed 1 folds 0-4, seed 2 folds 0-4): {}; {removed_all}/{train_all} = {:.1} %",
                line.join(" "),
                100.0 * removed_all as f64 / train_all as f64
            );
            assert!(removed_all > 0, "validation blocks touch training tiles");
        }
    }
}

/// Multivariate TPE: the joint estimators (shared weights, per-parameter kernels) and the joint
/// acquisition equal Optuna's on a history over a float, a log float and a choice.
#[test]
fn multivariate_tpe_internals_equal_optunas() {
    let Some(python) = common::python(&["optuna"]) else {
        return;
    };
    let choices = ["a", "b", "c"];
    let mut raw = BTreeMap::new();
    raw.insert("c".to_string(), "choice(a, b, c)".to_string());
    raw.insert("lr".to_string(), "log(interval(1e-4, 1e-1))".to_string());
    raw.insert("x".to_string(), "interval(-5, 5)".to_string());
    let space = Space::parse(&raw).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let trials: Vec<Trial> = (0..22)
        .map(|number| {
            let c = choices[rng.random_range(0..3)];
            let lr = 10f64.powf(rng.random_range(-4.0..-1.0));
            let x: f64 = rng.random_range(-5.0..5.0);
            let v =
                (x - 1.0).powi(2) + (lr.log10() + 3.0).powi(2) + if c == "b" { 0.0 } else { 1.0 };
            let mut params = BTreeMap::new();
            params.insert("c".to_string(), Value::Str(c.into()));
            params.insert("lr".to_string(), Value::Float(lr));
            params.insert("x".to_string(), Value::Float(x));
            Trial {
                number,
                params,
                state: State::Complete(v),
                curve: BTreeMap::new(),
            }
        })
        .collect();
    let candidates = vec![
        vec![1.0, 1e-3, 1.0],
        vec![0.0, 1e-4, -5.0],
        vec![2.0, 0.05, 3.3],
        vec![1.0, 2e-3, 0.5],
    ];
    let case = json!({
        "direction": "minimize",
        "distributions": {
            "c": {"type": "categorical", "choices": choices},
            "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": true, "step": null},
            "x": {"type": "float", "low": -5.0, "high": 5.0, "log": false, "step": null},
        },
        "trials": trials.iter().map(|t| json!({
            "value": t.value(),
            "params": {"c": param_json(&t.params["c"]), "lr": param_json(&t.params["lr"]), "x": param_json(&t.params["x"])},
        })).collect::<Vec<_>>(),
        "candidates": candidates,
    });
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("joint.json");
    std::fs::write(&input, case.to_string()).unwrap();
    let want = optuna(&python, &["--joint", input.to_str().unwrap()]);
    let (below, _) = tpe::split(&trials, Direction::Minimize);
    let numbers: Vec<Json> = below.iter().map(|t| json!(t.number)).collect();
    assert_eq!(json!(numbers), want["below"]);
    let (l, g) = tpe::joint_estimators(&space, &trials, Direction::Minimize).unwrap();
    for (name, ours, theirs) in [("l", &l, &want["l"]), ("g", &g, &want["g"])] {
        for (d, (p, w)) in ours
            .iter()
            .zip(theirs["dims"].as_array().unwrap())
            .enumerate()
        {
            let mut w = w.clone();
            w["weights"] = theirs["weights"].clone();
            compare_estimator(&format!("{name} dim {d}"), p, &w);
        }
    }
    let l: Vec<&Parzen> = l.iter().collect();
    let g: Vec<&Parzen> = g.iter().collect();
    close(
        "joint acquisition",
        &tpe::joint_acquisition(&l, &g, &candidates),
        &floats(&want["acquisition"]),
    );
}
