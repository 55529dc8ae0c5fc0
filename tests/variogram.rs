//! `split.buffer: auto`: the variogram pinned to scikit-gstat on real Beijing labels
//! (tests/fixtures/variogram_beijing.json, from scripts/variogram_reference.py), the detrended
//! variograms (`{auto: {detrend: …}}`) pinned to numpy and scikit-gstat on real Beijing and
//! Shanghai (tests/fixtures/variogram_detrended.json), the runner's `split_buffer.json`, the
//! window-radius floor, and numeric buffers resolving as before.

use std::path::Path;

use crate::common;
use opencarbon::data::split::SplitConfig;
use opencarbon::data::split::{AutoBuffer, Buffer};
use opencarbon::data::synthetic::{generate, Preset, SynthConfig};
use opencarbon::data::variogram::{self, Detrend, Empirical, Spherical};
use opencarbon::data::{odiac, City};
use opencarbon::spec::{Experiment, RunSpec};
use serde_json::Value;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/variogram_beijing.json"
);
const DETRENDED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/variogram_detrended.json"
);
const DETRENDS: [Detrend; 3] = [Detrend::None, Detrend::Linear, Detrend::Quadratic];
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
    let auto = AutoBuffer::resolve(&city, &city.samples(), 1, Detrend::None).unwrap();
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
    let auto = AutoBuffer::resolve(&city, &city.samples(), 10, Detrend::None).unwrap();
    assert!(auto.range_tiles < 10.0, "{auto:?}");
    assert_eq!(auto.buffer, 10, "{auto:?}");
    let unfloored = AutoBuffer::resolve(&city, &city.samples(), 0, Detrend::None).unwrap();
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
        assert_eq!(run.split.buffer(), Some(Buffer::auto(1)));
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

fn detrended_fixture() -> Value {
    serde_json::from_str(&std::fs::read_to_string(DETRENDED).unwrap()).unwrap()
}

fn all_close(key: &str, ours: &[f64], theirs: &[f64], rel: f64) {
    assert_eq!(ours.len(), theirs.len(), "{key}");
    for (a, b) in ours.iter().zip(theirs) {
        assert!(close(*a, *b, rel), "{key}: ours {a}, reference {b}");
    }
}

