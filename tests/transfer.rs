//! Transfer: joining cities (and the error when they differ), nested few-shot blocks, per-city
//! normalisation, spec expansion, whole transfer runs (network and baselines) and the matrix table.

use crate::common;

use opencarbon::data::split::nested_blocks;
use opencarbon::data::synthetic::{generate, Preset, SynthConfig};
use opencarbon::data::union::{conform, join};
use opencarbon::data::{normalize, City, NeighbourIndex, Tabular, TileKey};
use opencarbon::results;
use opencarbon::runner;
use opencarbon::spec::{DatasetSpec, Experiment};
use opencarbon::transfer::TransferRow;
use proptest::prelude::*;

fn city(preset: Preset, size: usize, categories: usize, seed: u64) -> City {
    generate(&SynthConfig {
        preset,
        width: size,
        height: size,
        tile_side: 16,
        poi_categories: categories,
        seed,
        signal: Default::default(),
    })
    .expect("synthetic city")
}

#[test]
fn joined_cities_keep_their_tiles_and_windows_never_cross() {
    let (a, b) = (
        city(Preset::Monocentric, 6, 3, 1),
        city(Preset::Sprawl, 5, 3, 2),
    );
    let (union, parts) = join(vec![a.clone(), b.clone()]).unwrap();
    assert_eq!(union.name, format!("{}+{}", a.name, b.name));
    assert_eq!(union.len(), a.len() + b.len());
    assert_eq!(parts[0].range, 0..a.len());
    assert_eq!(parts[0].x_offset, 0);
    for (j, i) in parts[1].range.clone().enumerate() {
        assert_eq!(parts[1].original_key(&union, i), b.keys[j]);
        assert_eq!(union.emission[i], b.emission[j]);
    }
    // Images are copied as they are; covariates too.
    let side = a.images.as_ref().unwrap().side;
    let plane = 3 * side * side;
    assert_eq!(
        &union.images.as_ref().unwrap().data[a.len() * plane..],
        &b.images.as_ref().unwrap().data[..]
    );
    let index = NeighbourIndex::new(&union, 2);
    for (p, part) in parts.iter().enumerate() {
        for i in part.range.clone() {
            for j in index.windows[i].iter().flatten() {
                assert!(
                    part.range.contains(j),
                    "tile {i} of part {p} sees tile {j} of another city"
                );
            }
        }
    }
}

#[test]
fn poi_is_requantised_to_the_larger_scale() {
    let (a, b) = (
        city(Preset::Monocentric, 4, 2, 1),
        city(Preset::Polycentric, 4, 2, 2),
    );
    let (union, parts) = join(vec![a.clone(), b.clone()]).unwrap();
    let u = union.poi.as_ref().unwrap();
    for (c, scale) in u.scale.iter().enumerate() {
        let (sa, sb) = (
            a.poi.as_ref().unwrap().scale[c],
            b.poi.as_ref().unwrap().scale[c],
        );
        assert_eq!(*scale, sa.max(sb));
    }
    // Every value is within half a quantum of its original.
    let (pb, plane) = (b.poi.as_ref().unwrap(), 16 * 16);
    let offset = parts[1].range.start * 2 * plane;
    for (k, &v) in pb.data.iter().enumerate() {
        let c = (k / plane) % 2;
        let original = v as f32 * pb.scale[c];
        let joined = u.data[offset + k] as f32 * u.scale[c];
        assert!(
            (original - joined).abs() <= 0.5 * u.scale[c] + 1e-6,
            "value {k}: {original} became {joined}"
        );
    }
}

#[test]
fn a_mismatched_city_is_refused_with_what_differs() {
    let a = city(Preset::Monocentric, 4, 3, 1);
    let mut b = city(Preset::Sprawl, 4, 4, 2);
    b.name = "target".into();
    let e = format!("{:#}", conform(&a, &mut b).unwrap_err());
    assert!(
        e.contains("`target` does not match") && e.contains("POI categories differ"),
        "{e}"
    );
    let mut c = city(Preset::Sprawl, 4, 3, 2);
    c.images = None;
    let e = format!("{:#}", conform(&a, &mut c).unwrap_err());
    assert!(
        e.contains("modalities differ") && e.contains("[image, poi, tabular]"),
        "{e}"
    );
    let mut d = city(Preset::Sprawl, 4, 3, 2);
    d.tabular.as_mut().unwrap().columns[0] = "population".into();
    let e = format!("{:#}", conform(&a, &mut d).unwrap_err());
    assert!(
        e.contains("covariate columns differ") && e.contains("[ln_population]"),
        "{e}"
    );
}

