//! Every variant maps new areas: ridge and gradient-boosted baselines keep their fitted model
//! (`model.json`), predict an area as the run predicted its test tiles, export as bundles and get
//! conformal bands like networks; an ensemble's area of applicability is its own.

use crate::common;
use crate::predict::{check_with_rasterio, column};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use opencarbon::predict::{self, intervals::Method, Predictor};
use opencarbon::runner::{self, RunOutcome};
use opencarbon::spec::RunSpec;

const DATASET: &str = "{kind: synthetic, preset: monocentric, width: 8, height: 8, tile_side: 32, poi_categories: 4, seed: 2}";

/// The four spatial folds of a baseline variant on the synthetic city.
fn fold_runs(out: &Path, variant: &str, baseline: &str) -> Vec<PathBuf> {
    (0..4)
        .map(|fold| {
            let text = format!(
                "name: predict-baselines\nseed: 3\nvariant: {variant}\ndataset: {DATASET}\n\
                 split: {{kind: spatial_cv, folds: 4, block: 2, fold: {fold}}}\nbaseline: {baseline}\n"
            );
            let spec = RunSpec::parse(&text, "predict-baselines.yaml", &[]).unwrap();
            let (dir, outcome) = runner::run(&spec, &common::run_options(out)).unwrap();
            assert!(matches!(outcome, RunOutcome::Done(_)), "{variant} fold {fold}");
            dir
        })
        .collect()
}

/// (x, y) → value of `column` in a predictions table.
fn by_tile(table: &Path, value: &str) -> HashMap<(String, String), f64> {
    column(table, "x")
        .into_iter()
        .zip(column(table, "y"))
        .zip(column(table, value))
        .map(|(k, v)| (k, v.parse().unwrap()))
        .collect()
}

/// Predicts `area` (a dataset .yaml or directory) with `runs` into `out`.
fn map(runs: &[PathBuf], area: &Path, out: &Path) -> predict::PredictSummary {
    let device = common::device();
    let models: Vec<_> = runs
        .iter()
        .map(|r| predict::open_run(r, &device).unwrap())
        .collect();
    let mut area = predict::load_area(area).unwrap();
    let p = predict::predict_area(&models, &mut area, &device, 64, 0, Default::default()).unwrap();
    predict::write_outputs(out, &models, &area, &p, 0.9)
        .unwrap()
        .unwrap()
}

#[test]
fn ridge_and_gbt_runs_map_areas_with_bands_like_networks() {
    let tmp = tempfile::tempdir().unwrap();
    let city = tmp.path().join("city.yaml");
    std::fs::write(&city, DATASET).unwrap();
    let other = tmp.path().join("other.yaml");
    std::fs::write(&other, DATASET.replace("seed: 2", "seed: 7")).unwrap();
    let columns = "['poi:*', 'lag1:poi:*']";
    for (variant, baseline) in [
        (
            "ridge",
            format!("{{kind: ridge, columns: {columns}, lambda: 1.0}}"),
        ),
        ("gbt", format!("{{kind: gbt, columns: {columns}}}")),
    ] {
        let runs = fold_runs(tmp.path(), variant, &baseline);
        for run in &runs {
            assert!(run.join("model.json").is_file(), "{}", run.display());
            assert!(run.join("normalization.json").is_file());
        }
        // One fold's model on its own city predicts its test tiles exactly as the run did.
        let own = tmp.path().join(format!("{variant}-own"));
        map(&runs[..1], &city, &own);
        let mapped = by_tile(&own.join("predictions.csv"), "predicted_ln");
        let recorded = by_tile(&runs[0].join("predictions.csv"), "prediction");
        assert!(!recorded.is_empty());
        for (tile, value) in &recorded {
            assert_eq!(mapped[tile], *value, "{variant} tile {tile:?}");
        }
        // The folds together map another city with CV+ bands, written to every product.
        let out = tmp.path().join(format!("{variant}-other"));
        let summary = map(&runs, &other, &out);
        let b = summary.interval.expect("bands");
        assert_eq!(b.method, Method::CvPlus, "{variant}");
        assert!(b.mean_width > 0.0 && b.mean_width.is_finite(), "{b:?}");
        assert!(b.coverage.is_some_and(|c| (0.0..=1.0).contains(&c)));
        let table = out.join("predictions.csv");
        for (l, u) in column(&table, "lower_ln")
            .iter()
            .zip(column(&table, "upper_ln"))
        {
            let (l, u): (f64, f64) = (l.parse().unwrap(), u.parse().unwrap());
            assert!(l < u, "{variant}: {l} {u}");
        }
        assert!(out.join("interval_width.png").is_file());
        check_with_rasterio(&out);
    }
}

