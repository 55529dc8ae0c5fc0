//! `opencarbon predict`: placement, the GeoTIFF (read back by rasterio when the test command set
//! OPENCARBON_PYTHON), ensembles, old run directories and bad areas.

use crate::common;

use std::path::{Path, PathBuf};

use opencarbon::checked::Checked;
use opencarbon::data::{canonical, TileKey};
use opencarbon::predict::{self, geo};
use opencarbon::runner::{self, RunOutcome};
use opencarbon::spec::RunSpec;

const DATASET: &str = "{kind: synthetic, preset: monocentric, width: 8, height: 8, tile_side: 32, poi_categories: 4, seed: 2}";

fn spec(seed: u64) -> Checked<RunSpec> {
    spec_named(seed, None)
}

/// `dataset_name` as a sweep over `datasets:` sets it.
fn spec_named(seed: u64, dataset_name: Option<&str>) -> Checked<RunSpec> {
    let name = dataset_name
        .map(|n| format!("dataset_name: {n}\n"))
        .unwrap_or_default();
    let text = format!(
        "name: predict-test\nseed: {seed}\nvariant: full\n{name}dataset: {DATASET}\n\
         train: {{epochs: 2, batch_size: 16, contrastive_epoch: 1, validate_every: 1, standardize_target: true}}\n"
    );
    RunSpec::parse(&text, "predict-test.yaml", &[]).unwrap()
}

fn train(out: &Path, seed: u64) -> PathBuf {
    train_spec(out, &spec(seed))
}

fn train_spec(out: &Path, spec: &Checked<RunSpec>) -> PathBuf {
    let options = common::run_options(out);
    let (dir, outcome) = runner::run(spec, &options).unwrap();
    assert!(matches!(outcome, RunOutcome::Done(_)));
    dir
}

pub(crate) fn column(path: &Path, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let c = header.iter().position(|h| *h == name).unwrap();
    lines
        .map(|l| l.split(',').nth(c).unwrap().to_string())
        .collect()
}

#[test]
fn affine_fit_recovers_an_exact_placement_and_polygons_turn_left() {
    let truth = |x: i64, y: i64| {
        let (u, v) = (x as f64, y as f64);
        (
            31.0 + 0.0075 * v + 0.0001 * u,
            121.0 + 0.009 * u - 0.0002 * v,
        )
    };
    let corners: Vec<(TileKey, (f64, f64))> = (0..5)
        .flat_map(|x| {
            (0..4).map(move |y| {
                (
                    TileKey {
                        x: 1000 + x,
                        y: 400 + y,
                    },
                    truth(1000 + x, 400 + y),
                )
            })
        })
        .collect();
    let g = geo::Georef::fit(&corners).unwrap();
    assert!(g.residual_max_m < 1e-3, "residual {} m", g.residual_max_m);
    let (lon, lat) = g.at(1002.0, 401.0);
    let (tlat, tlon) = truth(1002, 401);
    assert!((lon - tlon).abs() < 1e-9 && (lat - tlat).abs() < 1e-9);
    let ring = geo::polygon(TileKey { x: 1002, y: 401 }, &g);
    assert_eq!(ring.len(), 5);
    assert_eq!(ring[0], ring[4]);
    let area2: f64 = (0..4)
        .map(|i| ring[i][0] * ring[i + 1][1] - ring[i + 1][0] * ring[i][1])
        .sum();
    assert!(area2 > 0.0, "RFC 7946 exterior rings are counter-clockwise");
    // North up: a tile with larger y (further north here) lies on an earlier raster row.
    let keys: Vec<TileKey> = corners.iter().map(|c| c.0).collect();
    let grid = geo::Grid::new(&keys, &g).unwrap();
    assert_eq!((grid.cols, grid.rows), (5, 4));
    assert_eq!(grid.pixel(TileKey { x: 1000, y: 403 }), (0, 0));
    assert_eq!(grid.pixel(TileKey { x: 1004, y: 400 }), (4, 3));
    // Three corners on one line place nothing.
    let line: Vec<_> = (0..3)
        .map(|x| (TileKey { x, y: 0 }, (0.0, x as f64)))
        .collect();
    assert!(geo::Georef::fit(&line).is_err());
}

