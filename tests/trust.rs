//! Trust: committed tables rebuild byte for byte from committed records, no command replaces a
//! table with one built from fewer runs, and gates on leak-prone comparisons are refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;
use opencarbon::record::archive;
use opencarbon::results;
use opencarbon::spec::Experiment;

const BIN: &str = env!("CARGO_BIN_EXE_opencarbon");

/// Baselines only (milliseconds each), spatial folds; `ridge_lag` reads a 3×3 window, so the
/// buffer defaults to 1.
const SPEC: &str = "name: trust
seeds: [1, 2]
dataset: {kind: synthetic, preset: monocentric, width: 12, height: 12, tile_side: 16, poi_categories: 4, seed: 5}
split: {kind: spatial_cv, folds: 3, block: 3}
compare: {reference: ridge_lag}
variants:
  ridge_lag: {baseline: {kind: ridge, columns: [ln_population, ln_gdp, 'lag1:ln_population']}}
  ridge: {baseline: {kind: ridge, columns: [ln_population, ln_gdp]}}
  mean: {baseline: {kind: mean}}
expect:
  - ridge_lag > mean on r2 at 0.05
";

/// Every file of `dir` (not under runs/), by path, with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("runs") {
                    stack.push(path);
                }
            } else {
                out.insert(
                    path.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&path).unwrap(),
                );
            }
        }
    }
    out
}

fn swept(out: &Path) -> Experiment {
    let e = Experiment::parse(SPEC, "trust.yaml", &[]).unwrap();
    let (report, md) = common::sweep(&e, &common::run_options(out), &[]);
    assert_eq!((report.done, report.failed.len()), (18, 0), "{md}");
    e
}

#[test]
fn tables_rebuild_from_records_alone_and_are_never_replaced_by_fewer_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("trust");
    let e = swept(&out);
    assert!(archive::exists(&out), "the sweep archives its records");
    assert_eq!(archive::read(&out).unwrap().len(), 18);
    assert!(
        !out.join("records/transfer_predictions.parquet").exists(),
        "no transfer run, no transfer predictions file"
    );
    // Two sweeps of one experiment share records/: one killed mid-export leaves its scratch file,
    // which the next export removes (a live writer's stays).
    let dead = out.join(format!(
        "records/.epochs.parquet.{}.tmp",
        common::dead_pid()
    ));
    let live = out.join(format!("records/.other.parquet.{}.tmp", std::process::id()));
    std::fs::write(&dead, "half a file").unwrap();
    std::fs::write(&live, "being written").unwrap();
    assert_eq!(archive::export(&out).unwrap(), 18);
    assert!(!dead.exists(), "a killed exporter's scratch file stayed");
    assert!(live.exists(), "a live exporter's scratch file was removed");
    std::fs::remove_file(&live).unwrap();
    let before = snapshot(&out);
    for table in [
        "summary.csv",
        "summary.parquet",
        "summary.md",
        "comparison.csv",
        "comparison.md",
    ] {
        assert!(before.contains_key(Path::new(table)), "{table}");
    }

    // The spec's buffer defaulted to the window's radius: no comparison is leak-prone.
    for run in &e.runs {
        assert_eq!(run.split.guaranteed_buffer(), Some(1), "{}", run.run_id());
        assert_eq!(run.leak(), None);
    }
    assert!(!String::from_utf8_lossy(&before[Path::new("comparison.md")]).contains("leak-prone"));

    // A clone without run directories: the tables rebuild byte for byte from the records.
    std::fs::remove_dir_all(out.join("runs")).unwrap();
    results::write_summary(&out, false).unwrap();
    assert_eq!(snapshot(&out), before, "rebuilt from records/ alone");

    // Without the records, `results` refuses, names what would go missing, and writes nothing.
    let records = tmp.path().join("records-aside");
    std::fs::rename(out.join("records"), &records).unwrap();
    let refused = results::write_summary(&out, false).unwrap_err();
    let why = format!("{refused:#}");
    assert!(
        why.contains("fewer runs") && why.contains("ridge_lag: 6 → 0 runs"),
        "{why}"
    );
    let mut without_records = before.clone();
    without_records.retain(|p, _| !p.starts_with("records"));
    assert_eq!(snapshot(&out), without_records, "nothing written");

    // The command line says the same and exits non-zero.
    let cli = Command::new(BIN).arg("results").arg(&out).output().unwrap();
    assert!(!cli.status.success());
    assert!(String::from_utf8_lossy(&cli.stderr).contains("refusing"));
    assert_eq!(
        snapshot(&out),
        without_records,
        "nothing written by the CLI"
    );
    std::fs::rename(&records, out.join("records")).unwrap();

    // A later version of the spec (another variant definition) makes the old runs stale: they
    // leave the tables, which is fewer runs, so it is refused until --force.
    let changed = SPEC.replace("columns: [ln_population, ln_gdp]}", "columns: [ln_gdp]}");
    let e2 = Experiment::parse(&changed, "trust.yaml", &[]).unwrap();
    let refused = opencarbon::launch::write_tables(&e2, &out).unwrap_err();
    assert!(format!("{refused:#}").contains("stale"), "{refused:#}");
    assert_eq!(
        snapshot(&out),
        before,
        "a refused rebuild changes no file, experiment.json included"
    );
    let options = results::TableOptions {
        runs: e2.runs.iter().map(|r| r.run_id()).collect(),
        ..results::TableOptions::read(&out).unwrap()
    };
    let md = results::write_summary_with(&out, &options, true).unwrap();
    assert!(md.contains("Stale runs"), "{md}");
    assert!(!md.contains("| ridge |"), "stale runs are left out: {md}");
}

