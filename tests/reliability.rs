//! Faults, through the real binary: corrupt artefacts are re-run (never trusted), two processes on
//! one results directory train each run once, a stale lock is taken over, a NaN loss and a full
//! disk fail the run without marking it done, a kill at a write leaves nothing half-written, and
//! names from an untrusted spec cannot leave the experiment directory. Numbers cross files exactly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common;
use opencarbon::fault;
use opencarbon::record::TestMetrics;
use opencarbon::spec::RunSpec;
use proptest::prelude::*;

const BIN: &str = env!("CARGO_BIN_EXE_opencarbon");

/// One small network run (POI + tabular, 16 px tiles): a few seconds on flex.
const RUN_SPEC: &str = "
name: tiny
seed: 4
dataset: {kind: synthetic, preset: monocentric, width: 6, height: 6, tile_side: 16, poi_categories: 3, seed: 5}
model: {modalities: [poi, tabular]}
train:
  epochs: 3
  batch_size: 8
  validate_every: 1
  contrastive_epoch: 1
  contrastive: {pair: [poi, tabular]}
  standardize_target: true
  early_stopping: {rule: off}
";

fn opencarbon(args: &[&str], fault: Option<&str>) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).env_remove(fault::VAR);
    if let Some(f) = fault {
        command.env(fault::VAR, f);
    }
    command.output().expect("running opencarbon")
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Writes the spec, runs it once into `out`, and returns (spec file, run directory).
fn trained_run(root: &Path) -> (PathBuf, PathBuf) {
    let spec_file = root.join("tiny.yaml");
    std::fs::write(&spec_file, RUN_SPEC).unwrap();
    let out = run_spec(&spec_file, &root.join("out"), None);
    assert!(out.status.success(), "{}", text(&out));
    (spec_file, run_dir(root))
}

fn run_spec(spec: &Path, out: &Path, fault: Option<&str>) -> Output {
    let args = [
        "run",
        spec.to_str().unwrap(),
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ];
    opencarbon(&args, fault)
}

fn run_dir(root: &Path) -> PathBuf {
    let spec = RunSpec::parse(RUN_SPEC, "tiny", &[]).unwrap();
    root.join("out").join("runs").join(spec.run_id())
}

#[test]
fn corrupt_artefacts_are_run_again_saying_why() {
    let root = tempfile::tempdir().unwrap();
    let (spec, dir) = trained_run(root.path());
    let again = run_spec(&spec, &root.path().join("out"), None);
    assert!(
        text(&again).contains("already done, skipped"),
        "{}",
        text(&again)
    );

    let truncate = |name: &str| {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    };
    let garbage = |name: &str| std::fs::write(dir.join(name), b"\x00garbage{").unwrap();
    type Damage<'a> = &'a dyn Fn(&str);
    let cases: [(&str, Damage, &str); 5] = [
        (
            "test_metrics.json",
            &truncate,
            "test_metrics.json does not parse",
        ),
        (
            "test_metrics.json",
            &garbage,
            "test_metrics.json does not parse",
        ),
        ("meta.json", &garbage, "meta.json does not parse"),
        (
            "checkpoints/best.safetensors",
            &truncate,
            "checkpoints/best.safetensors",
        ),
        ("metrics.csv", &truncate, "metrics.csv"),
    ];
    for (file, damage, reason) in cases {
        damage(file);
        let out = run_spec(&spec, &root.path().join("out"), None);
        let log = text(&out);
        assert!(out.status.success(), "{file}: {log}");
        assert!(
            log.contains("not trusted as done") && log.contains(reason),
            "{file}: {log}"
        );
        assert!(
            log.contains(" finished: "),
            "{file} should have been re-run: {log}"
        );
        // Re-run whole: the next start trusts it again.
        let next = run_spec(&spec, &root.path().join("out"), None);
        assert!(
            text(&next).contains("already done, skipped"),
            "{}",
            text(&next)
        );
    }
}

