//! Launchers through the binary: `run --jobs 2` gives the metrics of a sequential sweep, `status`
//! tells done from failed and pending, and a worker refuses a task its manifest does not hold.
//! (The Slurm launcher is tested against a real Slurm by scripts/test-slurm.sh.)

use crate::common;

use std::path::Path;
use std::process::Command;

use opencarbon::launch;
use opencarbon::spec::Experiment;

const SPEC: &str = "name: launch
seeds: [1, 2]
dataset: {kind: synthetic, preset: monocentric, width: 8, height: 8, tile_side: 16, poi_categories: 4, seed: 5}
split: {kind: random_cv, folds: 3}
train: {epochs: 2, batch_size: 16, validate_every: 1, standardize_target: true, early_stopping: {rule: off}}
variants:
  full: {model: {neighbourhood: 0}}
  ridge: {baseline: {kind: ridge, columns: [ln_population, ln_gdp]}}
  mean: {baseline: {kind: mean}}
";

fn opencarbon(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_opencarbon"))
        .args(args)
        .output()
        .expect("the opencarbon binary runs")
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every run's test_metrics.json without its timing, by run id.
fn metrics(out: &Path) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = std::fs::read_dir(out.join("runs"))
        .unwrap()
        .map(|e| {
            let dir = e.unwrap().path();
            let json = std::fs::read_to_string(dir.join("test_metrics.json")).unwrap();
            let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
            v.as_object_mut().unwrap().remove("train_seconds");
            (
                dir.file_name().unwrap().to_string_lossy().into_owned(),
                v.to_string(),
            )
        })
        .collect();
    all.sort();
    all
}

#[test]
fn jobs_2_gives_the_metrics_of_a_sequential_sweep_and_status_reads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("launch.yaml");
    std::fs::write(&spec, SPEC).unwrap();
    let sequential = tmp.path().join("sequential");
    let e = Experiment::parse(SPEC, "launch.yaml", &[]).unwrap();
    common::sweep(&e, &common::run_options(&sequential), &[]);

    let parallel = tmp.path().join("parallel");
    let run_jobs_2 = || {
        opencarbon(&[
            "run",
            spec.to_str().unwrap(),
            "--out",
            parallel.to_str().unwrap(),
            "--jobs",
            "2",
            "--quiet",
            "--no-report",
        ])
    };
    let o = run_jobs_2();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(metrics(&parallel), metrics(&sequential));
    assert_eq!(
        std::fs::read_to_string(parallel.join("summary.csv")).unwrap(),
        std::fs::read_to_string(sequential.join("summary.csv")).unwrap()
    );
    // One log per worker.
    assert_eq!(
        std::fs::read_dir(parallel.join("logs")).unwrap().count(),
        e.runs.len()
    );

    // status: all done; then one run failed (its meta.json says why) and one never started.
    let o = opencarbon(&["status", parallel.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "{} done, 0 failed, 0 running, 0 pending",
            e.runs.len()
        )),
        "{}",
        text(&o)
    );
    let ids: Vec<String> = metrics(&parallel).into_iter().map(|(id, _)| id).collect();
    let failed = parallel.join("runs").join(&ids[0]);
    std::fs::remove_file(failed.join("test_metrics.json")).unwrap();
    let meta_path = failed.join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    meta["status"] = "failed".into();
    meta["failure"] = "the test says so".into();
    std::fs::write(&meta_path, meta.to_string()).unwrap();
    std::fs::remove_dir_all(parallel.join("runs").join(&ids[1])).unwrap();
    let o = opencarbon(&["status", parallel.to_str().unwrap()]);
    let t = text(&o);
    assert!(
        t.contains(&format!(
            "{} done, 1 failed, 0 running, 1 pending",
            e.runs.len() - 2
        )),
        "{t}"
    );
    assert!(
        t.lines()
            .any(|l| l.starts_with(&ids[0]) && l.contains("the test says so")),
        "{t}"
    );
    // --require-done names what is missing.
    let manifest = parallel.join("launch").join("manifest.txt");
    let o = opencarbon(&[
        "status",
        parallel.to_str().unwrap(),
        "--require-done",
        manifest.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("2 of") && text(&o).contains(&ids[0]),
        "{}",
        text(&o)
    );

    // Launching again runs only the two missing runs.
    let o = run_jobs_2();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("2 to run"), "{}", text(&o));
    assert_eq!(launch::read_manifest(&manifest).unwrap().len(), 2);
    assert_eq!(metrics(&parallel), metrics(&sequential));
}

#[test]
fn a_worker_refuses_a_task_its_manifest_does_not_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("launch.yaml");
    std::fs::write(&spec, SPEC).unwrap();
    let manifest = tmp.path().join("m.txt");
    launch::write_manifest(&manifest, &["s9-notarun00".to_string()]).unwrap();
    let out = tmp.path().join("out");
    let run = |task: &str| {
        opencarbon(&[
            "run",
            spec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--manifest",
            manifest.to_str().unwrap(),
            "--task",
            task,
            "--quiet",
        ])
    };
    let o = run("0");
    assert!(!o.status.success());
    assert!(
        text(&o).contains("s9-notarun00") && text(&o).contains("not a run of this spec"),
        "{}",
        text(&o)
    );
    let o = run("3");
    assert!(!o.status.success());
    assert!(text(&o).contains("task 3 is out of range"), "{}", text(&o));
}
