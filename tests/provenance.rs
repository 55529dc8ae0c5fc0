//! Provenance in `meta.json`: the binary's commit, CPU, threads, the numerics environment and a
//! content hash of every data file read; and a done run whose data changed since is trained again
//! instead of being reported with its old metrics. Nothing here depends on float values.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use opencarbon::data::{canonical, fingerprint, synthetic};
use opencarbon::runner::{self, RunOutcome};
use opencarbon::spec::RunSpec;
use opencarbon::track::meta::NUMERICS_ENV;
use sha2::{Digest, Sha256};

use crate::common;

const BIN: &str = env!("CARGO_BIN_EXE_opencarbon");

/// A small file-based city (tiles.csv, city.yaml, images/, poi.npy) under `root/city`.
fn write_city(root: &Path) -> PathBuf {
    let city = synthetic::generate(&synthetic::SynthConfig {
        preset: synthetic::Preset::Monocentric,
        width: 6,
        height: 6,
        tile_side: 16,
        poi_categories: 3,
        seed: 5,
        signal: Default::default(),
    })
    .unwrap();
    let dir = root.join("city");
    canonical::write(&city, &dir, &common::manifest()).unwrap();
    dir
}

/// One small network run (POI + tabular, 16 px tiles) on the city in `city`: seconds on flex.
fn spec_text(city: &Path) -> String {
    format!(
        "
name: provenance
seed: 4
dataset: {{kind: dir, path: '{}'}}
model: {{modalities: [poi, tabular]}}
train:
  epochs: 2
  batch_size: 8
  validate_every: 1
  contrastive_epoch: 1
  contrastive: {{pair: [poi, tabular]}}
  standardize_target: true
  early_stopping: {{rule: off}}
",
        city.display()
    )
}

fn sha256(path: &Path) -> String {
    let digest = Sha256::digest(std::fs::read(path).unwrap());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_meta(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("meta.json")).unwrap()).unwrap()
}

