//! Exact mid-run resume, through the real binary (on whichever backend the test command built):
//! a run killed (SIGKILL) at a random batch, stopped by SIGTERM, or hit by two signals at once
//! resumes from its checkpoint, trains only the epochs that were left, and finishes with the same
//! test metrics, predictions, metric history and best weights, byte for byte, as the same run
//! left alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use opencarbon::fault;
use opencarbon::spec::RunSpec;
use opencarbon::track::preempt;

const BIN: &str = env!("CARGO_BIN_EXE_opencarbon");

/// One small network run (image + POI + tabular, contrastive from epoch 2, validation every
/// other epoch, a checkpoint after every epoch): a few seconds on flex.
const SPEC: &str = "
name: resume
seed: 11
dataset: {kind: synthetic, preset: monocentric, width: 6, height: 6, tile_side: 16, poi_categories: 3, seed: 2}
train:
  epochs: 8
  batch_size: 8
  validate_every: 2
  contrastive_epoch: 2
  standardize_target: true
  lr_schedule: cosine
  early_stopping: {rule: off}
  checkpoint_every: {epochs: 1}
";

fn write_spec(root: &Path) -> PathBuf {
    let file = root.join("resume.yaml");
    std::fs::write(&file, SPEC).unwrap();
    file
}

fn run_dir(out: &Path) -> PathBuf {
    let spec = RunSpec::parse(SPEC, "resume", &[]).unwrap();
    out.join("runs").join(spec.run_id())
}

fn command(spec: &Path, out: &Path, fault: Option<&str>) -> Command {
    let mut c = Command::new(BIN);
    c.args([
        "run",
        spec.to_str().unwrap(),
        "--quiet",
        "--no-report",
        "--out",
    ])
    .arg(out)
    .env_remove(fault::VAR);
    if let Some(f) = fault {
        c.env(fault::VAR, f);
    }
    c
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run(spec: &Path, out: &Path) -> Output {
    let o = command(spec, out, None).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    o
}

/// test_metrics.json without its wall-clock field (the one number two identical runs differ in).
fn test_metrics(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("test_metrics.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_object_mut().unwrap().remove("train_seconds");
    v
}

/// Everything the run's numbers are, compared byte for byte with the uninterrupted twin.
fn assert_same_run(resumed: &Path, alone: &Path, what: &str) {
    assert_eq!(
        test_metrics(resumed),
        test_metrics(alone),
        "{what}: test_metrics.json"
    );
    for file in ["predictions.csv", "metrics.csv", "split.csv"] {
        let a = std::fs::read(resumed.join(file)).unwrap();
        let b = std::fs::read(alone.join(file)).unwrap();
        assert!(
            a == b,
            "{what}: {file} differs from the uninterrupted run's"
        );
    }
    // The best weights tensor by tensor (burn orders the file's metadata as a hash map does).
    let best = |dir: &Path| std::fs::read(dir.join("checkpoints/best.safetensors")).unwrap();
    let (a, b) = (best(resumed), best(alone));
    let (a, b) = (
        safetensors::SafeTensors::deserialize(&a).unwrap(),
        safetensors::SafeTensors::deserialize(&b).unwrap(),
    );
    let mut names = a.names();
    names.sort();
    let mut other = b.names();
    other.sort();
    assert_eq!(names, other, "{what}: best.safetensors names");
    for name in names {
        let (x, y) = (a.tensor(name).unwrap(), b.tensor(name).unwrap());
        assert_eq!(x.shape(), y.shape(), "{what}: {name}");
        assert!(
            x.data() == y.data(),
            "{what}: best.safetensors tensor {name} differs"
        );
    }
    assert!(
        !resumed
            .join("checkpoints")
            .join(opencarbon::train::resume::FILE)
            .exists(),
        "{what}: a finished run keeps no resumable checkpoint"
    );
}

fn meta(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap()
}

/// The uninterrupted twin, trained once per test binary.
fn alone() -> &'static PathBuf {
    static ALONE: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    &ALONE
        .get_or_init(|| {
            let root = tempfile::tempdir().unwrap();
            let spec = write_spec(root.path());
            let out = root.path().join("alone");
            run(&spec, &out);
            let dir = run_dir(&out);
            (root, dir)
        })
        .1
}

/// Training batches per epoch (8 samples each; a last batch of one is skipped), from split.csv.
fn batches_per_epoch(run: &Path) -> usize {
    let split = std::fs::read_to_string(run.join("split.csv")).unwrap();
    let train = split.lines().filter(|l| l.ends_with(",train")).count();
    train / 8 + usize::from(train % 8 >= 2)
}

/// A seed from the clock, printed, so a failure names the batch it killed at.
fn random_in(lo: usize, hi: usize) -> usize {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    lo + nanos % (hi - lo + 1)
}

#[test]
fn a_run_killed_at_a_random_batch_resumes_to_the_same_bytes() {
    let alone = alone();
    let root = tempfile::tempdir().unwrap();
    let spec = write_spec(root.path());
    let out = root.path().join("killed");
    // A batch of epochs 2–7: a checkpoint exists and epochs remain.
    let per_epoch = batches_per_epoch(alone);
    let batch = random_in(per_epoch + 1, 7 * per_epoch);
    let killed = command(&spec, &out, Some(&format!("kill:batch#{batch}")))
        .output()
        .unwrap();
    assert!(
        !killed.status.success(),
        "the kill at batch {batch} did not happen: {}",
        text(&killed)
    );
    let dir = run_dir(&out);
    assert!(
        dir.join("checkpoints")
            .join(opencarbon::train::resume::FILE)
            .exists(),
        "batch {batch}"
    );
    let resumed = run(&spec, &out);
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(
        stderr.contains("resuming from its checkpoint at epoch"),
        "batch {batch}: {stderr}"
    );
    let from = meta(&dir)["resumed_from"].as_str().unwrap().to_string();
    let epoch: usize = from
        .strip_prefix("epoch ")
        .and_then(|r| r.split(',').next())
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| panic!("resumed_from `{from}`"));
    // Killed in batch `batch` (counted from 1): the epochs before it were checkpointed.
    assert_eq!(
        epoch,
        (batch - 1) / per_epoch + 1,
        "killed at batch {batch}, resumed at `{from}`"
    );
    assert_same_run(&dir, alone, &format!("killed at batch {batch}"));
}