/// Transfer with baselines only (milliseconds each): each city to the other, zero-shot and after
/// fine-tuning on a quarter of the target.
const TRANSFER_SPEC: &str = "name: trust-transfer
seeds: [1, 2]
datasets:
  mono: {kind: synthetic, preset: monocentric, width: 6, height: 6, tile_side: 16, poi_categories: 3, seed: 1}
  poly: {kind: synthetic, preset: polycentric, width: 6, height: 6, tile_side: 16, poi_categories: 3, seed: 2}
transfer: {sources: [mono, poly], few_shot: [0, 0.25], block: 2}
compare: {reference: ridge}
variants:
  ridge: {baseline: {kind: ridge, columns: [ln_population, ln_gdp]}}
  mean: {baseline: {kind: mean}}
";

#[test]
fn transfer_predictions_are_archived_and_transfer_tables_rebuild_from_records_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("trust-transfer");
    let e = Experiment::parse(TRANSFER_SPEC, "trust-transfer.yaml", &[]).unwrap();
    let (report, md) = common::sweep(&e, &common::run_options(&out), &[]);
    assert_eq!((report.done, report.failed.len()), (8, 0), "{md}");
    // Each run's transfer_predictions.csv reads back from the archive byte for byte, every
    // float bit-identical.
    for run in &e.runs {
        let id = run.run_id();
        let csv =
            std::fs::read_to_string(out.join("runs").join(&id).join("transfer_predictions.csv"))
                .unwrap();
        let frame = archive::transfer_predictions(&out, &id).unwrap();
        assert_eq!(frame.height(), csv.lines().count() - 1, "{id}");
        assert_eq!(
            archive::transfer_predictions_csv(&frame).unwrap(),
            csv,
            "{id}"
        );
        let archived: Vec<u64> = frame
            .column("prediction")
            .unwrap()
            .f64()
            .unwrap()
            .into_no_null_iter()
            .map(f64::to_bits)
            .collect();
        let written: Vec<u64> = csv
            .lines()
            .skip(1)
            .map(|l| {
                l.rsplit(',')
                    .next()
                    .unwrap()
                    .parse::<f64>()
                    .unwrap()
                    .to_bits()
            })
            .collect();
        assert_eq!(archived, written, "{id}");
    }
    let before = snapshot(&out);
    for table in ["transfer.csv", "transfer.parquet", "transfer.md"] {
        assert!(before.contains_key(Path::new(table)), "{table}");
    }
    assert!(before.contains_key(Path::new("records/transfer_predictions.parquet")));

    // A clone without run directories: the transfer tables rebuild byte for byte, the archive
    // is kept as it was, and the report draws the transfer matrix from the records.
    std::fs::remove_dir_all(out.join("runs")).unwrap();
    results::write_summary(&out, false).unwrap();
    archive::export(&out).unwrap();
    assert_eq!(snapshot(&out), before, "rebuilt from records/ alone");
    let written = opencarbon::report::write(&out).unwrap();
    assert!(written.figures.iter().any(|f| f.stem == "transfer"));
    let png = std::fs::metadata(out.join("report/transfer.png")).unwrap();
    assert!(png.len() > 1000, "transfer.png is {} bytes", png.len());
}

