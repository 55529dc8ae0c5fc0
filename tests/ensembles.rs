//! Ensembles as variants (`variants.<name>.ensemble.members`): checked when the spec is parsed,
//! scored from the mean of the members' test predictions, paired with the other variants and
//! covered by the interval tables, rebuilt from the records alone.

use crate::common;

use std::collections::HashMap;

use opencarbon::metrics::Metrics;
use opencarbon::record::predictions;
use opencarbon::results;
use opencarbon::spec::Experiment;

const SPEC: &str = "
name: ensembles
seeds: [1, 2]
dataset: {kind: synthetic, preset: monocentric, width: 8, height: 8, tile_side: 16, poi_categories: 3, seed: 4}
split: {kind: spatial_cv, folds: 4, block: 2}
compare: {reference: both}
variants:
  ridge: {baseline: {kind: ridge, columns: ['poi:*'], lambda: 1.0}}
  gbt: {baseline: {kind: gbt, columns: ['poi:*']}}
  both: {ensemble: {members: [ridge, gbt]}}
";

fn parse_error(text: &str) -> String {
    format!(
        "{:#}",
        Experiment::parse(text, "e.yaml", &[]).err().unwrap()
    )
}

#[test]
fn ensemble_variants_are_checked_when_parsed() {
    let e = Experiment::parse(SPEC, "e.yaml", &[]).unwrap();
    // Eight runs per member variant, none for the ensemble.
    assert_eq!(e.runs.len(), 16);
    assert!(e.runs.iter().all(|r| r.variant != "both"));
    assert_eq!(e.variant_order, ["ridge", "gbt", "both"]);
    let one = parse_error(&SPEC.replace("members: [ridge, gbt]", "members: [ridge]"));
    assert!(
        one.contains("variants.both.ensemble.members") && one.contains("at least two"),
        "{one}"
    );
    let unknown = parse_error(&SPEC.replace("members: [ridge, gbt]", "members: [ridge, gtb]"));
    assert!(
        unknown.contains("`gtb`") && unknown.contains("ridge, gbt"),
        "{unknown}"
    );
    let twice = parse_error(&SPEC.replace("members: [ridge, gbt]", "members: [ridge, ridge]"));
    assert!(twice.contains("twice"), "{twice}");
    let settings = parse_error(&SPEC.replace(
        "both: {ensemble:",
        "both: {model: {neighbourhood: 0}, ensemble:",
    ));
    assert!(
        settings.contains("variants.both") && settings.contains("only"),
        "{settings}"
    );
    let typo = parse_error(&SPEC.replace("members: [ridge, gbt]", "membres: [ridge, gbt]"));
    assert!(typo.contains("variants.both.ensemble"), "{typo}");
    let split = parse_error(&SPEC.replace(
        "gbt: {baseline: {kind: gbt, columns: ['poi:*']}}",
        "gbt: {baseline: {kind: gbt, columns: ['poi:*']}, split: {kind: spatial_cv, folds: 4, block: 2, seed: 9}}",
    ));
    assert!(split.contains("share the split"), "{split}");
    // An expectation may name the ensemble.
    Experiment::parse(
        &format!("{SPEC}expect: [both > gbt on r2 at 0.5]\n"),
        "e.yaml",
        &[],
    )
    .unwrap();
}

#[test]
fn an_ensemble_is_scored_from_its_members_mean_and_rebuilt_from_records() {
    let out = tempfile::tempdir().unwrap();
    let options = common::run_options(out.path());
    let e = Experiment::parse(SPEC, "e.yaml", &[]).unwrap();
    let (tally, summary) = common::sweep(&e, &options, &[]);
    assert_eq!((tally.done, tally.failed.len()), (16, 0));
    assert!(
        summary.contains("| both | 8 |") || summary.contains("| both | 8"),
        "{summary}"
    );

    let rows = results::collect(out.path()).unwrap();
    let ensembles: Vec<_> = rows.iter().filter(|r| r.variant == "both").collect();
    assert_eq!(ensembles.len(), 8);
    for row in ensembles {
        assert_eq!(row.members.len(), 2);
        // Its R² is the R² of the members' mean on each test tile, to the bit.
        let by_tile = |id: &str| -> HashMap<(i64, i64), (f64, f64)> {
            predictions::of_run(out.path(), id)
                .unwrap()
                .into_iter()
                .map(|t| ((t.x, t.y), (t.target, t.prediction)))
                .collect()
        };
        let (a, b) = (by_tile(&row.members[0]), by_tile(&row.members[1]));
        let mut keys: Vec<_> = a.keys().copied().collect();
        keys.sort();
        let target: Vec<f64> = keys.iter().map(|k| a[k].0).collect();
        let mean: Vec<f64> = keys.iter().map(|k| (a[k].1 + b[k].1) / 2.0).collect();
        let want = Metrics::compute(&target, &mean);
        let got = row.metrics.as_ref().unwrap();
        assert_eq!(got.r2.to_bits(), want.r2.to_bits(), "{}", row.run_id);
        assert_eq!(got.n, keys.len());
        assert!(got.valid.r2.is_nan());
    }
    // Paired against the others, in the interval tables, and no validation score.
    let comparison = std::fs::read_to_string(out.path().join("comparison.csv")).unwrap();
    assert!(
        comparison.contains("ridge") && comparison.contains("gbt"),
        "{comparison}"
    );
    let coverage = std::fs::read_to_string(out.path().join("coverage.csv")).unwrap();
    assert!(coverage.lines().any(|l| l.contains(",both,")), "{coverage}");
    let md = std::fs::read_to_string(out.path().join("summary.md")).unwrap();
    assert!(md.contains("| both | — |"), "{md}");

    // From the records alone (no runs/), the same tables byte for byte.
    let tables = [
        "summary.csv",
        "summary.md",
        "comparison.csv",
        "coverage.csv",
    ];
    let before: Vec<Vec<u8>> = tables
        .iter()
        .map(|t| std::fs::read(out.path().join(t)).unwrap())
        .collect();
    std::fs::remove_dir_all(out.path().join("runs")).unwrap();
    results::write_summary(out.path(), false).unwrap();
    for (t, want) in tables.iter().zip(&before) {
        assert_eq!(&std::fs::read(out.path().join(t)).unwrap(), want, "{t}");
    }
}