/// A map whose area lies mostly outside the area of applicability says so in `predict.json`.
#[test]
fn a_map_mostly_outside_the_area_of_applicability_is_flagged() {
    let tmp = tempfile::tempdir().unwrap();
    let city = tmp.path().join("city.yaml");
    std::fs::write(&city, DATASET).unwrap();
    let runs = fold_runs(tmp.path(), "mean", "{kind: mean}");
    let device = common::device();
    let models = vec![predict::open_run(&runs[0], &device).unwrap()];
    let mut area = predict::load_area(&city).unwrap();
    let mut p =
        predict::predict_area(&models, &mut area, &device, 64, 0, Default::default()).unwrap();
    let own = predict::write_outputs(&tmp.path().join("own"), &models, &area, &p, 0.9)
        .unwrap()
        .unwrap();
    assert!(!own.mostly_outside && own.aoa_inside > 0.5, "{own:?}");
    // Every tile but one beyond the threshold.
    for d in p.di.iter_mut().skip(1) {
        *d = p.threshold * 2.0 + 1.0;
    }
    let out = tmp.path().join("outside");
    let summary = predict::write_outputs(&out, &models, &area, &p, 0.9)
        .unwrap()
        .unwrap();
    assert!(
        summary.mostly_outside && summary.aoa_inside < 0.5,
        "{summary:?}"
    );
    let json = std::fs::read_to_string(out.join("predict.json")).unwrap();
    assert!(json.contains("\"mostly_outside\": true"), "{json}");
}

#[test]
fn a_baseline_bundle_and_an_old_run_without_its_model_map_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let city = tmp.path().join("city.yaml");
    std::fs::write(&city, DATASET).unwrap();
    let runs = fold_runs(
        tmp.path(),
        "gbt_lag",
        "{kind: gbt, columns: ['poi:*', 'lag1:poi:*']}",
    );
    let run = &runs[1];
    let direct = tmp.path().join("direct");
    map(std::slice::from_ref(run), &city, &direct);
    let want = by_tile(&direct.join("predictions.csv"), "predicted_ln");

    // Exported, the bundle carries the fitted model and says it is a baseline.
    let bundle = tmp.path().join("bundle");
    predict::bundle::export(run, &bundle).unwrap();
    assert!(bundle.join("model.json").is_file() && !bundle.join("model.safetensors").exists());
    let card = std::fs::read_to_string(bundle.join("MODEL_CARD.md")).unwrap();
    assert!(
        card.contains("## Baseline") && card.contains("lag1:poi:*"),
        "{card}"
    );
    let from_bundle = tmp.path().join("from-bundle");
    map(&[bundle.clone()], &city, &from_bundle);
    assert_eq!(
        by_tile(&from_bundle.join("predictions.csv"), "predicted_ln"),
        want
    );
    let device = common::device();
    assert!(matches!(
        predict::open_run(&bundle, &device).unwrap().model,
        Predictor::Baseline(_)
    ));

    // A run from before baselines kept their model: fitted again, checked, the same map.
    std::fs::remove_file(run.join("model.json")).unwrap();
    let refitted = tmp.path().join("refitted");
    map(std::slice::from_ref(run), &city, &refitted);
    assert_eq!(
        by_tile(&refitted.join("predictions.csv"), "predicted_ln"),
        want
    );

    // ...unless what it recorded no longer matches: an error naming the run, nothing mapped.
    let csv = run.join("predictions.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let mut fields: Vec<String> = lines[1].split(',').map(String::from).collect();
    fields[3] = format!("{}", fields[3].parse::<f64>().unwrap() + 0.5);
    lines[1] = fields.join(",");
    std::fs::write(&csv, lines.join("\n") + "\n").unwrap();
    let e = format!("{:#}", predict::open_run(run, &device).err().unwrap());
    assert!(
        e.contains(&run.display().to_string()) && e.contains("fitted again"),
        "{e}"
    );

    // The neighbour mean needs the area's measured emissions: refused, saying why.
    let nm = fold_runs(tmp.path(), "neighbour_mean", "{kind: neighbour_mean}");
    let e = format!("{:#}", predict::open_run(&nm[0], &device).err().unwrap());
    assert!(
        e.contains("neighbour-mean") && e.contains("new area"),
        "{e}"
    );
    assert!(!nm[0].join("model.json").exists());
}