#[test]
fn predict_reproduces_the_run_maps_new_cities_and_reports_its_band() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = [train(tmp.path(), 1), train(tmp.path(), 2)];
    let device = common::device();

    // On its own city, predict gives exactly the run's test predictions.
    let city_yaml = tmp.path().join("city.yaml");
    std::fs::write(&city_yaml, DATASET).unwrap();
    let one = vec![predict::open_run(&runs[0], &device).unwrap()];
    let mut area = predict::load_area(&city_yaml).unwrap();
    let p = predict::predict_area(&one, &mut area, &device, 64, 0, Default::default()).unwrap();
    let own = tmp.path().join("own");
    predict::write_outputs(&own, &one, &area, &p, 0.9)
        .unwrap()
        .unwrap();
    let mapped: std::collections::HashMap<(String, String), String> =
        column(&own.join("predictions.csv"), "x")
            .into_iter()
            .zip(column(&own.join("predictions.csv"), "y"))
            .zip(column(&own.join("predictions.csv"), "predicted_ln"))
            .collect();
    let run_csv = runs[0].join("predictions.csv");
    // split.csv records the run's split: its test tiles are the ones predictions.csv scores.
    let split_csv = runs[0].join("split.csv");
    let mut split_test: Vec<(String, String)> = column(&split_csv, "x")
        .into_iter()
        .zip(column(&split_csv, "y"))
        .zip(column(&split_csv, "split"))
        .filter(|(_, s)| s == "test")
        .map(|(k, _)| k)
        .collect();
    let mut scored: Vec<(String, String)> = column(&run_csv, "x")
        .into_iter()
        .zip(column(&run_csv, "y"))
        .collect();
    split_test.sort();
    scored.sort();
    assert_eq!(split_test, scored);
    let tested = column(&run_csv, "x")
        .into_iter()
        .zip(column(&run_csv, "y"))
        .zip(column(&run_csv, "prediction"));
    let mut n = 0;
    for (key, value) in tested {
        let a: f64 = mapped[&key].parse().unwrap();
        let b: f64 = value.parse().unwrap();
        // float32 tolerance: libtorch may choose other kernels for another batch composition.
        assert!(
            (a - b).abs() <= 1e-5 * b.abs().max(1.0),
            "tile {key:?}: predict {a}, run {b}"
        );
        n += 1;
    }
    assert!(n > 0);

    // A run directory from before normalization.json: recomputed from the spec, same numbers.
    std::fs::remove_file(runs[0].join("normalization.json")).unwrap();
    let old = vec![predict::open_run(&runs[0], &device).unwrap()];
    assert_eq!(old[0].normalization, one[0].normalization);

    // A new city, written as a canonical directory with WGS84 corners, by an ensemble of two.
    let mut city = common::tiny_city(9);
    city.name = "new".into();
    let dir = tmp.path().join("new-city");
    canonical::write(&city, &dir, &common::manifest()).unwrap();
    let tiles = dir.join("tiles.csv");
    let text = std::fs::read_to_string(&tiles).unwrap();
    let mut lines = text.lines();
    let mut with_corners = format!("{},lat,lon\n", lines.next().unwrap());
    for line in lines {
        let mut f = line.split(',');
        let (x, y): (f64, f64) = (
            f.next().unwrap().parse().unwrap(),
            f.next().unwrap().parse().unwrap(),
        );
        with_corners.push_str(&format!(
            "{line},{},{}\n",
            40.0 + 0.008 * y,
            116.0 + 0.01 * x
        ));
    }
    std::fs::write(&tiles, with_corners).unwrap();
    let both: Vec<_> = runs
        .iter()
        .map(|r| predict::open_run(r, &device).unwrap())
        .collect();
    let mut area = predict::load_area(&dir).unwrap();
    let p = predict::predict_area(&both, &mut area, &device, 64, 0, Default::default()).unwrap();
    // In 3×3-tile chunks with their halo: the same predictions as the whole area at once.
    let chunked =
        predict::predict_area(&both, &mut area, &device, 64, 3, Default::default()).unwrap();
    for (a, b) in p
        .per_run
        .iter()
        .flatten()
        .zip(chunked.per_run.iter().flatten())
    {
        assert!(
            (a - b).abs() <= 1e-5 * a.abs().max(1.0),
            "whole {a}, chunked {b}"
        );
    }
    // Each tile's dissimilarity index depends on its own inputs only.
    assert_eq!(p.di, chunked.di);
    let out = tmp.path().join("map");
    let summary = predict::write_outputs(&out, &both, &area, &p, 0.9)
        .unwrap()
        .unwrap();
    for file in [
        "predictions.csv",
        "predictions.parquet",
        "emission.tif",
        "emission.geojson",
        "map.png",
        "predict.json",
    ] {
        assert!(out.join(file).exists(), "{file} missing");
    }
    assert_eq!(summary.georef.kind, "fitted");
    assert!(summary.georef.residual_max_m < 1e-3);
    assert_eq!(summary.raster, [8, 8]);
    assert!((0.0..=1.0).contains(&summary.aoa_inside) && summary.aoa_threshold > 0.0);
    assert_eq!(
        column(&out.join("predictions.csv"), "in_aoa").len(),
        city.len()
    );
    let coverage = summary.band_coverage.expect("two runs give a band");
    assert!((0.0..=1.0).contains(&coverage));
    assert_eq!(summary.labelled.unwrap().n, city.samples().len());
    let geojson: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("emission.geojson")).unwrap())
            .unwrap();
    assert_eq!(geojson["features"].as_array().unwrap().len(), city.len());
    check_with_rasterio(&out);

    // Three shards of 3×3-tile chunks, merged (in any order), give the whole area's outputs.
    let mut shard_dirs = Vec::new();
    for i in 0..3 {
        let shard = format!("{i}/3").parse().unwrap();
        let p = predict::predict_area(&both, &mut area, &device, 64, 3, shard).unwrap();
        let dir = tmp.path().join(format!("shard-{i}"));
        assert!(predict::write_outputs(&dir, &both, &area, &p, 0.9)
            .unwrap()
            .is_none());
        assert!(!dir.join("emission.tif").exists());
        shard_dirs.insert(0, dir);
    }
    let merged_dir = tmp.path().join("merged");
    let merged = predict::merge(&shard_dirs, &merged_dir).unwrap();
    assert_eq!(merged.tiles, summary.tiles);
    assert_eq!(merged.band_coverage, summary.band_coverage);
    assert_eq!(merged.aoa_inside, summary.aoa_inside);
    let whole: std::collections::HashMap<_, _> = column(&out.join("predictions.csv"), "x")
        .into_iter()
        .zip(column(&out.join("predictions.csv"), "y"))
        .zip(column(&out.join("predictions.csv"), "predicted_ln"))
        .collect();
    let joined = column(&merged_dir.join("predictions.csv"), "x")
        .into_iter()
        .zip(column(&merged_dir.join("predictions.csv"), "y"))
        .zip(column(&merged_dir.join("predictions.csv"), "predicted_ln"));
    for (key, v) in joined {
        let (a, b): (f64, f64) = (whole[&key].parse().unwrap(), v.parse().unwrap());
        assert!(
            (a - b).abs() <= 1e-5 * a.abs().max(1.0),
            "tile {key:?}: {a} vs {b}"
        );
    }
    check_with_rasterio(&merged_dir);
    let incomplete = predict::merge(&shard_dirs[..2], &tmp.path().join("x"))
        .err()
        .unwrap();
    assert!(
        format!("{incomplete:#}").contains("missing"),
        "{incomplete:#}"
    );

    // Bad areas: one clear error each, naming what is wrong.
    let missing = predict::load_area(&tmp.path().join("nowhere"))
        .err()
        .unwrap();
    assert!(format!("{missing:#}").contains("nowhere"));
    let mut other = common::tiny_city(3);
    other.poi = None;
    let no_poi = tmp.path().join("no-poi");
    canonical::write(&other, &no_poi, &common::manifest()).unwrap();
    let mut area = predict::load_area(&no_poi).unwrap();
    let e = predict::predict_area(&both, &mut area, &device, 64, 0, Default::default())
        .err()
        .unwrap();
    let e = format!("{e:#}");
    assert!(
        e.contains("modalities differ") && e.contains("no-poi"),
        "{e}"
    );
}