#[test]
fn columns_in_another_order_are_reordered() {
    let a = city(Preset::Monocentric, 4, 3, 1);
    let mut b = city(Preset::Sprawl, 4, 3, 2);
    let original = b.clone();
    let t = b.tabular.as_mut().unwrap();
    let f = t.columns.len();
    t.columns.swap(0, 1);
    for row in t.values.chunks_mut(f) {
        row.swap(0, 1);
    }
    let p = b.poi.as_mut().unwrap();
    p.categories.reverse();
    p.scale.reverse();
    let plane = p.side * p.side;
    let mut data = Vec::new();
    for tile in p.data.chunks(3 * plane) {
        for c in (0..3).rev() {
            data.extend_from_slice(&tile[c * plane..(c + 1) * plane]);
        }
    }
    p.data = data;
    conform(&a, &mut b).unwrap();
    assert_eq!(b, original);
}

#[test]
fn per_city_normalisation_standardises_covariates_and_poi() {
    let mut c = city(Preset::Polycentric, 8, 3, 3);
    normalize::per_city_inputs(&mut c);
    let t: &Tabular = c.tabular.as_ref().unwrap();
    let f = t.columns.len();
    for col in 0..f {
        let v: Vec<f64> = t
            .values
            .iter()
            .skip(col)
            .step_by(f)
            .map(|&x| x as f64)
            .collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        assert!(mean.abs() < 1e-5, "column {col} mean {mean}");
        assert!(
            (std - 1.0).abs() < 1e-4 || std == 0.0,
            "column {col} std {std}"
        );
    }
    let p = c.poi.as_ref().unwrap();
    let plane = p.side * p.side;
    for ch in 0..3 {
        let total: f64 = p
            .data
            .chunks(plane)
            .skip(ch)
            .step_by(3)
            .flat_map(|chunk| chunk.iter().map(|&v| v as f64 * p.scale[ch] as f64))
            .sum();
        let mean = total / (c.len() * plane) as f64;
        assert!((mean - 1.0).abs() < 1e-4, "channel {ch} mean {mean}");
    }
}