/// Our trend surface against numpy's lstsq (`reference`: a trend of the fixture or of
/// `variogram_reference.py --trend-only`).
fn check_trend(ours: &variogram::Trend, reference: &Value) {
    assert_eq!(reference["detrend"], ours.detrend.name());
    let terms: Vec<&str> = reference["terms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(terms, ours.terms);
    all_close(
        "origin",
        &[ours.origin.0, ours.origin.1],
        &numbers(reference, "origin"),
        1e-12,
    );
    all_close(
        "coefficients",
        &ours.coefficients,
        &numbers(reference, "coefficients"),
        1e-8,
    );
    let rss: f64 = ours.residuals.iter().map(|r| r * r).sum();
    let theirs = reference["residual_sum_of_squares"].as_f64().unwrap();
    assert!(close(rss, theirs, 1e-10), "rss: ours {rss}, numpy {theirs}");
    let theirs = reference["r2"].as_f64().unwrap();
    assert!(
        close(ours.r2, theirs, 1e-8),
        "R²: ours {}, numpy {theirs}",
        ours.r2
    );
}

/// `buffer: {auto: {detrend: …}}` on the real cities: the trend surface (numpy's lstsq), the
/// residuals' empirical variogram (bins, pairs, semivariance: scikit-gstat, to 1e-9) and the
/// fitted range (5 %, as above) for no trend, a linear and a quadratic one, from
/// tests/fixtures/variogram_detrended.json (`scripts/variogram_reference.py
/// --detrended-fixture`). The quadratic trend (the city-wide fall of ln emission from the centre)
/// takes the range from the lag span down to 20 tiles (Beijing) and 28 (Shanghai); a plane, which
/// cannot bend round a centre, leaves it.
#[test]
fn detrended_variograms_match_numpy_and_scikit_gstat() {
    let fixture = detrended_fixture();
    for name in ["Beijing", "Shanghai"] {
        let Some(city) = real_city(name) else {
            return;
        };
        let (coords, values) = samples(&city);
        let mut ranges = Vec::new();
        for detrend in DETRENDS {
            let reference = &fixture["cities"][name][detrend.name()];
            let what = format!("{name}, detrend {}", detrend.name());
            assert_eq!(
                coords.len() as u64,
                reference["n_samples"].as_u64().unwrap(),
                "{what}"
            );
            let trend = variogram::detrend(&coords, &values, detrend).unwrap();
            if detrend == Detrend::None {
                assert_eq!(trend.residuals, values);
            } else {
                check_trend(&trend, reference);
            }
            let maxlag = variogram::default_maxlag(&coords);
            assert!(close(maxlag, reference["maxlag"].as_f64().unwrap(), 1e-12));
            let e = variogram::empirical(&coords, &trend.residuals, variogram::N_LAGS, maxlag);
            let counts: Vec<u64> = reference["counts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_u64().unwrap())
                .collect();
            assert_eq!(e.counts, counts, "{what}");
            all_close("bins", &e.bins, &numbers(reference, "bins"), 1e-9);
            all_close(
                "semivariance",
                &e.semivariance,
                &numbers(reference, "semivariance"),
                1e-9,
            );

            let ours = variogram::fit_spherical(&e).unwrap();
            let theirs = Spherical {
                range: reference["range"].as_f64().unwrap(),
                sill: reference["sill"].as_f64().unwrap(),
                nugget: reference["nugget"].as_f64().unwrap(),
            };
            eprintln!("{what}: ours {ours:?}, scikit-gstat {theirs:?}");
            assert!(
                close(ours.range, theirs.range, 0.05),
                "{what}: range: ours {}, scikit-gstat {}",
                ours.range,
                theirs.range
            );
            assert!(
                loss(&e, &ours) <= loss(&e, &theirs) * (1.0 + 1e-9),
                "{what}: loss: ours {}, scikit-gstat {}",
                loss(&e, &ours),
                loss(&e, &theirs)
            );

            // What `auto` records: the trend, the range, the buffer (the range rounded up).
            let auto = AutoBuffer::resolve(&city, &city.samples(), 1, detrend).unwrap();
            assert_eq!(auto.detrend, detrend);
            assert_eq!(auto.trend.is_some(), detrend != Detrend::None);
            if let Some(t) = &auto.trend {
                assert_eq!(t.coefficients, trend.coefficients);
            }
            assert_eq!(auto.range_tiles, ours.range);
            assert_eq!(auto.buffer, (ours.range.ceil() as usize).max(1));
            assert_eq!(auto.semivariance, e.semivariance);
            ranges.push(ours.range);
        }
        // The quadratic trend is what shortens the range.
        assert!(ranges[2] < 0.7 * ranges[0], "{name}: ranges {ranges:?}");
    }
}

/// The trend surfaces computed live by numpy (`variogram_reference.py --trend-only`, which needs
/// numpy only) on the real cities, against ours and the fixture's: the fixture is current.
#[test]
fn trend_surfaces_match_numpy_live() {
    let Some(labels) = common::shared_data_file("odiac-tiles/labels") else {
        return;
    };
    let Some(python) = common::python(&["numpy"]) else {
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/variogram_reference.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg("--trend-only")
        .arg("--labels")
        .arg(&labels)
        .args(["Beijing", "Shanghai"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let live: Value = serde_json::from_slice(&out.stdout).unwrap();
    let fixture = detrended_fixture();
    for name in ["Beijing", "Shanghai"] {
        let city = real_city(name).unwrap();
        let (coords, values) = samples(&city);
        for detrend in [Detrend::Linear, Detrend::Quadratic] {
            let ours = variogram::detrend(&coords, &values, detrend).unwrap();
            check_trend(&ours, &live[name][detrend.name()]);
            let (a, b) = (
                &live[name][detrend.name()],
                &fixture["cities"][name][detrend.name()],
            );
            for key in ["origin", "coefficients"] {
                all_close(key, &numbers(a, key), &numbers(b, key), 1e-12);
            }
        }
    }
}

/// A plane needs three tiles off one line; tiles on one line cannot fix a trend in the other
/// coordinate; a trend that fits the values exactly leaves zero residuals.
#[test]
fn detrend_refuses_an_undetermined_surface() {
    let line: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0)).collect();
    let z: Vec<f64> = (0..10).map(|i| (i as f64).sin()).collect();
    assert!(variogram::detrend(&line, &z, Detrend::Linear).is_none());
    assert!(variogram::detrend(&line[..3], &z[..3], Detrend::None).is_some());
    let grid: Vec<(f64, f64)> = (0..25).map(|i| ((i % 5) as f64, (i / 5) as f64)).collect();
    assert!(variogram::detrend(&grid[..3], &z[..3], Detrend::Linear).is_none());
    let plane: Vec<f64> = grid.iter().map(|&(x, y)| 2.0 + 0.5 * x - 3.0 * y).collect();
    let t = variogram::detrend(&grid, &plane, Detrend::Linear).unwrap();
    assert!(t.residuals.iter().all(|r| r.abs() < 1e-12), "{t:?}");
    assert!((t.r2 - 1.0).abs() < 1e-12);
    let bowl: Vec<f64> = grid
        .iter()
        .map(|&(x, y)| (x - 2.0).powi(2) + x * y - 0.25 * (y - 1.0).powi(2))
        .collect();
    let t = variogram::detrend(&grid, &bowl, Detrend::Quadratic).unwrap();
    assert!(t.residuals.iter().all(|r| r.abs() < 1e-12), "{t:?}");
    // A plane cannot bend round the bowl's centre.
    let t = variogram::detrend(&grid, &bowl, Detrend::Linear).unwrap();
    assert!(t.r2 < 1.0 - 1e-3, "{t:?}");
}

const DETRENDED_CV: &str =
    "{kind: spatial_cv, folds: 3, block: 8, buffer: {auto: {detrend: quadratic}}}";

/// `buffer: {auto: {detrend: quadratic}}`: parsed, resolved with the window floor into a spec
/// that re-runs alone as the same run (and another run than plain `auto`), run, and recorded
/// with its trend in `split_buffer.json`.
#[test]
fn buffer_auto_detrend_resolves_runs_and_records_its_trend() {
    let e = Experiment::parse(&auto_spec(MONOCENTRIC, DETRENDED_CV), "auto.yaml", &[]).unwrap();
    let plain = Experiment::parse(&auto_spec(MONOCENTRIC, SPATIAL_CV), "auto.yaml", &[]).unwrap();
    assert_eq!(e.runs.len(), 3);
    for (run, plain) in e.runs.iter().zip(&plain.runs) {
        let quadratic = Buffer::Auto {
            floor: 1,
            detrend: Detrend::Quadratic,
        };
        assert_eq!(run.split.buffer(), Some(quadratic));
        assert_eq!(run.split.guaranteed_buffer(), Some(1));
        assert_eq!(run.leak(), None);
        let yaml = run.resolved_yaml();
        assert!(
            yaml.contains("buffer:\n") && yaml.contains("detrend: quadratic\n"),
            "{yaml}"
        );
        assert!(yaml.contains("floor: 1\n"), "{yaml}");
        let again = RunSpec::parse(&yaml, "resolved.yaml", &[]).unwrap();
        assert_eq!(again.split.buffer(), Some(quadratic));
        assert_eq!(again.run_id(), run.run_id());
        assert_ne!(run.run_id(), plain.run_id());
        assert!(!plain.resolved_yaml().contains("detrend"));
    }
    let tmp = tempfile::tempdir().unwrap();
    let buffers = run_and_check(&e, tmp.path());
    for (run, buffer) in e.runs.iter().zip(buffers) {
        let dir = tmp.path().join("runs").join(run.run_id());
        let text = std::fs::read_to_string(dir.join("split_buffer.json")).unwrap();
        let record: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(record["detrend"], "quadratic", "{text}");
        assert_eq!(record["trend"]["terms"].as_array().unwrap().len(), 6);
        assert_eq!(record["trend"]["coefficients"].as_array().unwrap().len(), 6);
        let r2 = record["trend"]["r2"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&r2), "{text}");
        assert_eq!(record["buffer"].as_i64().unwrap(), buffer);
    }
    // Plain `auto` records that it took no trend out.
    let tmp = tempfile::tempdir().unwrap();
    run_and_check(&plain, tmp.path());
    let dir = tmp.path().join("runs").join(plain.runs[0].run_id());
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("split_buffer.json")).unwrap())
            .unwrap();
    assert_eq!(record["detrend"], "none");
    assert!(record.get("trend").is_none());
}