/// rasterio (GDAL) reads the GeoTIFF with its CRS, transform and nodata, and a tile's pixel holds
/// its predicted emission. The test command installs rasterio; a bare `cargo test` skips this
/// (OPENCARBON_REQUIRE_TOOLS=1: fails).
pub(crate) fn check_with_rasterio(out: &Path) {
    let Some(python) = common::python(&["rasterio", "numpy"]) else {
        return;
    };
    let script = r#"
import csv, math, sys, rasterio
out = sys.argv[1]
with rasterio.open(out + "/emission.tif") as src:
    assert src.crs.to_epsg() == 4326, src.crs
    assert src.nodata == -9999.0, src.nodata
    assert src.dtypes[0] == "float32"
    band = src.read(1)
    rows = list(csv.DictReader(open(out + "/predictions.csv")))
    for r in rows:
        # The tile's (x, y) corner is its south-west corner here; look just inside it.
        row, col = src.index(float(r["lon"]) + 0.002, float(r["lat"]) + 0.002)
        want = float(r["predicted_emission"])
        assert abs(band[row, col] - want) <= 1e-5 * want, (r, band[row, col])
        # With conformal bands: bands 2 and 3 hold the interval's bounds (emission units).
        if r.get("lower_ln"):
            for b, key in ((2, "lower_ln"), (3, "upper_ln")):
                want = math.exp(float(r[key]))
                got = src.read(b)[row, col]
                assert abs(got - want) <= 1e-5 * want, (b, r, got)
    bands = 3 if rows and rows[0].get("lower_ln") else 1
    assert src.count == bands, (src.count, bands)
print("rasterio ok", len(rows), "tiles,", src.count, "bands")
"#;
    let output = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "rasterio check failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprint!("{}", String::from_utf8_lossy(&output.stdout));
}

