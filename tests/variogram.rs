//! `split.buffer: auto`: the variogram pinned to scikit-gstat on real Beijing labels
//! (tests/fixtures/variogram_beijing.json, from scripts/variogram_reference.py), the runner's
//! `split_buffer.json`, the window-radius floor, and numeric buffers resolving as before.

use std::path::Path;

use crate::common;
use opencarbon::data::split::{AutoBuffer, Buffer};
use opencarbon::data::synthetic::{generate, Preset, SynthConfig};
use opencarbon::data::variogram::{self, Empirical, Spherical};
use opencarbon::data::{odiac, City};
use opencarbon::spec::{Experiment, RunSpec};
use serde_json::Value;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/variogram_beijing.json"
);
/// The real city `name` through the project's loader, or None (printing why) when the real data
/// (OPENCARBON_DATA, default ../shared/data) are missing; OPENCARBON_REQUIRE_TOOLS=1 makes that
/// a failure.
fn real_city(name: &str) -> Option<City> {
    let path = common::shared_data_file(&format!("odiac-tiles/labels/{name}.csv"))?;
    Some(odiac::import(&path).unwrap().0)
}

/// Tile keys and ln emission of the samples (emission > 0), as the script reads them.
fn samples(city: &City) -> (Vec<(f64, f64)>, Vec<f64>) {
    city.samples()
        .into_iter()
        .map(|i| {
            (
                (city.keys[i].x as f64, city.keys[i].y as f64),
                city.target(i),
            )
        })
        .unzip()
}

fn numbers(v: &Value, key: &str) -> Vec<f64> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("fixture `{key}`"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs())
}

/// The fit's objective: weighted squared error with weights N/h².
fn loss(e: &Empirical, m: &Spherical) -> f64 {
    e.bins
        .iter()
        .zip(&e.semivariance)
        .zip(&e.counts)
        .map(|((&h, &g), &n)| n as f64 / (h * h) * (g - m.at(h)).powi(2))
        .sum()
}

#[test]
fn beijing_variogram_matches_scikit_gstat() {
    let Some(city) = real_city("Beijing") else {
        return;
    };
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    let (coords, values) = samples(&city);
    assert_eq!(coords.len() as u64, fixture["n_samples"].as_u64().unwrap());
    let maxlag = variogram::default_maxlag(&coords);
    assert!(
        close(maxlag, fixture["maxlag"].as_f64().unwrap(), 1e-12),
        "{maxlag}"
    );

    let e = variogram::empirical(&coords, &values, variogram::N_LAGS, maxlag);
    let counts: Vec<u64> = fixture["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    assert_eq!(e.counts, counts);
    for (key, ours) in [("bins", &e.bins), ("semivariance", &e.semivariance)] {
        let theirs = numbers(&fixture, key);
        assert_eq!(ours.len(), theirs.len(), "{key}");
        for (a, b) in ours.iter().zip(&theirs) {
            assert!(close(*a, *b, 1e-9), "{key}: ours {a}, scikit-gstat {b}");
        }
    }

    // The fit is looser than the empirical variogram: scikit-gstat runs scipy's trust-region
    // reflective solver from its upper bounds, ours a range grid with exact sill and nugget
    // for each range, so the two may stop at slightly different points of a flat objective.
    let ours = variogram::fit_spherical(&e).unwrap();
    let theirs = Spherical {
        range: fixture["range"].as_f64().unwrap(),
        sill: fixture["sill"].as_f64().unwrap(),
        nugget: fixture["nugget"].as_f64().unwrap(),
    };
    eprintln!("Beijing: ours {ours:?}, scikit-gstat {theirs:?}");
    assert!(
        close(ours.range, theirs.range, 0.05),
        "range: ours {}, scikit-gstat {}",
        ours.range,
        theirs.range
    );
    // Same objective, same bounds: ours is no worse than scikit-gstat's optimum.
    assert!(
        loss(&e, &ours) <= loss(&e, &theirs) * (1.0 + 1e-9),
        "loss: ours {}, scikit-gstat {}",
        loss(&e, &ours),
        loss(&e, &theirs)
    );

    // The buffer `auto` gives over every sample: the range rounded up.
    let auto = AutoBuffer::resolve(&city, &city.samples(), 1).unwrap();
    assert_eq!(auto.buffer, ours.range.ceil() as usize);
    assert_eq!(auto.bins, e.bins);
}

/// `n` independent pseudo-random numbers in [0, 1) (splitmix64).
fn noise(n: usize, seed: u64) -> Vec<f64> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64
        })
        .collect()
}

