//! Experiments: expansion into runs, resume that skips exactly the finished runs, failures that
//! are recorded without stopping the sweep, and summaries with each run once.

use crate::common;
use opencarbon::model::Modality;
use opencarbon::results;
use opencarbon::runner::RunOptions;
use opencarbon::spec::{Experiment, RunSpec};
use proptest::prelude::*;

const SWEEP: &str = "
name: sweep
seeds: [1, 2]
datasets:
  mono: {kind: synthetic, preset: monocentric, width: 6, height: 6, tile_side: 16, poi_categories: 3, seed: 1}
  poly: {kind: synthetic, preset: polycentric, width: 6, height: 6, tile_side: 16, poi_categories: 3, seed: 2}
train: {epochs: 2, batch_size: 8, validate_every: 1, alpha: 0}
variants:
  mean: {baseline: {kind: mean}}
  ridge: {baseline: {kind: ridge, columns: [ln_population]}}
  lag: {baseline: {kind: neighbour_mean}}
";

#[test]
fn expansion_is_variant_by_dataset_by_seed() {
    let e = Experiment::parse(SWEEP, "sweep.yaml", &[]).unwrap();
    assert_eq!(e.runs.len(), 3 * 2 * 2);
    let mut ids: Vec<String> = e.runs.iter().map(|r| r.run_id()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 12, "run ids must be distinct");
    assert!(e
        .runs
        .iter()
        .any(|r| r.variant == "ridge" && r.dataset_label() == "poly" && r.seed == 2));
    // Patches merge deeply: the variant keeps the base's train settings.
    let patched = Experiment::parse(
        "name: p\ndataset: {kind: synthetic, preset: sprawl, width: 4, height: 4}\ntrain: {epochs: 7}\nvariants:\n  a: {train: {alpha: 0}, model: {modalities: [poi]}}\n",
        "p",
        &[],
    )
    .unwrap();
    let run = &patched.runs[0];
    assert_eq!(
        (
            run.train.epochs,
            run.train.alpha,
            run.model.modalities.clone()
        ),
        (7, 0.0, vec![Modality::Poi])
    );
}

#[test]
fn variant_mistakes_name_the_variant() {
    let text = "name: p\ndataset: {kind: synthetic, preset: sprawl, width: 4, height: 4}\nvariants:\n  bad: {trian: {alpha: 0}}\n";
    let e = format!("{:#}", Experiment::parse(text, "p.yaml", &[]).unwrap_err());
    assert!(
        e.contains("variant `bad`") && e.contains("trian") && e.contains("did you mean `train`"),
        "{e}"
    );
    let e = format!(
        "{:#}",
        Experiment::parse("name: p\nvariantz: {}\n", "p.yaml", &[]).unwrap_err()
    );
    assert!(
        e.contains("line 2") && e.contains("did you mean `variants`"),
        "{e}"
    );
}

#[test]
fn resume_skips_exactly_the_done_runs_and_failures_do_not_stop_the_sweep() {
    let out = tempfile::tempdir().unwrap();
    let options = common::run_options(out.path());
    let e = Experiment::parse(SWEEP, "sweep.yaml", &[]).unwrap();
    // First only the mono dataset, as if the sweep were killed half-way.
    let (first, _) = common::sweep(&e, &options, &[("dataset".into(), "mono".into())]);
    assert_eq!((first.done, first.skipped, first.failed.len()), (6, 0, 0));
    let (second, summary) = common::sweep(&e, &options, &[]);
    assert_eq!(
        (second.done, second.skipped, second.failed.len()),
        (6, 6, 0)
    );
    let rows = results::collect(out.path()).unwrap();
    assert_eq!(rows.len(), 12, "each run exactly once");
    assert!(summary.contains("| mono | ridge | 2 |"), "{summary}");

    // A run that fails at run time is recorded with its reason; the others go on.
    let failing = Experiment::parse(
        &SWEEP.replace("columns: [ln_population]", "columns: [no_such_column]"),
        "s",
        &[],
    )
    .unwrap();
    let out2 = tempfile::tempdir().unwrap();
    let options2 = RunOptions {
        out: out2.path().to_path_buf(),
        ..options
    };
    let (report, summary) = common::sweep(&failing, &options2, &[]);
    assert_eq!((report.done, report.failed.len()), (8, 4));
    assert!(
        report.failed[0].1.contains("no_such_column"),
        "{:?}",
        report.failed[0]
    );
    assert!(summary.contains("Failed runs"), "{summary}");
    let failed = results::collect(out2.path())
        .unwrap()
        .into_iter()
        .filter(|r| r.status == "failed")
        .count();
    assert_eq!(failed, 4);
}