#[test]
fn area_of_applicability_flags_inputs_unlike_the_training_tiles() {
    use opencarbon::model::Modality;
    use opencarbon::stats::aoa::Applicability;
    let city = common::tiny_city(4);
    let modalities = [Modality::Poi, Modality::Tabular];
    let train: Vec<usize> = (0..city.len()).filter(|i| i % 3 != 0).collect();
    let aoa = Applicability::fit(&city, &train, &modalities, 1);
    assert!(aoa.threshold.is_finite() && aoa.threshold > 0.0);
    let all: Vec<usize> = (0..city.len()).collect();
    let di = aoa.index(&city, &all, &modalities);
    // A training tile is its own nearest reference.
    assert!(train.iter().all(|&i| di[i] == 0.0));
    // Covariates far outside the training range put every tile outside.
    let mut strange = city.clone();
    for v in strange.tabular.as_mut().unwrap().values.iter_mut() {
        *v = *v * 50.0 + 1000.0;
    }
    let far = aoa.index(&strange, &all, &modalities);
    assert!(
        far.iter().all(|&d| d > aoa.threshold),
        "threshold {}: {far:?}",
        aoa.threshold
    );
}

/// `tile_reader` reads, for any tiles, exactly what `canonical::load` holds for them: with the
/// u8 POI file `canonical::write` writes, and with an f32 one (scales found in a streaming pass).
#[test]
fn a_canonical_city_read_by_tile_equals_the_loaded_one() {
    use opencarbon::data::tile_reader;
    use opencarbon::predict::chunk;
    use proptest::prelude::*;
    let tmp = tempfile::tempdir().unwrap();
    let city = common::tiny_city(5);
    let u8_dir = tmp.path().join("u8");
    canonical::write(&city, &u8_dir, &common::manifest()).unwrap();
    // The same city with float32 densities and no scale in city.yaml.
    let f32_dir = tmp.path().join("f32");
    canonical::write(&city, &f32_dir, &common::manifest()).unwrap();
    let p = city.poi.as_ref().unwrap();
    let (c, plane) = (p.categories.len(), p.side * p.side);
    let densities: Vec<f32> = p
        .data
        .iter()
        .enumerate()
        .map(|(k, &v)| v as f32 * p.scale[(k / plane) % c] * 1.7)
        .collect();
    let array =
        ndarray::Array4::from_shape_vec((city.len(), c, p.side, p.side), densities).unwrap();
    {
        use ndarray_npy::WriteNpyExt;
        array
            .write_npy(std::fs::File::create(f32_dir.join("poi.npy")).unwrap())
            .unwrap();
    }
    let mut manifest = canonical::read_manifest(&f32_dir).unwrap();
    manifest.poi.as_mut().unwrap().scale = None;
    std::fs::write(
        f32_dir.join("city.yaml"),
        serde_norway::to_string(&manifest).unwrap(),
    )
    .unwrap();
    for dir in [&u8_dir, &f32_dir] {
        let eager = canonical::load(dir).unwrap();
        let (bare, reader) = tile_reader::open(dir).unwrap();
        assert_eq!(bare.keys, eager.keys);
        assert_eq!(bare.tabular, eager.tabular);
        assert_eq!(
            bare.poi.as_ref().unwrap().scale,
            eager.poi.as_ref().unwrap().scale
        );
        let all: Vec<usize> = (0..eager.len()).collect();
        assert_eq!(reader.read(&bare, &all).unwrap(), eager);
        proptest!(ProptestConfig::with_cases(24), |(rows in proptest::collection::vec(0..64usize, 1..30))| {
            let lazy = reader.read(&bare, &rows).unwrap();
            prop_assert_eq!(lazy, chunk::subset(&eager, &rows));
        });
        // Without the POI modality nothing of poi.npy is read.
        let mut images_only = bare.clone();
        images_only.poi = None;
        assert!(reader.read(&images_only, &[3, 4]).unwrap().poi.is_none());
    }
    // A truncated or garbled poi.npy is one error naming the file, at open.
    let npy = u8_dir.join("poi.npy");
    let bytes = std::fs::read(&npy).unwrap();
    std::fs::write(&npy, &bytes[..bytes.len() - 7]).unwrap();
    let e = format!("{:#}", tile_reader::open(&u8_dir).err().unwrap());
    assert!(e.contains("poi.npy") && e.contains("bytes"), "{e}");
    std::fs::write(&npy, b"\x93NUMPY\x01\x00\x10\x00{'descr': '<i8', }").unwrap();
    let e = format!("{:#}", tile_reader::open(&u8_dir).err().unwrap());
    assert!(e.contains("poi.npy"), "{e}");
}