/// A synthetic city whose ln emission is replaced by independent noise: no spatial structure.
fn noise_city(width: usize) -> City {
    let mut city = generate(&SynthConfig {
        preset: Preset::Monocentric,
        width,
        height: width,
        tile_side: 8,
        poi_categories: 4,
        seed: 5,
        signal: Default::default(),
    })
    .unwrap();
    city.emission = noise(city.len(), 7)
        .iter()
        .map(|u| (3.0 * u).exp())
        .collect();
    city
}

/// The range never narrows the buffer below the floor (the window radius). Here the target is
/// noise: its variogram is flat, and the fit still finds a weak structure (a partial sill of a
/// few per cent of the nugget) with a range of several tiles, below this floor.
#[test]
fn auto_never_falls_below_the_floor() {
    let city = noise_city(20);
    let auto = AutoBuffer::resolve(&city, &city.samples(), 10).unwrap();
    assert!(auto.range_tiles < 10.0, "{auto:?}");
    assert_eq!(auto.buffer, 10, "{auto:?}");
    let unfloored = AutoBuffer::resolve(&city, &city.samples(), 0).unwrap();
    assert_eq!(unfloored.buffer, auto.range_tiles.ceil() as usize);
}

/// `ridge` on lagged columns reads a 3×3 window: the floor is 1.
fn auto_spec(dataset: &str, split: &str) -> String {
    format!(
        "name: auto-buffer
dataset: {dataset}
split: {split}
variants:
  ridge_lag: {{baseline: {{kind: ridge, columns: [ln_population, ln_gdp, 'lag1:ln_population']}}}}
"
    )
}

/// 8×8-tile blocks: the buffer `auto` gives on a 24×24 monocentric city (4 or 5 tiles) leaves
/// training tiles in every fold; 3×3 blocks would leave none.
const SPATIAL_CV: &str = "{kind: spatial_cv, folds: 3, block: 8, buffer: auto}";
const MONOCENTRIC: &str = "{kind: synthetic, preset: monocentric, width: 24, height: 24, tile_side: 8, poi_categories: 4, seed: 5}";

/// Runs `e` into `out` and checks each run's `split_buffer.json` against its `split.csv`:
/// the rule, the buffer (the range rounded up, at least the floor), and no training or
/// validation tile within the buffer of a test tile. Returns the buffers.
fn run_and_check(e: &Experiment, out: &Path) -> Vec<i64> {
    let (report, md) = common::sweep(e, &common::run_options(out), &[]);
    assert_eq!(
        (report.done, report.failed.len()),
        (e.runs.len(), 0),
        "{md}"
    );
    let mut buffers = Vec::new();
    for run in &e.runs {
        let dir = out.join("runs").join(run.run_id());
        let text = std::fs::read_to_string(dir.join("split_buffer.json")).unwrap();
        let record: Value = serde_json::from_str(&text).unwrap();
        let buffer = record["buffer"].as_u64().unwrap() as i64;
        let range = record["range_tiles"].as_f64().unwrap();
        assert_eq!(record["rule"], "auto: spherical variogram range");
        assert_eq!(record["floor"], 1);
        assert!(buffer >= 1, "{text}");
        assert_eq!(buffer, (range.ceil() as i64).max(1), "{text}");
        for key in ["bins", "semivariance", "pairs"] {
            assert_eq!(record[key].as_array().unwrap().len(), 10, "{key}");
        }
        let split = std::fs::read_to_string(dir.join("split.csv")).unwrap();
        let rows: Vec<(i64, i64, &str)> = split
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2])
            })
            .collect();
        let test: Vec<(i64, i64)> = rows
            .iter()
            .filter(|r| r.2 == "test")
            .map(|r| (r.0, r.1))
            .collect();
        for &(x, y, part) in &rows {
            if part == "train" || part == "valid" {
                assert!(
                    test.iter()
                        .all(|&(tx, ty)| (tx - x).abs().max((ty - y).abs()) > buffer),
                    "({x}, {y}) in {part} within {buffer} of a test tile"
                );
            }
        }
        buffers.push(buffer);
    }
    buffers
}