#[test]
fn a_nan_loss_fails_the_run_naming_epoch_and_batch() {
    let root = tempfile::tempdir().unwrap();
    let spec = root.path().join("tiny.yaml");
    std::fs::write(&spec, RUN_SPEC).unwrap();
    // The second batch of epoch 2 (batches of 8; a last batch of one is skipped).
    let parsed = RunSpec::parse(RUN_SPEC, "tiny", &[]).unwrap();
    let city = opencarbon::data::load_city(&parsed.dataset, &Default::default()).unwrap();
    let train = parsed.split.split(&city, parsed.seed).unwrap().train.len();
    let per_epoch = train / 8 + usize::from(train % 8 >= 2);
    let fault = format!("nan:batch#{}", per_epoch + 2);
    let out = run_spec(&spec, &root.path().join("out"), Some(&fault));
    let log = text(&out);
    assert!(!out.status.success(), "{log}");
    assert!(
        log.contains("training stopped at epoch 2")
            && log.contains(&format!("L1 loss is NaN at batch 2 of {per_epoch}")),
        "{log}"
    );
    let dir = run_dir(root.path());
    assert!(!dir.join("test_metrics.json").exists());
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["status"], "failed");
    assert!(meta["failure"].as_str().unwrap().contains("NaN"), "{meta}");
}

#[test]
fn a_full_disk_fails_the_write_and_nothing_is_marked_done() {
    for point in [
        "enospc:write:test_metrics.json",
        "enospc:write:best.safetensors",
        "enospc:write:predictions.csv",
    ] {
        let root = tempfile::tempdir().unwrap();
        let spec = root.path().join("tiny.yaml");
        std::fs::write(&spec, RUN_SPEC).unwrap();
        let out = run_spec(&spec, &root.path().join("out"), Some(point));
        let log = text(&out);
        assert!(!out.status.success(), "{point}: {log}");
        assert!(log.contains("No space left on device"), "{point}: {log}");
        let dir = run_dir(root.path());
        assert!(!dir.join("test_metrics.json").exists(), "{point}");
        let leftovers: Vec<_> = walk(&dir)
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{point}: scratch files {leftovers:?}");
        // With room again, the run completes.
        let out = run_spec(&spec, &root.path().join("out"), None);
        assert!(out.status.success(), "{point}: {}", text(&out));
    }
}

/// The same on a real full file system: a 96 KiB tmpfs, when this process may mount one (root
/// with CAP_SYS_ADMIN); otherwise it says so (a loud skip, never a failure: CI containers rarely
/// have the privilege) and checks nothing more than the injected case above.
#[test]
fn a_real_full_tmpfs_fails_the_run_and_nothing_is_marked_done() {
    let root = tempfile::tempdir().unwrap();
    let mount_point = root.path().join("full");
    std::fs::create_dir(&mount_point).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=96k", "tmpfs"])
        .arg(&mount_point)
        .output()
        .is_ok_and(|o| o.status.success());
    if !mounted {
        common::skipped(
            "cannot mount a 96 KiB tmpfs here (needs root with CAP_SYS_ADMIN): the real full-disk \
             case is not checked, only the injected one",
        );
        return;
    }
    let spec = root.path().join("tiny.yaml");
    std::fs::write(&spec, RUN_SPEC).unwrap();
    let out = run_spec(&spec, &mount_point, None);
    let files = walk(&mount_point);
    Command::new("umount").arg(&mount_point).status().ok();
    let log = text(&out);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("No space left on device"), "{log}");
    assert!(
        !files.iter().any(|p| p.ends_with("test_metrics.json")),
        "{files:?}"
    );
    assert!(
        !files.iter().any(|p| p.to_string_lossy().ends_with(".tmp")),
        "{files:?}"
    );
}

#[test]
fn a_kill_while_publishing_test_metrics_leaves_the_run_not_done() {
    let root = tempfile::tempdir().unwrap();
    let spec = root.path().join("tiny.yaml");
    std::fs::write(&spec, RUN_SPEC).unwrap();
    let out = run_spec(
        &spec,
        &root.path().join("out"),
        Some("kill:rename:test_metrics.json"),
    );
    assert!(!out.status.success(), "{}", text(&out));
    let dir = run_dir(root.path());
    assert!(!dir.join("test_metrics.json").exists());
    let out = run_spec(&spec, &root.path().join("out"), None);
    let log = text(&out);
    assert!(log.contains(" finished: "), "{log}");
    assert!(
        log.contains("taking over a stale lock"),
        "the killed run's lock: {log}"
    );
    assert!(!walk(&dir)
        .iter()
        .any(|p| p.to_string_lossy().ends_with(".tmp")));
}