/// `export-model` writes a bundle that predicts exactly as its run does and says what it is;
/// `predict --from` refuses to pool one variant's runs on two datasets unless told which.
#[test]
fn a_bundle_maps_like_its_run_and_from_keeps_datasets_apart() {
    use opencarbon::predict::bundle;
    let tmp = tempfile::tempdir().unwrap();
    let device = common::device();
    let run = train(tmp.path(), 1);
    let out = tmp.path().join("bundle");
    let manifest = bundle::export(&run, &out).unwrap();
    assert_eq!((manifest.variant.as_str(), manifest.seed), ("full", 1));
    for file in [
        "bundle.json",
        "model.safetensors",
        "normalization.json",
        "spec.resolved.yaml",
        "test_metrics.json",
        "MODEL_CARD.md",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("test_metrics.json")).unwrap())
            .unwrap();
    let card = std::fs::read_to_string(out.join("MODEL_CARD.md")).unwrap();
    let r2 = format!("{:.4}", metrics["r2"].as_f64().unwrap());
    assert!(
        card.contains(&r2) && card.contains("## Training data") && card.contains("training tiles"),
        "{card}"
    );

    let city_yaml = tmp.path().join("city.yaml");
    std::fs::write(&city_yaml, DATASET).unwrap();
    let predict_with = |dir: &Path| {
        let runs = vec![predict::open_run(dir, &device).unwrap()];
        let mut area = predict::load_area(&city_yaml).unwrap();
        predict::predict_area(&runs, &mut area, &device, 64, 0, Default::default()).unwrap()
    };
    let (a, b) = (predict_with(&run), predict_with(&out));
    assert_eq!(a.per_run, b.per_run);
    assert_eq!(a.di, b.di);

    // A bundle of a newer format, or with damaged weights, is refused with the file named.
    let damaged = tmp.path().join("damaged");
    bundle::export(&run, &damaged).unwrap();
    let weights = damaged.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let e = format!("{:#}", predict::open_run(&damaged, &device).err().unwrap());
    assert!(e.contains("model.safetensors"), "{e}");
    let text = std::fs::read_to_string(out.join("bundle.json"))
        .unwrap()
        .replace("\"version\": 1", "\"version\": 99");
    std::fs::write(out.join("bundle.json"), text).unwrap();
    let e = format!("{:#}", predict::open_run(&out, &device).err().unwrap());
    assert!(e.contains("version 99"), "{e}");
    // Not a finished run: nothing to export.
    let e = format!(
        "{:#}",
        bundle::export(tmp.path(), &tmp.path().join("x"))
            .err()
            .unwrap()
    );
    assert!(e.contains("not a finished run"), "{e}");

    // The same variant trained on a second dataset: --from must be told which.
    train_spec(tmp.path(), &spec_named(2, Some("elsewhere")));
    let cli = |extra: &[&str]| {
        let mut args = vec![
            "predict",
            "--from",
            tmp.path().to_str().unwrap(),
            "--variant",
            "full",
            "--city",
            city_yaml.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        std::process::Command::new(env!("CARGO_BIN_EXE_opencarbon"))
            .args(&args)
            .output()
            .unwrap()
    };
    let map = tmp.path().join("map");
    let pooled = cli(&["--out", map.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&pooled.stderr);
    assert!(!pooled.status.success());
    assert!(
        stderr.contains("2 datasets")
            && stderr.contains("elsewhere")
            && stderr.contains("--dataset"),
        "{stderr}"
    );
    let one = cli(&["--out", map.to_str().unwrap(), "--dataset", "elsewhere"]);
    assert!(
        one.status.success(),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(map.join("predict.json")).unwrap()).unwrap();
    assert_eq!(summary["runs"].as_array().unwrap().len(), 1);
}

/// The folds of a cross-validated variant map with CV+ bands: each fold model's prediction at a
/// tile, calibrated on every fold's held-out residuals. The GeoTIFF carries the bounds as bands 2
/// and 3 (rasterio), the GeoJSON and table carry them per tile, `interval_width.png` maps their
/// width, and `predict.json` reports coverage inside and outside the area of applicability.
#[test]
fn the_folds_of_a_variant_map_with_cv_plus_bands() {
    let tmp = tempfile::tempdir().unwrap();
    let runs: Vec<PathBuf> = (0..4)
        .map(|fold| {
            let text = format!(
                "name: predict-cv\nseed: 3\nvariant: full\ndataset: {DATASET}\n\
                 split: {{kind: spatial_cv, folds: 4, block: 2, fold: {fold}}}\n\
                 train: {{epochs: 2, batch_size: 16, contrastive_epoch: 1, validate_every: 1, standardize_target: true}}\n"
            );
            train_spec(tmp.path(), &RunSpec::parse(&text, "predict-cv.yaml", &[]).unwrap())
        })
        .collect();
    let held_out: usize = runs
        .iter()
        .map(|r| column(&r.join("predictions.csv"), "x").len())
        .sum();
    let device = common::device();
    let models: Vec<_> = runs
        .iter()
        .map(|r| predict::open_run(r, &device).unwrap())
        .collect();
    // Another city of the same kind: labelled, unseen.
    let other = tmp.path().join("other.yaml");
    std::fs::write(&other, DATASET.replace("seed: 2", "seed: 7")).unwrap();
    let mut area = predict::load_area(&other).unwrap();
    let p = predict::predict_area(&models, &mut area, &device, 64, 0, Default::default()).unwrap();
    let out = tmp.path().join("cv-plus");
    let summary = predict::write_outputs(&out, &models, &area, &p, 0.9)
        .unwrap()
        .unwrap();
    let b = summary.interval.expect("bands");
    assert_eq!(b.method, predict::intervals::Method::CvPlus);
    assert_eq!(b.calibration_points, held_out);
    assert_eq!(
        b.labelled_in_aoa + b.labelled_outside_aoa,
        area.city.samples().len()
    );
    assert!(
        b.coverage.is_some_and(|c| (0.0..=1.0).contains(&c)),
        "{b:?}"
    );
    assert!(b.mean_width > 0.0 && b.mean_width.is_finite(), "{b:?}");
    let table = out.join("predictions.csv");
    let (lower, upper) = (column(&table, "lower_ln"), column(&table, "upper_ln"));
    for (l, u) in lower.iter().zip(&upper) {
        let (l, u): (f64, f64) = (l.parse().unwrap(), u.parse().unwrap());
        assert!(l < u, "{l} {u}");
    }
    let geojson = std::fs::read_to_string(out.join("emission.geojson")).unwrap();
    assert!(geojson.contains("\"lower_ln\":") && geojson.contains("\"upper_ln\":"));
    let width = image::open(out.join("interval_width.png")).unwrap();
    assert!(width.width() >= 8 && width.height() >= 8);
    check_with_rasterio(&out);
}
