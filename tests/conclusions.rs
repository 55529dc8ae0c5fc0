//! From a sweep to conclusions: spatial cross-validation folds pair up across variants,
//! `comparison.*` holds the paired statistics, `summary.md` marks what is significant, and the
//! spec's expectations gate `run` and `results --check` (with JUnit XML).

use crate::common;

use opencarbon::results;
use opencarbon::spec::Experiment;

/// Baselines only (they fit in milliseconds): 2 seeds × 5 random folds per variant.
const SPEC: &str = "name: conclusions
seeds: [1, 2]
dataset: {kind: synthetic, preset: monocentric, width: 12, height: 12, tile_side: 16, poi_categories: 4, seed: 5}
split: {kind: random_cv, folds: 5}
compare: {reference: gbt}
variants:
  gbt: {baseline: {kind: gbt, columns: [ln_population, ln_gdp, 'poi:*']}}
  mean: {baseline: {kind: mean}}
  ridge: {baseline: {kind: ridge, columns: [ln_population, ln_gdp]}}
expect:
  - gbt > mean on r2 at 0.05
  - ridge.r2 >= 0.999
";

#[test]
fn a_cv_sweep_compares_pairs_marks_significance_and_checks_its_expectations() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("conclusions");
    let e = Experiment::parse(SPEC, "conclusions.yaml", &[]).unwrap();
    assert_eq!(e.runs.len(), 3 * 2 * 5);
    let (report, md) = common::sweep(&e, &common::run_options(&out), &[]);
    assert_eq!(
        (report.done, report.failed.len()),
        (30, 0),
        "{:?}",
        report.failed
    );
    for spec in &e.runs {
        assert!(out
            .join("runs")
            .join(spec.run_id())
            .join("split.csv")
            .is_file());
    }

    // comparison.csv: each variant against the reference, per metric, over 10 fold pairs.
    let rows = results::collect(&out).unwrap();
    let order: Vec<String> = ["gbt", "mean", "ridge"].map(String::from).to_vec();
    let comparison = results::comparison::compare(&rows, "gbt", &order);
    assert_eq!(comparison.len(), 2 * 4);
    for c in &comparison {
        assert_eq!(c.n_pairs, 10);
        assert_eq!(c.test, "corrected resampled t");
        assert!(c.ci_low <= c.mean_diff && c.mean_diff <= c.ci_high);
        assert!(
            c.p_t_holm >= c.p_t && c.p_wilcoxon_holm >= c.p_wilcoxon,
            "{c:?}"
        );
        assert!(["better", "worse", "n.s.", "identical"].contains(&c.verdict.as_str()));
    }
    let r2_mean = comparison
        .iter()
        .find(|c| c.variant == "mean" && c.metric == "r2")
        .unwrap();
    // The training mean predicts no variation: far below the trees on R².
    assert!(
        r2_mean.mean_diff < 0.0 && r2_mean.verdict == "worse",
        "{r2_mean:?}"
    );
    let csv = std::fs::read_to_string(out.join("comparison.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    for column in [
        "mean_diff",
        "ci_low",
        "ci_high",
        "p_t",
        "p_wilcoxon",
        "p_t_holm",
        "n_pairs",
        "effect_dz",
        "pairs_for_80_power",
    ] {
        assert!(header.split(',').any(|h| h == column), "{header}");
    }
    assert!(out.join("comparison.parquet").is_file());
    assert!(
        md.contains("▼ p=") && md.contains("Against `gbt`") && md.contains("## Comparison"),
        "{md}"
    );

    // The expectations: the first holds, the second cannot; `run` would exit non-zero.
    let junit = tmp.path().join("junit.xml");
    let e = results::cli::check_expectations(&out, Some(&junit)).unwrap_err();
    assert!(
        format!("{e:#}").contains("1 of 2 expectation(s) failed"),
        "{e:#}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
    assert!(
        xml.contains("name=\"gbt &gt; mean on r2 at 0.05\""),
        "{xml}"
    );
    assert_eq!(xml.matches("<failure").count(), 1);
    // A real XML parser reads it as CI systems do (the test command sets OPENCARBON_PYTHON;
    // without it this part is skipped, OPENCARBON_REQUIRE_TOOLS=1: fails).
    if let Some(python) = common::python(&["xml.etree.ElementTree"]) {
        let script = "import sys, xml.etree.ElementTree as ET\n\
            s = ET.parse(sys.argv[1]).getroot().find('testsuite')\n\
            cases = s.findall('testcase')\n\
            print(s.get('tests'), s.get('failures'), len(cases), sum(c.find('failure') is not None for c in cases))";
        let parsed = std::process::Command::new(python)
            .args(["-c", script, junit.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&parsed.stdout).trim(),
            "2 1 2 1",
            "{parsed:?}"
        );
    }

    // The same through the command line: `results --check` exits non-zero.
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_opencarbon"))
        .args(["results", out.to_str().unwrap(), "--check"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&cli.stdout);
    assert!(!cli.status.success());
    assert!(
        stdout.contains("PASS gbt > mean on r2 at 0.05")
            && stdout.contains("FAIL ridge.r2 >= 0.999"),
        "{stdout}"
    );
}

#[test]
fn a_malformed_expectation_or_reference_is_a_spec_error_naming_its_line() {
    for (bad, line, says) in [
        (
            "  - full >> mean on r2 at 0.05",
            12,
            "expected `A > B on METRIC",
        ),
        ("  - gbt > mean on r3 at 0.05", 12, "unknown metric `r3`"),
        ("  - gbt > mean on r2 at 5", 12, "between 0 and 1"),
        ("  - full.r2 >= 0.6", 12, "`full` is not a variant"),
    ] {
        let text = SPEC.replace("  - ridge.r2 >= 0.999", bad);
        let e = format!("{:#}", Experiment::parse(&text, "c.yaml", &[]).unwrap_err());
        assert!(
            e.contains(&format!("c.yaml: line {line}")) && e.contains(says),
            "{bad}: {e}"
        );
    }
    let text = SPEC.replace("reference: gbt", "reference: nobody");
    let e = format!("{:#}", Experiment::parse(&text, "c.yaml", &[]).unwrap_err());
    assert!(
        e.contains("compare.reference: `nobody` is not a variant"),
        "{e}"
    );
}

/// A buffer of one tile leaves no training tile in a test tile's 3×3 window, so the spatial lag
/// of the training targets falls back to their mean: the two baselines agree in every fold.
#[test]
fn a_one_tile_buffer_leaves_the_spatial_lag_nothing_to_average() {
    let text = "name: buffer
dataset: {kind: synthetic, preset: monocentric, width: 12, height: 12, tile_side: 16, poi_categories: 4, seed: 5}
split: {kind: spatial_cv, folds: 3, block: 3, buffer: 1}
variants:
  neighbour_mean: {baseline: {kind: neighbour_mean}}
  mean: {baseline: {kind: mean}}
";
    let tmp = tempfile::tempdir().unwrap();
    let e = Experiment::parse(text, "buffer.yaml", &[]).unwrap();
    let (_, md) = common::sweep(&e, &common::run_options(tmp.path()), &[]);
    let rows = results::collect(tmp.path()).unwrap();
    let comparison = results::comparison::compare(
        &rows,
        "neighbour_mean",
        &["neighbour_mean".into(), "mean".into()],
    );
    assert!(
        comparison
            .iter()
            .all(|c| c.verdict == "identical" && c.n_pairs == 3),
        "{comparison:?}"
    );
    assert!(md.contains(" ="), "{md}");
}

/// The finding behind experiments/synthetic/neighbourhood-leak.yaml, kept true: on a city whose
/// emission a POI-only network cannot see (land use plus image-only roof density), its
/// neighbourhood branch learns the training neighbours' targets under random folds (a large gain
/// over the same network without the branch) and loses most of that gain once spatial folds with a
/// buffer keep training tiles out of every test tile's window. One seed, 5 folds, 8 epochs.
#[test]
fn random_folds_let_the_neighbourhood_branch_learn_the_neighbours_targets() {
    let gap = |split: &str| {
        let text =
            std::fs::read_to_string("experiments/synthetic/neighbourhood-leak.yaml").unwrap();
        let sets = [
            "seeds=[1]".to_string(),
            "train.epochs=8".to_string(),
            format!("split={split}"),
            "variants={poi_with_neighbourhood: {model: {modalities: [poi]}}, poi_alone: {model: {modalities: [poi], neighbourhood: 0}}}".to_string(),
            "compare={reference: poi_with_neighbourhood}".to_string(),
        ];
        let e = Experiment::parse(&text, "neighbourhood-leak.yaml", &sets).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("leak");
        let (report, _) = common::sweep(&e, &common::run_options(&out), &[]);
        assert_eq!((report.done, report.failed.len()), (10, 0));
        let rows = results::collect(&out).unwrap();
        let mean = |variant: &str| {
            let r2: Vec<f64> = rows
                .iter()
                .filter(|r| r.variant == variant)
                .map(|r| r.metrics.as_ref().unwrap().r2)
                .collect();
            r2.iter().sum::<f64>() / r2.len() as f64
        };
        mean("poi_with_neighbourhood") - mean("poi_alone")
    };
    let random = gap("{kind: random_cv, folds: 5}");
    let spatial = gap("{kind: spatial_cv, folds: 5, block: 4, buffer: 1}");
    eprintln!(
        "the neighbourhood branch's R² gain: random folds {random:.3}, spatial folds {spatial:.3}"
    );
    assert!(
        random > 0.4,
        "random folds: the branch gains only {random:.3} R²"
    );
    assert!(
        spatial < random - 0.25,
        "spatial folds: the branch gains {spatial:.3} R², random folds {random:.3}"
    );
}