fn is_sha256(value: &serde_json::Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[test]
fn meta_json_records_build_device_threads_numerics_and_data() {
    let root = tempfile::tempdir().unwrap();
    let city = write_city(root.path());
    let spec = RunSpec::parse(&spec_text(&city), "provenance.yaml", &[]).unwrap();
    let (dir, outcome) =
        runner::run(&spec, &common::run_options(&root.path().join("out"))).unwrap();
    assert!(matches!(outcome, RunOutcome::Done(_)));
    let meta = read_meta(&dir);
    assert_eq!(meta["status"], "done");

    // The binary's commit (this test's own build, in this checkout), and a mismatch only when
    // the working directory's commit is known and another.
    let in_repo = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .is_ok_and(|o| o.status.success());
    if in_repo {
        let commit = meta["build_commit"].as_str().expect("build_commit");
        assert!(commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(meta["build_dirty"].is_boolean(), "{meta}");
    }
    let mismatch = meta["git_commit"].is_string()
        && meta["build_commit"].is_string()
        && meta["git_commit"] != meta["build_commit"];
    assert_eq!(meta["commit_mismatch"], mismatch, "{meta}");

    // Device, threads and every numerics variable as this process sees it.
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if cpuinfo.lines().any(|l| l.starts_with("model name")) {
        assert!(!meta["cpu"].as_str().expect("cpu").is_empty());
    }
    assert!(meta["gpu"].is_null(), "no GPU name off CUDA: {meta}");
    assert!(meta["threads"].as_u64().expect("threads") >= 1);
    for name in NUMERICS_ENV {
        let expected = std::env::var(name).unwrap_or_else(|_| "(unset)".into());
        assert_eq!(meta["numerics"][name], expected.as_str(), "{name}");
    }
    for name in [
        "OPENCARBON_ADAM",
        "OPENCARBON_CONV_GRAD",
        "OPENCARBON_TCH_BATCH_NORM",
        "OPENCARBON_FLEX_BATCH_NORM",
    ] {
        assert!(NUMERICS_ENV.contains(&name), "{name}");
    }

    // Every file the loader read, hashed; the image folder as one entry.
    let data = meta["data"].as_object().expect("data");
    for file in ["city.yaml", "tiles.csv", "poi.npy"] {
        let path = city.join(file);
        assert_eq!(
            data[&path.display().to_string()],
            sha256(&path).as_str(),
            "{file}"
        );
    }
    assert!(is_sha256(&data[&city.join("images").display().to_string()]));
    assert_eq!(data.len(), 4, "{data:?}");
}

#[test]
fn a_synthetic_city_is_fingerprinted_by_its_generated_labels() {
    let spec = |seed: u64| {
        let text = format!(
            "name: s\ndataset: {{kind: synthetic, preset: monocentric, width: 4, height: 4, tile_side: 8, poi_categories: 2, seed: {seed}}}\n"
        );
        RunSpec::parse(&text, "s.yaml", &[]).unwrap()
    };
    let a = spec(1).data_fingerprint(None).unwrap();
    let key = format!("{}{}", fingerprint::SYNTHETIC, spec(1).dataset_label());
    assert_eq!(a.keys().collect::<Vec<_>>(), [&key]);
    assert!(is_sha256(&serde_json::json!(a[&key])));
    assert_eq!(a, spec(1).data_fingerprint(None).unwrap(), "deterministic");
    assert_ne!(a, spec(2).data_fingerprint(None).unwrap(), "another city");
    // Not regenerated to decide staleness: the spec (in the run id) fixes it.
    assert_eq!(fingerprint::changed(&a), None);
}

fn run_binary(spec: &Path, out: &Path) -> Output {
    Command::new(BIN)
        .args([
            "run",
            spec.to_str().unwrap(),
            "--quiet",
            "--no-report",
            "--out",
        ])
        .arg(out)
        .env_remove(opencarbon::fault::VAR)
        .output()
        .expect("running opencarbon")
}

fn log(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn assert_skipped(output: &Output) {
    let log = log(output);
    assert!(log.contains("already done, skipped"), "{log}");
}

/// Every emission of `tiles.csv` times 10 (zero stays zero; every other tile changes).
fn scale_emissions(tiles: &Path) {
    let text = std::fs::read_to_string(tiles).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let column = header.split(',').position(|c| c == "emission").unwrap();
    let mut out = format!("{header}\n");
    for line in lines {
        let mut fields: Vec<String> = line.split(',').map(String::from).collect();
        assert_eq!(fields.len(), header.split(',').count(), "{line}");
        fields[column] = (fields[column].parse::<f64>().unwrap() * 10.0).to_string();
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    std::fs::write(tiles, out).unwrap();
}

#[test]
fn a_done_run_whose_labels_changed_is_trained_again() {
    let root = tempfile::tempdir().unwrap();
    let city = write_city(root.path());
    let text = spec_text(&city);
    let spec_file = root.path().join("provenance.yaml");
    std::fs::write(&spec_file, &text).unwrap();
    let out = root.path().join("out");
    let run = out
        .join("runs")
        .join(RunSpec::parse(&text, "p", &[]).unwrap().run_id());
    let tiles = city.join("tiles.csv");
    let tiles_key = tiles.display().to_string();

    let first = run_binary(&spec_file, &out);
    assert!(first.status.success(), "{}", log(&first));
    assert_skipped(&run_binary(&spec_file, &out));

    scale_emissions(&tiles);
    let stale = run_binary(&spec_file, &out);
    let stale_log = log(&stale);
    assert!(stale.status.success(), "{stale_log}");
    assert!(
        stale_log.contains(&format!("data changed since this run: {tiles_key}")),
        "{stale_log}"
    );
    assert!(
        stale_log.contains(" finished: "),
        "not trained again: {stale_log}"
    );
    assert_eq!(read_meta(&run)["data"][&tiles_key], sha256(&tiles).as_str());
    assert_skipped(&run_binary(&spec_file, &out));

    // A record from before data hashes has nothing to compare: it stays done.
    let mut meta = read_meta(&run);
    meta.as_object_mut().unwrap().remove("data");
    std::fs::write(run.join("meta.json"), meta.to_string()).unwrap();
    scale_emissions(&tiles);
    assert_skipped(&run_binary(&spec_file, &out));
}