/// An ensemble's area of applicability is fitted on everything its members saw: for the folds of
/// a variant, every tile that trained some fold lies inside it with a DI of (almost) zero, where
/// the mean of the members' DIs would put the tiles each fold held out away from zero.
#[test]
fn an_ensembles_area_of_applicability_is_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let city = tmp.path().join("city.yaml");
    std::fs::write(&city, DATASET).unwrap();
    let runs = fold_runs(
        tmp.path(),
        "ridge",
        "{kind: ridge, columns: ['poi:*'], lambda: 1.0}",
    );
    let device = common::device();
    let models: Vec<_> = runs
        .iter()
        .map(|r| predict::open_run(r, &device).unwrap())
        .collect();
    let mut area = predict::load_area(&city).unwrap();
    let p = predict::predict_area(&models, &mut area, &device, 64, 0, Default::default()).unwrap();
    let mut trained = std::collections::HashSet::new();
    for run in &runs {
        for ((x, y), split) in column(&run.join("split.csv"), "x")
            .into_iter()
            .zip(column(&run.join("split.csv"), "y"))
            .zip(column(&run.join("split.csv"), "split"))
        {
            if split == "train" {
                trained.insert((x.parse::<i64>().unwrap(), y.parse::<i64>().unwrap()));
            }
        }
    }
    assert!(!trained.is_empty());
    let mut mean_of_members_above = 0;
    for (i, key) in area.city.keys.iter().enumerate() {
        if !trained.contains(&(key.x, key.y)) {
            continue;
        }
        assert!(
            p.di[i] < 1e-4,
            "tile {key:?} trained a fold, DI {}",
            p.di[i]
        );
        let members: f64 = models
            .iter()
            .map(|m| {
                let aoa = m.normalization.applicability.as_ref().unwrap();
                aoa.index(&area.city, &[i], &m.modalities())[0]
            })
            .sum::<f64>()
            / models.len() as f64;
        if members > 1e-3 {
            mean_of_members_above += 1;
        }
    }
    assert!(
        mean_of_members_above > 0,
        "the averaged DI was never away from zero: the test does not tell the two apart"
    );
    assert!(p.threshold.is_finite() && p.threshold > 0.0);
}

/// `--scale di`: bands whose widths follow the tile's dissimilarity index. Around holdout runs
/// (split conformal) a tile's width grows with its DI, never shrinks; the folds of a variant get
/// DI-scaled CV+ bands; both say so in `predict.json`.
#[test]
fn di_scaled_bands_widen_with_the_dissimilarity_index() {
    use opencarbon::predict::intervals::{BandOptions, Scale};
    let tmp = tempfile::tempdir().unwrap();
    let other = tmp.path().join("other.yaml");
    std::fs::write(
        &other,
        DATASET.replace("preset: monocentric", "preset: sprawl"),
    )
    .unwrap();
    let scaled = BandOptions {
        level: 0.9,
        scale: Scale::Di,
    };
    let device = common::device();
    let holdout = |seed: u64| {
        let text = format!(
            "name: predict-di\nseed: {seed}\nvariant: ridge\ndataset: {DATASET}\n\
             split: {{kind: random, test: 0.4, valid: 0.1}}\n\
             baseline: {{kind: ridge, columns: ['poi:*'], lambda: 1.0}}\n"
        );
        let spec = opencarbon::spec::RunSpec::parse(&text, "predict-di.yaml", &[]).unwrap();
        runner::run(&spec, &common::run_options(tmp.path()))
            .unwrap()
            .0
    };
    let runs = [holdout(1), holdout(2)];
    let models: Vec<_> = runs
        .iter()
        .map(|r| predict::open_run(r, &device).unwrap())
        .collect();
    let mut area = predict::load_area(&other).unwrap();
    let p = predict::predict_area(&models, &mut area, &device, 64, 0, Default::default()).unwrap();
    let out = tmp.path().join("split-di");
    let summary = predict::write_outputs(&out, &models, &area, &p, scaled)
        .unwrap()
        .unwrap();
    let b = summary.interval.expect("bands");
    assert_eq!((b.method, b.scale), (Method::Split, Scale::Di));
    let table = out.join("predictions.csv");
    let mut by_di: Vec<(f64, f64)> = column(&table, "di")
        .iter()
        .zip(
            column(&table, "lower_ln")
                .iter()
                .zip(column(&table, "upper_ln")),
        )
        .map(|(d, (l, u))| {
            let (l, u): (f64, f64) = (l.parse().unwrap(), u.parse().unwrap());
            (d.parse().unwrap(), u - l)
        })
        .collect();
    by_di.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(
        by_di.windows(2).all(|w| w[1].1 >= w[0].1 - 1e-12),
        "{by_di:?}"
    );
    assert!(
        by_di.last().unwrap().1 > by_di[0].1,
        "every width equal: {by_di:?}"
    );
    let json = std::fs::read_to_string(out.join("predict.json")).unwrap();
    assert!(json.contains("\"scale\": \"di\""), "{json}");
    check_with_rasterio(&out);

    // The folds of a variant: DI-scaled CV+.
    let folds = fold_runs(
        tmp.path(),
        "ridge_cv",
        "{kind: ridge, columns: ['poi:*'], lambda: 1.0}",
    );
    let models: Vec<_> = folds
        .iter()
        .map(|r| predict::open_run(r, &device).unwrap())
        .collect();
    let p = predict::predict_area(&models, &mut area, &device, 64, 0, Default::default()).unwrap();
    let summary = predict::write_outputs(&tmp.path().join("cv-di"), &models, &area, &p, scaled)
        .unwrap()
        .unwrap();
    let b = summary.interval.expect("bands");
    assert_eq!((b.method, b.scale), (Method::CvPlus, Scale::Di));
    assert!(b.mean_width.is_finite() && b.mean_width > 0.0, "{b:?}");
}