/// The map spellings of `auto`: `detrend: none` is plain `auto` (same run), a floor may be
/// given, and a wrong trend or key is an error naming `split.buffer`.
#[test]
fn buffer_auto_map_spellings() {
    let run_id = |split: &str| -> String {
        let e = Experiment::parse(&auto_spec(MONOCENTRIC, split), "auto.yaml", &[]).unwrap();
        e.runs[0].run_id()
    };
    assert_eq!(
        run_id(&SPATIAL_CV.replace("auto", "{auto: {detrend: none}}")),
        run_id(SPATIAL_CV)
    );
    assert_eq!(
        run_id(&SPATIAL_CV.replace("auto", "{auto: {}}")),
        run_id(SPATIAL_CV)
    );
    assert_eq!(
        run_id(&SPATIAL_CV.replace("auto", "{auto: }")),
        run_id(SPATIAL_CV)
    );
    let e = Experiment::parse(
        &auto_spec(
            MONOCENTRIC,
            &SPATIAL_CV.replace("auto", "{auto: {detrend: linear, floor: 3}}"),
        ),
        "auto.yaml",
        &[],
    )
    .unwrap();
    assert_eq!(
        e.runs[0].split.buffer(),
        Some(Buffer::Auto {
            floor: 3,
            detrend: Detrend::Linear
        })
    );
    for (bad, says) in [
        ("{auto: {detrend: cubic}}", "cubic"),
        ("{auto: {detrnd: linear}}", "detrnd"),
        ("{autox: {detrend: linear}}", "autox"),
        ("{auto: {detrend: linear}, floor: 2}", "floor"),
    ] {
        let text = auto_spec(MONOCENTRIC, &SPATIAL_CV.replace("auto", bad));
        let e = format!(
            "{:#}",
            Experiment::parse(&text, "bad.yaml", &[]).unwrap_err()
        );
        assert!(e.contains("split.buffer"), "{bad}: {e}");
        assert!(e.contains(says), "{bad}: {e}");
    }
}