#[test]
fn two_processes_on_one_results_directory_train_each_run_once() {
    let root = tempfile::tempdir().unwrap();
    let spec = root.path().join("sweep.yaml");
    std::fs::write(
        &spec,
        format!("{RUN_SPEC}seeds: [1, 2, 3]\nvariants:\n  full: {{}}\n  no_contrastive: {{train: {{alpha: 0}}}}\n"),
    )
    .unwrap();
    let out = root.path().join("out");
    let start = || {
        Command::new(BIN)
            .args(["run", spec.to_str().unwrap(), "--quiet", "--out"])
            .arg(&out)
            .env_remove(fault::VAR)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start(), start());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let mut trained = 0;
    for output in [&a, &b] {
        let log = text(output);
        assert!(output.status.success(), "{log}");
        // "<name>: N run, M already done, 0 failed → …"
        let line = log.lines().find(|l| l.contains(" already done, ")).unwrap();
        let n: usize = line
            .split(": ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        trained += n;
        assert!(line.contains(" 0 failed"), "{line}");
    }
    assert_eq!(trained, 6, "each of the 6 runs trained exactly once");
    let rows = opencarbon::results::collect(&out).unwrap();
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r.status == "done"), "{rows:?}");
}

#[test]
fn untrusted_names_cannot_leave_the_experiment_directory() {
    for name in [
        "../../x",
        "..",
        ".hidden",
        "a/b",
        "a\\b",
        "$(touch x)",
        "",
        "a b",
    ] {
        let text = RUN_SPEC.replace("name: tiny", &format!("name: {:?}", name));
        let err = RunSpec::parse(&text, "pr.yaml", &[]).unwrap_err();
        assert!(format!("{err:#}").contains("name:"), "{name}: {err:#}");
    }
    assert!(RunSpec::parse(
        &RUN_SPEC.replace("name: tiny", "name: paper-main_v2.1"),
        "ok",
        &[]
    )
    .is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every f64 the project writes as JSON reads back bit for bit (serde_json's
    /// `float_roundtrip`), so a skipped run reports exactly what the trained run did.
    #[test]
    fn test_metrics_round_trip_bit_for_bit(
        v in proptest::array::uniform4(proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO),
        n in 1usize..10_000,
    ) {
        let metrics: TestMetrics = serde_json::from_value(serde_json::json!({
            "r2": v[0], "rmse": v[1], "mae": v[2], "mape": v[3], "n": n, "best_epoch": 3,
            "valid": {"r2": v[3], "rmse": v[2], "mae": v[1], "mape": v[0], "n": n},
            "epochs_run": 4, "stopped_early": false, "train_seconds": v[1],
        })).unwrap();
        let text = serde_json::to_string_pretty(&metrics).unwrap();
        let back: TestMetrics = serde_json::from_str(&text).unwrap();
        let bits = |m: &TestMetrics| [m.r2, m.rmse, m.mae, m.mape, m.valid.r2, m.train_seconds].map(f64::to_bits);
        prop_assert_eq!(bits(&back), bits(&metrics));
    }

    /// Spec values cross the resolved YAML exactly (the run id hashes them).
    #[test]
    fn spec_floats_round_trip_through_the_resolved_yaml(lr in 1e-9f64..1.0, wd in 0.0f64..1.0) {
        let spec = RunSpec::parse(RUN_SPEC, "tiny", &[format!("train.lr={lr:e}"), format!("train.weight_decay={wd:?}")]).unwrap();
        let back = RunSpec::parse(&spec.resolved_yaml(), "resolved", &[]).unwrap();
        prop_assert_eq!(back.train.lr.to_bits(), spec.train.lr.to_bits());
        prop_assert_eq!(back.train.weight_decay.to_bits(), wd.to_bits());
        prop_assert_eq!(back.run_id(), spec.run_id());
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// `bench --compare-cpu` checks the programs it compares against before measuring anything, and
/// names the one it cannot run.
#[test]
fn bench_compare_cpu_names_a_program_it_cannot_run() {
    let tmp = tempfile::tempdir().unwrap();
    let bench = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_opencarbon"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["bench", "--compare-cpu", "--tiles", "16", "--side", "16"])
            .args(["--poi-categories", "2", "--batch", "4", "--steps", "1"])
            .args(extra)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let missing = tmp.path().join("no-python");
    let err = bench(&["--torch-python", missing.to_str().unwrap()]);
    assert!(
        err.contains("--torch-python") && err.contains("no-python"),
        "{err}"
    );
    // A program that runs but cannot import torch (any that exits non-zero).
    let err = bench(&["--torch-python", "false"]);
    assert!(err.contains("cannot import torch"), "{err}");
    let err = bench(&["--reference", "tools/bench/missing.py"]);
    assert!(err.contains("tools/bench/missing.py"), "{err}");
}