/// Spatial CV with `buffer: auto`: each fold's buffer is the autocorrelation range of its
/// candidate training tiles, wider than the window, and each run records its variogram.
#[test]
fn buffer_auto_runs_spatial_cv_and_records_its_variogram() {
    let e = Experiment::parse(&auto_spec(MONOCENTRIC, SPATIAL_CV), "auto.yaml", &[]).unwrap();
    assert_eq!(e.runs.len(), 3);
    for run in &e.runs {
        assert_eq!(run.split.buffer(), Some(Buffer::Auto { floor: 1 }));
        assert_eq!(run.split.guaranteed_buffer(), Some(1));
        assert_eq!(run.leak(), None);
        // The resolved spec carries the floor, and re-run alone it is the same run.
        let yaml = run.resolved_yaml();
        assert!(yaml.contains("buffer: max(auto, 1)"), "{yaml}");
        let again = RunSpec::parse(&yaml, "resolved.yaml", &[]).unwrap();
        assert_eq!(again.run_id(), run.run_id());
    }
    let tmp = tempfile::tempdir().unwrap();
    let buffers = run_and_check(&e, tmp.path());
    assert!(buffers.iter().all(|&b| b > 1), "{buffers:?}");
}

/// `holdout` takes `auto` too: the strip's test tiles are the range away from training.
#[test]
fn buffer_auto_widens_a_holdout() {
    let text = auto_spec(
        MONOCENTRIC,
        "{kind: holdout, test: {bbox: {x: [0, 5], y: [0, 23]}}, block: 3, buffer: auto}",
    );
    let e = Experiment::parse(&text, "auto.yaml", &[]).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let buffers = run_and_check(&e, tmp.path());
    assert!(buffers[0] > 1, "{buffers:?}");
}

#[test]
fn buffer_autox_is_an_error_naming_split_buffer() {
    let text = auto_spec(MONOCENTRIC, &SPATIAL_CV.replace("auto", "autox"));
    let e = format!(
        "{:#}",
        Experiment::parse(&text, "autox.yaml", &[]).unwrap_err()
    );
    assert!(e.contains("split.buffer"), "{e}");
    assert!(e.contains("a number of tiles or `auto`"), "{e}");
    // A single run's spec says the same.
    let run = "name: autox
dataset: {kind: synthetic, preset: monocentric, width: 8, height: 8}
split: {kind: holdout, test: {bbox: {x: [0, 2], y: [0, 7]}}, buffer: autox}
baseline: {kind: mean}
";
    let e = format!("{:#}", RunSpec::parse(run, "run.yaml", &[]).unwrap_err());
    assert!(e.contains("split.buffer"), "{e}");
}

/// Numeric buffers serialise as the plain numbers they were: every run of the committed
/// baselines-spatial-cv sweep (`buffer: 1`) resolves to its archived spec, byte for byte, and
/// so keeps its run id.
#[test]
fn numeric_buffers_resolve_as_before() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let e = Experiment::load(
        &root.join("experiments/real/baselines-spatial-cv.yaml"),
        &[],
    )
    .unwrap();
    let records =
        opencarbon::record::archive::read(&root.join("results/baselines-spatial-cv")).unwrap();
    assert_eq!(records.len(), e.runs.len());
    for run in &e.runs {
        assert_eq!(run.split.buffer(), Some(Buffer::Tiles(1)));
        let record = records
            .iter()
            .find(|r| r.run_id == run.run_id())
            .unwrap_or_else(|| panic!("run {} is not archived", run.run_id()));
        assert_eq!(record.spec_yaml, run.resolved_yaml());
        assert!(record.spec_yaml.contains("buffer: 1\n"));
    }
}
