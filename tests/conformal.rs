//! Prediction intervals: split conformal and CV+ pinned to MAPIE's bounds on the same numbers
//! (scripts/conformal_reference.py), and coverage on a synthetic city with known noise measured
//! by the tables (`coverage.csv`) near its nominal 90 %.

use std::path::Path;

use crate::common;
use opencarbon::spec::Experiment;
use opencarbon::stats::conformal::{self, Calibration};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

/// Calibration points in `folds` folds (targets, out-of-fold predictions), and test points with
/// each fold model's prediction and a point prediction; heteroscedastic so the tails matter.
struct Case {
    cal_y: Vec<f64>,
    cal_pred: Vec<f64>,
    cal_fold: Vec<usize>,
    test_fold_pred: Vec<Vec<f64>>,
    test_pred: Vec<f64>,
    /// Difficulty scales: of each calibration point, of each test point (split), and of each
    /// test point under each fold model (CV+).
    cal_scale: Vec<f64>,
    test_scale: Vec<f64>,
    test_fold_scale: Vec<Vec<f64>>,
}

fn case(seed: u64, n_cal: usize, n_test: usize, folds: usize) -> Case {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut c = Case {
        cal_y: vec![],
        cal_pred: vec![],
        cal_fold: vec![],
        test_fold_pred: vec![],
        test_pred: vec![],
        cal_scale: vec![],
        test_scale: vec![],
        test_fold_scale: vec![],
    };
    for i in 0..n_cal {
        let x: f64 = rng.random_range(0.0..10.0);
        let noise = rng.random_range(-1.0..1.0) * (0.2 + 0.1 * x);
        c.cal_y.push(2.0 + 0.5 * x + noise);
        c.cal_pred.push(2.0 + 0.5 * x + rng.random_range(-0.3..0.3));
        c.cal_fold.push(i % folds);
        c.cal_scale
            .push(0.2 + 0.1 * x + rng.random_range(0.0..0.05));
    }
    for _ in 0..n_test {
        let x: f64 = rng.random_range(0.0..10.0);
        let by_fold: Vec<f64> = (0..folds)
            .map(|_| 2.0 + 0.5 * x + rng.random_range(-0.2..0.2))
            .collect();
        c.test_pred.push(by_fold.iter().sum::<f64>() / folds as f64);
        c.test_fold_pred.push(by_fold);
        let scales: Vec<f64> = (0..folds)
            .map(|_| 0.2 + 0.1 * x + rng.random_range(0.0..0.05))
            .collect();
        c.test_scale.push(scales.iter().sum::<f64>() / folds as f64);
        c.test_fold_scale.push(scales);
    }
    c
}