#[test]
fn a_failed_sweep_and_an_empty_only_change_no_committed_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("trust");
    swept(&out);
    std::fs::remove_dir_all(out.join("runs")).unwrap();
    let before = snapshot(&out);
    let spec = tmp.path().join("trust.yaml");
    // The same experiment on data that is not there: every run fails.
    std::fs::write(
        &spec,
        SPEC.replace(
            "{kind: synthetic, preset: monocentric, width: 12, height: 12, tile_side: 16, poi_categories: 4, seed: 5}",
            "{kind: odiac_tiles, labels: /nonexistent/Beijing.csv}",
        ),
    )
    .unwrap();
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .args(["run"])
            .arg(&spec)
            .arg("--out")
            .arg(&out)
            .args(["--quiet", "--no-report"])
            .args(extra)
            .output()
            .unwrap()
    };
    let failed = run(&[]);
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("tables not written"), "{stderr}");
    let mut after = snapshot(&out);
    after.retain(|p, _| !p.starts_with("launch"));
    assert_eq!(
        after, before,
        "a failed sweep changes no table, record or experiment.json"
    );

    // An --only that matches nothing is an error listing the valid values, and runs nothing.
    std::fs::remove_dir_all(out.join("runs")).unwrap();
    std::fs::write(&spec, SPEC).unwrap();
    let typo = run(&["--only", "variant=ridg"]);
    assert!(!typo.status.success());
    let stderr = String::from_utf8_lossy(&typo.stderr);
    assert!(
        stderr.contains("matches none") && stderr.contains("variant: mean, ridge, ridge_lag"),
        "{stderr}"
    );
    let mut after = snapshot(&out);
    after.retain(|p, _| !p.starts_with("launch"));
    assert_eq!(after, before);
    assert!(!out.join("runs").exists(), "nothing ran");
}

#[test]
fn gates_on_leak_prone_comparisons_are_refused_unless_allowed() {
    let random = SPEC.replace(
        "split: {kind: spatial_cv, folds: 3, block: 3}",
        "split: {kind: random_cv, folds: 3}",
    );
    let err = format!(
        "{:#}",
        Experiment::parse(&random, "leaky.yaml", &[]).unwrap_err()
    );
    assert!(
        err.contains("leak-prone") && err.contains("ridge_lag") && err.contains("spatial_cv"),
        "{err}"
    );
    // A buffer narrower than the window is leak-prone too.
    let narrow = SPEC.replace("block: 3}", "block: 3, buffer: 0}");
    let err = format!(
        "{:#}",
        Experiment::parse(&narrow, "narrow.yaml", &[]).unwrap_err()
    );
    assert!(err.contains("buffer is 0"), "{err}");
    // Stated on purpose: parsed, and the comparison table still says leak-prone.
    let allowed = format!("{random}allow_leaky: \"measures the leak\"\n");
    let e = Experiment::parse(&allowed, "leaky.yaml", &[]).unwrap();
    assert_eq!(e.allow_leaky.as_deref(), Some("measures the leak"));
    let tmp = tempfile::tempdir().unwrap();
    let (_, md) = common::sweep(&e, &common::run_options(tmp.path()), &[]);
    assert!(md.contains("leak-prone"), "{md}");
    let rows = results::collect(tmp.path()).unwrap();
    let order: Vec<String> = ["ridge_lag", "ridge", "mean"].map(String::from).to_vec();
    let table = results::comparison::compare(&rows, "ridge_lag", &order);
    assert!(
        table.iter().all(|r| r.leak.is_some()),
        "every row involves ridge_lag's window"
    );
    // A holdout gets a buffer too.
    let holdout = SPEC.replace(
        "split: {kind: spatial_cv, folds: 3, block: 3}",
        "split: {kind: holdout, test: {bbox: {x: [0, 3], y: [0, 11]}}, block: 3}",
    );
    let e = Experiment::parse(&holdout, "holdout.yaml", &[]).unwrap();
    assert!(e
        .runs
        .iter()
        .all(|r| r.split.guaranteed_buffer() == Some(1)));
    // A paired gate names the reference: that is the table row it is judged on.
    let off = SPEC.replace("ridge_lag > mean", "ridge > mean");
    let err = format!(
        "{:#}",
        Experiment::parse(&off, "off.yaml", &[]).unwrap_err()
    );
    assert!(err.contains("reference `ridge_lag`"), "{err}");
}