/// The real cities under the experiments' spatial CV (experiments/real/*.yaml: 5 folds of
/// 8×8-tile blocks, seed 1) with `buffer: {auto: {detrend: quadratic}}`: each fold's buffer is
/// 2 to 4 blocks wide (Beijing 19 to 22 tiles, Shanghai 25 to 30), and leaves no training tiles
/// (9 folds of 10) or 4 (Beijing's fold 4): too wide for these blocks (docs/experiments.md).
#[test]
fn detrended_auto_on_the_real_spatial_cv_leaves_no_training() {
    for name in ["Beijing", "Shanghai"] {
        let Some(city) = real_city(name) else {
            return;
        };
        for fold in 0..5 {
            let config: SplitConfig = serde_norway::from_str(&format!(
                "{{kind: spatial_cv, folds: 5, block: 8, buffer: {{auto: {{detrend: quadratic, floor: 1}}}}, fold: {fold}}}"
            ))
            .unwrap();
            let (train, buffer) = match config.split_recorded(&city, 1) {
                Ok((split, auto)) => (split.train.len(), auto.unwrap().buffer),
                Err(e) => {
                    let e = format!("{e:#}");
                    assert!(e.contains("the train split"), "{e}");
                    let buffer = e
                        .split("`buffer: auto` is ")
                        .nth(1)
                        .and_then(|t| t.split(' ').next())
                        .and_then(|n| n.parse::<usize>().ok())
                        .unwrap_or_else(|| panic!("{e}"));
                    (0, buffer)
                }
            };
            eprintln!("{name} fold {fold}: buffer {buffer}, train {train}");
            assert!((16..=32).contains(&buffer), "{name} fold {fold}: {buffer}");
            assert!(
                train * 100 < city.samples().len(),
                "{name} fold {fold}: {train} training tiles"
            );
        }
    }
}