/// Starts the run, waits until it has logged `epochs` training epochs, signals it.
fn signal_when_trained(spec: &Path, out: &Path, epochs: usize, signals: &[i32]) -> Output {
    let mut child = command(spec, out, None)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = run_dir(out).join("metrics.csv");
    let started = Instant::now();
    loop {
        let logged = std::fs::read_to_string(&metrics)
            .map(|t| t.lines().filter(|l| l.contains(",train,l1,")).count())
            .unwrap_or(0);
        if logged >= epochs {
            break;
        }
        if child.try_wait().unwrap().is_some() || started.elapsed() > Duration::from_secs(600) {
            panic!(
                "the run ended before epoch {epochs}: {}",
                text(&child.wait_with_output().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for &s in signals {
        unsafe { libc::kill(child.id() as i32, s) };
    }
    child.wait_with_output().unwrap()
}

#[test]
fn sigterm_checkpoints_exits_75_and_the_run_resumes_to_the_same_bytes() {
    let alone = alone();
    let root = tempfile::tempdir().unwrap();
    let spec = write_spec(root.path());
    let out = root.path().join("terminated");
    let stopped = signal_when_trained(&spec, &out, 2, &[libc::SIGTERM]);
    assert_eq!(
        stopped.status.code(),
        Some(preempt::EXIT_CODE),
        "{}",
        text(&stopped)
    );
    let dir = run_dir(&out);
    assert_eq!(meta(&dir)["status"], "preempted", "{}", text(&stopped));
    assert!(!dir.join("test_metrics.json").exists());
    // The lock is released: a status check and the resume take it at once.
    let resumed = run(&spec, &out);
    assert!(
        String::from_utf8_lossy(&resumed.stderr).contains("resuming from its checkpoint"),
        "{}",
        text(&resumed)
    );
    assert_same_run(&dir, alone, "stopped by SIGTERM");
}

#[test]
fn a_second_signal_exits_at_once_and_nothing_is_lost() {
    let alone = alone();
    let root = tempfile::tempdir().unwrap();
    let spec = write_spec(root.path());
    let out = root.path().join("twice");
    let stopped = signal_when_trained(&spec, &out, 3, &[libc::SIGUSR1, libc::SIGTERM]);
    // Exit 76 when the second signal beat the checkpoint, 75 when it came after.
    let code = stopped.status.code();
    assert!(
        code == Some(preempt::EXIT_CODE_FORCED) || code == Some(preempt::EXIT_CODE),
        "{}",
        text(&stopped)
    );
    let dir = run_dir(&out);
    run(&spec, &out);
    assert_same_run(&dir, alone, &format!("two signals (exit {code:?})"));
}

#[test]
fn a_torn_or_foreign_checkpoint_is_not_resumed_from() {
    let alone = alone();
    let root = tempfile::tempdir().unwrap();
    let spec = write_spec(root.path());
    let out = root.path().join("torn");
    let batch = 2 * batches_per_epoch(alone) + 1;
    let killed = command(&spec, &out, Some(&format!("kill:batch#{batch}")))
        .output()
        .unwrap();
    assert!(!killed.status.success(), "{}", text(&killed));
    let ckpt = run_dir(&out)
        .join("checkpoints")
        .join(opencarbon::train::resume::FILE);
    let bytes = std::fs::read(&ckpt).unwrap();
    std::fs::write(&ckpt, &bytes[..bytes.len() / 2]).unwrap();
    let again = run(&spec, &out);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("not resuming from") && stderr.contains("training from the start"),
        "{stderr}"
    );
    assert!(meta(&run_dir(&out)).get("resumed_from").is_none());
    assert_same_run(
        &run_dir(&out),
        alone,
        "a torn checkpoint, trained from the start",
    );
}

#[test]
fn a_signal_to_a_jobs_2_sweep_reaches_its_workers_and_the_sweep_resumes() {
    let alone = alone();
    let root = tempfile::tempdir().unwrap();
    let spec = root.path().join("sweep.yaml");
    std::fs::write(
        &spec,
        SPEC.replace(
            "seed: 11",
            "seeds: [11, 12]\nlauncher: {kind: local, jobs: 2}",
        ),
    )
    .unwrap();
    let out = root.path().join("sweep");
    let stopped = signal_when_trained(&spec, &out, 2, &[libc::SIGTERM]);
    assert_eq!(
        stopped.status.code(),
        Some(preempt::EXIT_CODE),
        "{}",
        text(&stopped)
    );
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert!(stderr.contains("checkpointed"), "{stderr}");
    assert!(
        !out.join("summary.csv").exists(),
        "a preempted sweep writes no tables"
    );
    let dir = run_dir(&out);
    assert_eq!(meta(&dir)["status"], "preempted");
    run(&spec, &out);
    assert!(meta(&dir)["resumed_from"].is_string(), "{}", meta(&dir));
    assert_same_run(&dir, alone, "a --jobs 2 sweep stopped by SIGTERM");
    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert!(
        summary
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains(",2,") || l.contains(",2")),
        "{summary}"
    );
}

/// A transfer run (train on one synthetic city, zero-shot and few-shot on another) killed while
/// saving its second fine-tuning: the resumed run trains nothing again, reuses the finished
/// fine-tuning, repeats only the interrupted one, and writes the uninterrupted run's bytes.
#[test]
fn a_transfer_run_killed_in_fine_tuning_resumes_to_the_same_bytes() {
    const TRANSFER: &str = "
name: resume-transfer
seed: 5
datasets:
  mono: {kind: synthetic, preset: monocentric, width: 6, height: 6, tile_side: 16, poi_categories: 3, seed: 1}
  poly: {kind: synthetic, preset: polycentric, width: 6, height: 6, tile_side: 16, poi_categories: 3, seed: 2}
split: {kind: random, test: 0.25, valid: 0.25}
model: {modalities: [poi, tabular]}
train:
  epochs: 4
  batch_size: 8
  validate_every: 1
  contrastive_epoch: 1
  contrastive: {pair: [poi, tabular]}
  standardize_target: true
  early_stopping: {rule: off}
  checkpoint_every: {epochs: 1}
transfer: {sources: [mono], few_shot: [0, 0.2, 0.5], block: 2, fine_tune: {epochs: 3}}
";
    let root = tempfile::tempdir().unwrap();
    let spec = root.path().join("transfer.yaml");
    std::fs::write(&spec, TRANSFER).unwrap();
    let (alone, killed) = (root.path().join("alone"), root.path().join("killed"));
    run(&spec, &alone);
    let run_of = |out: &Path| -> PathBuf {
        let runs: Vec<PathBuf> = std::fs::read_dir(out.join("runs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(runs.len(), 1, "{runs:?}");
        runs[0].clone()
    };
    let stopped = command(&spec, &killed, Some("kill:write:finetune_poly_0.5.ckpt"))
        .output()
        .unwrap();
    assert!(!stopped.status.success(), "{}", text(&stopped));
    let dir = run_of(&killed);
    let reused = dir.join("checkpoints/finetune/finetune_poly_0.2.ckpt");
    assert!(reused.is_file(), "the first fine-tuning's result is kept");
    let resumed = run(&spec, &killed);
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(
        stderr.contains("resuming from its checkpoint at epoch 4, after training"),
        "{stderr}"
    );
    assert!(
        !dir.join("checkpoints/finetune").exists(),
        "a finished run keeps no fine-tuning results"
    );
    let twin = run_of(&alone);
    assert_eq!(test_metrics(&dir), test_metrics(&twin));
    for file in [
        "metrics.csv",
        "predictions.csv",
        "transfer.json",
        "transfer_predictions.csv",
    ] {
        let (a, b) = (
            std::fs::read(dir.join(file)).unwrap(),
            std::fs::read(twin.join(file)).unwrap(),
        );
        assert!(a == b, "{file} differs from the uninterrupted run's");
    }
}