#[test]
fn gates_judge_on_the_holm_adjusted_p_of_the_comparison_table() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("trust");
    swept(&out);
    let rows = results::collect(&out).unwrap();
    let order: Vec<String> = ["ridge_lag", "ridge", "mean"].map(String::from).to_vec();
    let table = results::comparison::compare(&rows, "ridge_lag", &order);
    let gate = results::expect::Expectation::parse("ridge_lag > mean on r2 at 0.05").unwrap();
    let outcome = results::expect::check("g", &gate, &rows, &table);
    let row = table
        .iter()
        .find(|r| r.variant == "mean" && r.metric == "r2")
        .unwrap();
    // ridge_lag − mean = −(mean − ridge_lag): the gate passes exactly when the table says the
    // reference is better than `mean` at α = 0.05, by the same adjusted p.
    assert_eq!(
        outcome.passed,
        row.verdict == "worse",
        "{outcome:?} {row:?}"
    );
    assert!(
        outcome
            .evidence
            .contains(&format!("Holm-adjusted p = {:.4}", row.p_t_holm)),
        "{}",
        outcome.evidence
    );
}

/// Experiments committed before their records were: each names why in `results/UNRECORDED`.
fn unrecorded() -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/UNRECORDED");
    std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, why) = l.split_once(':').unwrap_or((l, ""));
            (name.trim().to_string(), why.trim().to_string())
        })
        .collect()
}

/// Every committed experiment with records rebuilds its committed tables byte for byte from
/// them (no training; seconds). One without records must be listed in results/UNRECORDED with
/// the reason, and a listed one must not have records (the list only shrinks).
#[test]
fn committed_tables_rebuild_byte_identically_from_committed_records() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    let listed = unrecorded();
    let mut checked = 0;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("summary.csv").is_file())
        .collect();
    entries.sort();
    for dir in entries {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if !archive::exists(&dir) {
            assert!(
                listed.contains_key(&name),
                "results/{name} has tables but no records/: commit its records (run its spec) or list it in results/UNRECORDED with the reason"
            );
            continue;
        }
        assert!(
            !listed.contains_key(&name),
            "results/{name} has records: remove it from results/UNRECORDED"
        );
        let tmp = tempfile::tempdir().unwrap();
        let copy = tmp.path().join(&name);
        std::fs::create_dir_all(copy.join("records")).unwrap();
        std::fs::copy(dir.join("experiment.json"), copy.join("experiment.json")).unwrap();
        for f in std::fs::read_dir(dir.join("records")).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, copy.join("records").join(f.file_name().unwrap())).unwrap();
        }
        results::write_summary(&copy, false).unwrap();
        for table in std::fs::read_dir(&copy).unwrap() {
            let table = table.unwrap().path();
            if table.is_dir() || table.ends_with("experiment.json") {
                continue;
            }
            let file = table.file_name().unwrap();
            let committed = std::fs::read(dir.join(file)).unwrap_or_else(|_| {
                panic!(
                    "results/{name}/{} is rebuilt but not committed",
                    file.to_string_lossy()
                )
            });
            assert!(
                std::fs::read(&table).unwrap() == committed,
                "results/{name}/{} does not rebuild byte for byte from its records",
                file.to_string_lossy()
            );
        }
        checked += 1;
    }
    eprintln!(
        "{checked} committed experiments rebuilt from their records; {} listed without",
        listed.len()
    );
}