#[test]
fn summary_is_mean_and_std_over_seeds() {
    let out = tempfile::tempdir().unwrap();
    let options = common::run_options(out.path());
    let e = Experiment::parse(SWEEP, "sweep.yaml", &[]).unwrap();
    common::sweep(
        &e,
        &options,
        &[
            ("variant".into(), "lag".into()),
            ("dataset".into(), "mono".into()),
        ],
    );
    let rows = results::collect(out.path()).unwrap();
    let r2: Vec<f64> = rows
        .iter()
        .map(|r| r.metrics.as_ref().unwrap().r2)
        .collect();
    assert_eq!(r2.len(), 2);
    let mean = (r2[0] + r2[1]) / 2.0;
    let std = ((r2[0] - mean).powi(2) + (r2[1] - mean).powi(2)).sqrt(); // n − 1 = 1
    let summary = results::summary_frame(&rows).unwrap();
    let got_mean = summary
        .column("r2_mean")
        .unwrap()
        .f64()
        .unwrap()
        .get(0)
        .unwrap();
    let got_std = summary
        .column("r2_std")
        .unwrap()
        .f64()
        .unwrap()
        .get(0)
        .unwrap();
    assert!((got_mean - mean).abs() < 1e-12 && (got_std - std).abs() < 1e-12);
    // Validation R² for model selection: the mean of the runs' validation scores.
    let valid: f64 = rows
        .iter()
        .map(|r| r.metrics.as_ref().unwrap().valid.r2)
        .sum::<f64>()
        / 2.0;
    let got_valid = summary
        .column("valid_r2_mean")
        .unwrap()
        .f64()
        .unwrap()
        .get(0)
        .unwrap();
    assert!((got_valid - valid).abs() < 1e-12);
    for file in ["summary.csv", "summary.parquet", "summary.md"] {
        results::write_summary(out.path(), false).unwrap();
        assert!(out.path().join(file).exists(), "{file}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn valid_specs_round_trip_through_yaml(
        epochs in 1usize..5000, batch in 2usize..512, lr in 1e-6f64..1.0, alpha in 0.0f64..1.0,
        k in 0usize..4, se: bool, seed in any::<u64>(), image: bool, tabular: bool,
    ) {
        let mut modalities = vec![Modality::Poi];
        if image { modalities.insert(0, Modality::Image); }
        if tabular { modalities.push(Modality::Tabular); }
        let alpha = if image { alpha } else { 0.0 };
        let text = format!(
            "name: r\nseed: {seed}\ndataset: {{kind: synthetic, preset: sprawl, width: 5, height: 5}}\n\
             model: {{neighbourhood: {k}, se: {se}, modalities: [{}]}}\ntrain: {{epochs: {epochs}, batch_size: {batch}, lr: {lr:e}, alpha: {alpha:e}}}\n",
            modalities.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")
        );
        let spec = RunSpec::parse(&text, "r", &[]).unwrap();
        let again = RunSpec::parse(&spec.resolved_yaml(), "resolved", &[]).unwrap();
        prop_assert_eq!(&again, &spec);
        prop_assert_eq!(again.run_id(), spec.run_id());
    }
}