fn mapie(python: &str, c: &Case, level: f64) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("case.json");
    let data = json!({
        "level": level, "cal_y": c.cal_y, "cal_pred": c.cal_pred, "cal_fold": c.cal_fold,
        "test_fold_pred": c.test_fold_pred, "test_pred": c.test_pred,
        "cal_scale": c.cal_scale, "test_scale": c.test_scale, "test_fold_scale": c.test_fold_scale,
    });
    std::fs::write(&input, data.to_string()).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/conformal_reference.py"
    );
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn floats(v: &Value, key: &str) -> Vec<f64> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("MAPIE output `{key}`"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn split_conformal_and_cv_plus_bounds_equal_mapies() {
    let Some(python) = common::python(&["mapie", "sklearn"]) else {
        return;
    };
    for (seed, n_cal, folds, level) in [(1, 157, 5, 0.9), (2, 40, 4, 0.8), (3, 503, 10, 0.95)] {
        let c = case(seed, n_cal, 60, folds);
        let theirs = mapie(&python, &c, level);
        let q = conformal::split_half_width(&c.cal_y, &c.cal_pred, level).unwrap();
        let calibration: Vec<Calibration> = c
            .cal_y
            .iter()
            .zip(&c.cal_pred)
            .zip(&c.cal_fold)
            .map(|((y, p), &fold)| Calibration {
                fold,
                residual: (y - p).abs(),
            })
            .collect();
        let (split_low, split_high) = (floats(&theirs, "split_low"), floats(&theirs, "split_high"));
        let (cv_low, cv_high) = (
            floats(&theirs, "cv_plus_low"),
            floats(&theirs, "cv_plus_high"),
        );
        for i in 0..c.test_pred.len() {
            let ours = conformal::split_interval(c.test_pred[i], q);
            assert_eq!(
                (ours.0.to_bits(), ours.1.to_bits()),
                (split_low[i].to_bits(), split_high[i].to_bits()),
                "split conformal, case {seed}, point {i}: ours {ours:?}, MAPIE ({}, {})",
                split_low[i],
                split_high[i]
            );
            let ours =
                conformal::cv_plus_interval(&calibration, &c.test_fold_pred[i], level).unwrap();
            assert_eq!(
                (ours.0.to_bits(), ours.1.to_bits()),
                (cv_low[i].to_bits(), cv_high[i].to_bits()),
                "CV+, case {seed}, point {i}: ours {ours:?}, MAPIE ({}, {})",
                cv_low[i],
                cv_high[i]
            );
        }
        // Normalised by a difficulty scale: split against MAPIE's ResidualNormalisedScore,
        // CV+ against its definition written in numpy (MAPIE has no normalised CV+).
        let q =
            conformal::scaled_split_quantile(&c.cal_y, &c.cal_pred, &c.cal_scale, level).unwrap();
        let (low, high) = (
            floats(&theirs, "scaled_split_low"),
            floats(&theirs, "scaled_split_high"),
        );
        let (cv_low, cv_high) = (
            floats(&theirs, "scaled_cv_plus_low"),
            floats(&theirs, "scaled_cv_plus_high"),
        );
        for i in 0..c.test_pred.len() {
            let ours = conformal::scaled_split_interval(c.test_pred[i], q, c.test_scale[i]);
            assert_eq!(
                (ours.0.to_bits(), ours.1.to_bits()),
                (low[i].to_bits(), high[i].to_bits()),
                "normalised split, case {seed}, point {i}: ours {ours:?}, MAPIE ({}, {})",
                low[i],
                high[i]
            );
            let ours = conformal::scaled_cv_plus_interval(
                &calibration,
                &c.cal_scale,
                &c.test_fold_pred[i],
                &c.test_fold_scale[i],
                level,
            )
            .unwrap();
            assert_eq!(
                (ours.0.to_bits(), ours.1.to_bits()),
                (cv_low[i].to_bits(), cv_high[i].to_bits()),
                "normalised CV+, case {seed}, point {i}: ours {ours:?}, numpy ({}, {})",
                cv_low[i],
                cv_high[i]
            );
        }
    }
}

/// A 40×40-tile synthetic city (its emission has a known noise term), ridge and the mean under
/// 5-fold spatial CV with 2 seeds: the tables' pooled coverage of the 90 % intervals lies
/// within 87–93 %.
const SPEC: &str = "
name: coverage
seeds: [1, 2]
dataset: {kind: synthetic, preset: polycentric, width: 40, height: 40, tile_side: 8, poi_categories: 4, seed: 9}
split: {kind: spatial_cv, folds: 5, block: 8}
variants:
  ridge: {baseline: {kind: ridge, columns: [ln_population, ln_gdp, 'poi:*']}}
  mean: {baseline: {kind: mean}}
";

#[test]
fn ninety_percent_intervals_cover_87_to_93_percent_of_a_synthetic_city() {
    let root = tempfile::tempdir().unwrap();
    let experiment = Experiment::parse(SPEC, "coverage.yaml", &[]).unwrap();
    let options = common::run_options(root.path());
    let (tally, md) = common::sweep(&experiment, &options, &[]);
    assert!(tally.failed.is_empty(), "{:?}", tally.failed);
    assert!(md.contains("coverage.md"), "{md}");
    let rows = read_coverage(root.path());
    for variant in ["ridge", "mean"] {
        let (coverage, folds, tiles) = rows
            .iter()
            .find(|r| r.0 == variant)
            .map(|r| (r.1, r.2, r.3))
            .unwrap_or_else(|| panic!("no coverage row for {variant}: {rows:?}"));
        assert_eq!(folds, 10, "{variant}");
        assert!(tiles > 1000, "{variant}: {tiles} tiles");
        assert!(
            (0.87..=0.93).contains(&coverage),
            "{variant}: coverage {coverage} of the 90 % intervals"
        );
    }
}

/// (variant, coverage, folds, tiles) from coverage.csv.
fn read_coverage(dir: &Path) -> Vec<(String, f64, usize, usize)> {
    let text = std::fs::read_to_string(dir.join("coverage.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (v, c, f, t) = (col("variant"), col("coverage"), col("folds"), col("tiles"));
    lines
        .map(|l| {
            let x: Vec<&str> = l.split(',').collect();
            (
                x[v].to_string(),
                x[c].parse().unwrap(),
                x[f].parse().unwrap(),
                x[t].parse().unwrap(),
            )
        })
        .collect()
}