fn grid(w: i64, h: i64) -> City {
    let keys: Vec<TileKey> = (0..h)
        .flat_map(|y| (0..w).map(move |x| TileKey { x, y }))
        .collect();
    let n = keys.len();
    City {
        name: "grid".into(),
        keys,
        emission: vec![1.0; n],
        images: None,
        poi: None,
        tabular: None,
        district: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn few_shot_sets_are_nested_whole_blocks_and_leave_the_rest_held_out(
        w in 2i64..20, h in 2i64..20, block in 1usize..5, seed in 0u64..1000,
        mut fractions in prop::collection::vec(0.0f64..0.9, 1..4),
    ) {
        fractions.sort_by(f64::total_cmp);
        let c = grid(w, h);
        let samples = c.samples();
        let (sets, held_out) = nested_blocks(&c, &samples, block, &fractions, seed);
        prop_assert_eq!(sets.len(), fractions.len());
        for (k, set) in sets.iter().enumerate() {
            prop_assert!(set.len() as f64 >= fractions[k] * samples.len() as f64);
            if k > 0 {
                prop_assert!(sets[k - 1].iter().all(|i| set.contains(i)), "sets are nested");
            }
            // Whole blocks: a block is either in the set or not.
            let b = block as i64;
            let block_of = |i: usize| (c.keys[i].x.div_euclid(b), c.keys[i].y.div_euclid(b));
            for &i in &samples {
                let same: Vec<usize> = samples.iter().copied().filter(|&j| block_of(j) == block_of(i)).collect();
                let inside = same.iter().filter(|j| set.contains(j)).count();
                prop_assert!(inside == 0 || inside == same.len());
            }
        }
        let largest = sets.last().unwrap();
        let mut all: Vec<usize> = largest.iter().chain(&held_out).copied().collect();
        all.sort();
        prop_assert_eq!(all, samples, "largest set and held-out tiles partition the samples");
    }
}

const TRANSFER: &str = "
name: transfer
seeds: [1]
datasets:
  mono: {kind: synthetic, preset: monocentric, width: 6, height: 6, tile_side: 16, poi_categories: 3, seed: 1}
  poly: {kind: synthetic, preset: polycentric, width: 6, height: 6, tile_side: 16, poi_categories: 3, seed: 2}
  sprawl: {kind: synthetic, preset: sprawl, width: 6, height: 6, tile_side: 16, poi_categories: 3, seed: 3}
train: {epochs: 2, batch_size: 8, validate_every: 1, alpha: 0, standardize_target: true}
model: {modalities: [poi, tabular]}
transfer:
  sources: [mono, [poly, sprawl]]
  few_shot: [0, 0.2, 0.4]
  block: 2
  fine_tune: {epochs: 2}
variants:
  net: {}
  mean: {baseline: {kind: mean}}
";

#[test]
fn transfer_sources_expand_with_their_targets() {
    let e = Experiment::parse(TRANSFER, "t.yaml", &[]).unwrap();
    assert_eq!(e.runs.len(), 2 * 2);
    let single = &e.runs[0];
    let t = single.transfer.as_ref().unwrap();
    let targets: Vec<&str> = t.targets.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(targets, ["poly", "sprawl"]);
    let multi = e
        .runs
        .iter()
        .find(|r| r.dataset_label() == "poly+sprawl")
        .unwrap();
    assert!(matches!(&multi.dataset, DatasetSpec::Union { parts } if parts.len() == 2));
    let targets: Vec<&str> = multi
        .transfer
        .as_ref()
        .unwrap()
        .targets
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(targets, ["mono"]);

    let bad = TRANSFER.replace("sources: [mono, [poly, sprawl]]", "sources: [mono, lyon]");
    let err = format!("{:#}", Experiment::parse(&bad, "t.yaml", &[]).unwrap_err());
    assert!(
        err.contains("`lyon` is not a dataset") && err.contains("mono, poly, sprawl"),
        "{err}"
    );
    let bad = TRANSFER.replace("net: {}", "net: {transfer: {targets: [mono]}}");
    let err = format!("{:#}", Experiment::parse(&bad, "t.yaml", &[]).unwrap_err());
    assert!(err.contains("variant `net` sets transfer.targets"), "{err}");
    let bad = TRANSFER.replace("few_shot: [0, 0.2, 0.4]", "few_shot: [0, 1.5]");
    let err = format!("{:#}", Experiment::parse(&bad, "t.yaml", &[]).unwrap_err());
    assert!(
        err.contains("transfer.few_shot: 1.5 must lie in [0, 1)"),
        "{err}"
    );
}

fn read_rows(dir: &std::path::Path) -> Vec<TransferRow> {
    serde_json::from_str(&std::fs::read_to_string(dir.join("transfer.json")).unwrap()).unwrap()
}

#[test]
fn a_transfer_sweep_writes_rows_predictions_and_the_matrix() {
    let out = tempfile::tempdir().unwrap();
    let e = Experiment::parse(TRANSFER, "t.yaml", &[]).unwrap();
    let only = vec![("dataset".to_string(), "mono".to_string())];
    let (report, md) = common::sweep(&e, &common::run_options(out.path()), &only);
    assert_eq!(
        (report.done, report.failed.len()),
        (2, 0),
        "{:?}",
        report.failed
    );
    for spec in e.runs.iter().filter(|r| r.dataset_label() == "mono") {
        let dir = out.path().join("runs").join(spec.run_id());
        let all_rows = read_rows(&dir);
        // The zero-shot row on the tiles inside the area of applicability, where it has any.
        let (in_aoa, rows): (Vec<TransferRow>, Vec<TransferRow>) = all_rows
            .into_iter()
            .partition(|r| r.tiles == opencarbon::transfer::IN_AOA);
        // Per target: zero-shot on all tiles, then 0 %, 20 %, 40 % on the held-out tiles.
        assert_eq!(rows.len(), 2 * 4);
        for target in &spec.transfer.as_ref().unwrap().targets {
            let samples = opencarbon::data::load_city(&target.dataset, &Default::default())
                .unwrap()
                .samples()
                .len();
            let r: Vec<&TransferRow> = rows.iter().filter(|r| r.target == target.name).collect();
            assert_eq!((r[0].tiles.as_str(), r[0].metrics.n), ("all", samples));
            let inside = r[0].aoa_inside.expect("zero-shot rows carry the AOA share");
            assert!((0.0..=1.0).contains(&inside));
            let aoa_row = in_aoa.iter().find(|x| x.target == target.name);
            match aoa_row {
                Some(x) => {
                    assert_eq!(x.metrics.n, (inside * samples as f64).round() as usize);
                    assert!(x.metrics.n >= 2 && x.aoa_inside == Some(inside));
                }
                None => assert!(inside * (samples as f64) < 1.5),
            }
            assert!(r[1..].iter().all(|x| x.aoa_inside.is_none()));
            let held_out = r[1].metrics.n;
            assert!(r[1..]
                .iter()
                .all(|x| x.tiles == "held_out" && x.metrics.n == held_out));
            assert!(r[2].fine_tune_tiles as f64 >= 0.2 * samples as f64);
            assert!(r[3].fine_tune_tiles as f64 >= 0.4 * samples as f64);
            assert_eq!(held_out + r[3].fine_tune_tiles, samples);
        }
        let predictions = std::fs::read_to_string(dir.join("transfer_predictions.csv")).unwrap();
        // Target keys are the city's own (0..6), not the union's shifted ones.
        let rows_csv: Vec<&str> = predictions.lines().skip(1).collect();
        assert!(rows_csv.iter().all(|l| {
            let f: Vec<&str> = l.split(',').collect();
            f[3].parse::<i64>().unwrap() < 6
        }));
        if spec.variant == "mean" {
            // The mean baseline predicts the source's training mean everywhere, zero-shot.
            let source = opencarbon::data::load_city(&spec.dataset, &Default::default()).unwrap();
            let split = spec.split.split(&source, spec.seed).unwrap();
            let mean = split.train.iter().map(|&i| source.target(i)).sum::<f64>()
                / split.train.len() as f64;
            for line in rows_csv.iter().filter(|l| l.contains(",0,all,")) {
                let p: f64 = line.rsplit(',').next().unwrap().parse().unwrap();
                assert!((p - mean).abs() < 1e-9, "{line} vs {mean}");
            }
        } else {
            // Fine-tuning changed the model: its held-out predictions differ from the 0 % ones.
            let rows = read_rows(&dir);
            let zero = rows
                .iter()
                .find(|r| r.target == "poly" && r.tiles == "held_out" && r.fraction == 0.0)
                .unwrap();
            let tuned = rows
                .iter()
                .find(|r| r.target == "poly" && r.fraction == 0.4)
                .unwrap();
            assert_ne!(zero.metrics.rmse, tuned.metrics.rmse);
        }
    }
    assert!(
        md.contains("## Transfer matrix") && md.contains("(in-city)"),
        "{md}"
    );
    for f in ["transfer.csv", "transfer.parquet", "transfer.md"] {
        assert!(out.path().join(f).exists(), "{f}");
    }
    assert!(md.contains("inside the area of applicability"), "{md}");
    let rows = results::collect(out.path()).unwrap();
    let frame = results::transfer::matrix_frame(&rows, &[]).unwrap();
    // net + mean, each: in-city + 2 targets × 4 settings, and the AOA rows there are.
    let aoa_rows = rows
        .iter()
        .flat_map(|r| &r.transfer)
        .filter(|t| t.tiles == opencarbon::transfer::IN_AOA)
        .count();
    assert_eq!(frame.height(), 2 * (1 + 2 * 4) + aoa_rows);
}

#[test]
fn a_model_trained_on_two_cities_transfers_to_the_third() {
    let out = tempfile::tempdir().unwrap();
    let e = Experiment::parse(TRANSFER, "t.yaml", &[]).unwrap();
    let spec = e
        .runs
        .iter()
        .find(|r| r.variant == "net" && r.dataset_label() == "poly+sprawl")
        .unwrap();
    let (dir, _) = runner::run(spec, &common::run_options(out.path())).unwrap();
    let rows = read_rows(&dir);
    // all, 0 %, 20 %, 40 %, and the zero-shot row inside the area of applicability if it has tiles.
    let in_aoa = rows
        .iter()
        .filter(|r| r.tiles == opencarbon::transfer::IN_AOA)
        .count();
    assert!(in_aoa <= 1);
    assert_eq!(rows.len(), 4 + in_aoa);
    assert!(rows.iter().all(|r| r.target == "mono"));
    // The in-city test draws on both source cities: the union's split holds tiles of each.
    let source = opencarbon::data::load_city(&spec.dataset, &Default::default()).unwrap();
    let split = spec.split.split(&source, spec.seed).unwrap();
    let poly = opencarbon::data::load_city(
        &e.runs[0].transfer.as_ref().unwrap().targets[0].dataset,
        &Default::default(),
    )
    .unwrap()
    .len();
    assert!(split.test.iter().any(|&i| i < poly) && split.test.iter().any(|&i| i >= poly));
}

#[test]
fn a_target_with_other_poi_categories_fails_before_training() {
    let out = tempfile::tempdir().unwrap();
    let text = TRANSFER.replace(
        "sprawl: {kind: synthetic, preset: sprawl, width: 6, height: 6, tile_side: 16, poi_categories: 3",
        "sprawl: {kind: synthetic, preset: sprawl, width: 6, height: 6, tile_side: 16, poi_categories: 5",
    );
    let e = Experiment::parse(&text, "t.yaml", &[]).unwrap();
    let spec = e
        .runs
        .iter()
        .find(|r| r.variant == "net" && r.dataset_label() == "mono")
        .unwrap();
    let err = format!(
        "{:#}",
        runner::run(spec, &common::run_options(out.path()))
            .err()
            .unwrap()
    );
    assert!(
        err.contains("city `sprawl` does not match city `mono`")
            && err.contains("POI categories differ"),
        "{err}"
    );
    let dir = out.path().join("runs").join(spec.run_id());
    assert!(!dir.join("metrics.csv").exists(), "nothing was trained");
    let meta = std::fs::read_to_string(dir.join("meta.json")).unwrap();
    assert!(meta.contains("POI categories differ"), "{meta}");
}

#[test]
fn transfer_matrix_is_mean_and_std_over_seeds() {
    use opencarbon::metrics::Metrics;
    use opencarbon::record::TestMetrics;
    let metrics = |r2: f64| Metrics {
        r2,
        rmse: 1.0 - r2,
        mae: 0.5,
        mape: 0.1,
        n: 10,
    };
    let row = |seed: u64, in_city: f64, zero_shot: f64| results::RunRow {
        leak: None,
        provenance: None,
        members: vec![],
        tuning: None,
        fold: None,
        cv_test_train_ratio: None,
        run_id: format!("s{seed}"),
        variant: "full".into(),
        dataset: "a".into(),
        seed,
        status: "done".into(),
        metrics: Some(TestMetrics {
            r2: in_city,
            rmse: 1.0 - in_city,
            mae: 0.5,
            mape: 0.1,
            n: 10,
            best_epoch: 1,
            valid: metrics(in_city),
            epochs_run: 1,
            stopped_early: false,
            pruned: false,
            train_seconds: 0.0,
        }),
        transfer: vec![TransferRow {
            target: "b".into(),
            fraction: 0.0,
            tiles: "all".into(),
            fine_tune_tiles: 0,
            metrics: metrics(zero_shot),
            aoa_inside: Some(0.5),
        }],
    };
    let rows = vec![row(1, 0.8, 0.2), row(2, 0.6, 0.4)];
    let frame = results::transfer::matrix_frame(&rows, &[]).unwrap();
    let get = |name: &str| -> Vec<f64> {
        frame
            .column(name)
            .unwrap()
            .f64()
            .unwrap()
            .into_no_null_iter()
            .collect()
    };
    // Rows: in-city (a → a), then zero-shot (a → b).
    assert_eq!(get("r2_mean"), vec![0.7, 0.30000000000000004]);
    let std = get("r2_std");
    assert!(
        (std[0] - 0.2f64.hypot(0.0) / 2f64.sqrt()).abs() < 1e-12,
        "{std:?}"
    );
    assert!((std[1] - 0.1414213562373095).abs() < 1e-12, "{std:?}");
}
