//! Fuzzing every input the project reads (bounded for CI): specs, `--set`, the canonical city's
//! files (tiles.csv, city.yaml, poi.npy, images), split files, ODIAC label tables, checkpoints and
//! run directories. Each input is a valid one mutated (bytes cut, flipped, inserted, lines
//! dropped) or plain noise. Nothing may panic, and every error must name the file (or `--set`).
//!
//! Cases per target: `OPENCARBON_FUZZ_CASES` (default 48; docs/reliability.md's campaign ran 2,000), from a
//! fixed seed (`OPENCARBON_FUZZ_SEED`, default 1) so that CI is repeatable; vary the seed by hand
//! to search further.

use crate::common;

use std::path::Path;

use opencarbon::data::canonical;
use opencarbon::data::synthetic::{generate, Preset, SynthConfig};
use opencarbon::data::{odiac, City, SplitConfig};
use opencarbon::runner::resume;
use opencarbon::spec::RunSpec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// One run's spec; [`EXPERIMENT`] adds seeds and variants.
const SPEC: &str = "
name: fuzz
seed: 4
dataset: {kind: synthetic, preset: monocentric, width: 4, height: 4, tile_side: 16, poi_categories: 2, seed: 5}
model: {modalities: [poi, tabular], neighbourhood: 1}
train: {epochs: 2, batch_size: 8, lr: 0.001, contrastive: {pair: [poi, tabular]}}
";

const EXPERIMENT: &str = "
seeds: [1, 2]
variants:
  full: {}
  ridge: {baseline: {kind: ridge, columns: [ln_population]}}
";

fn config() -> ProptestConfig {
    let seed = std::env::var("OPENCARBON_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(seed),
        ..ProptestConfig::default()
    }
}

fn cases() -> u32 {
    std::env::var("OPENCARBON_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(48)
}

/// Ways to damage bytes: cut at a point, overwrite a byte, insert bytes, drop a line, or noise.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    DropLine(usize),
    Noise(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<usize>(),
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 1..8),
                Just(b"-1".to_vec()),
                Just(b"NaN".to_vec()),
                Just(b"1e999".to_vec()),
                Just(b",".to_vec()),
                Just(b"\n".to_vec()),
                Just(b"\"".to_vec()),
                Just(b": [".to_vec()),
            ]
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::DropLine),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Mutation::Noise),
    ];
    proptest::collection::vec(one, 1..4)
}

fn apply(bytes: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for m in mutations {
        match m {
            Mutation::Truncate(i) => b.truncate(i % (b.len() + 1)),
            Mutation::Flip(i, v) if !b.is_empty() => {
                let n = b.len();
                b[i % n] = *v;
            }
            Mutation::Flip(..) => {}
            Mutation::Insert(i, v) => {
                let at = i % (b.len() + 1);
                b.splice(at..at, v.iter().copied());
            }
            Mutation::DropLine(i) => {
                let text = String::from_utf8_lossy(&b).into_owned();
                let mut lines: Vec<&str> = text.split('\n').collect();
                let n = lines.len();
                lines.remove(i % n);
                b = lines.join("\n").into_bytes();
            }
            Mutation::Noise(v) => b = v.clone(),
        }
    }
    b
}

/// An error must say where: the file's name (or the origin given) in its message chain.
fn names(err: &anyhow::Error, what: &str) -> Result<(), TestCaseError> {
    let message = format!("{err:#}");
    prop_assert!(
        message.contains(what),
        "error does not name `{what}`: {message}"
    );
    Ok(())
}

fn small_city() -> City {
    let mut city = generate(&SynthConfig {
        preset: Preset::Monocentric,
        width: 3,
        height: 3,
        tile_side: 16,
        poi_categories: 2,
        seed: 1,
        signal: Default::default(),
    })
    .unwrap();
    city.name = "fuzz".into();
    city
}

/// A valid canonical directory to damage, once per test binary.
fn city_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        canonical::write(&small_city(), dir.path(), &common::manifest()).unwrap();
        dir
    })
    .path()
}

/// Copies the valid city, damages `file` in the copy, and loads it.
fn load_damaged(file: &str, mutations: &[Mutation]) -> Result<(), TestCaseError> {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(city_dir(), copy.path());
    let path = copy.path().join(file);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, apply(&bytes, mutations)).unwrap();
    if let Err(e) = canonical::load(copy.path()) {
        // The image loader names the tile's file; the others the file itself.
        let name = Path::new(file).file_name().unwrap().to_string_lossy();
        names(&e, &name)?;
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn spec_parser(m in mutation()) {
        let valid = format!("{SPEC}{EXPERIMENT}");
        let text = String::from_utf8_lossy(&apply(valid.as_bytes(), &m)).into_owned();
        if let Err(e) = opencarbon::spec::Experiment::parse(&text, "fuzz.yaml", &[]) {
            names(&e, "fuzz.yaml")?;
        }
    }

    #[test]
    fn set_overrides(key in "[a-z_.\\[\\]0-9]{0,24}", value in "\\PC{0,16}") {
        let set = [format!("{key}={value}")];
        if let Err(e) = RunSpec::parse(SPEC, "fuzz.yaml", &set) {
            names(&e, "--set")?;
        }
        // Without `=` at all.
        if let Err(e) = RunSpec::parse(SPEC, "fuzz.yaml", &[key]) {
            names(&e, "--set")?;
        }
    }

    #[test]
    fn tiles_csv(m in mutation()) { load_damaged("tiles.csv", &m)?; }

    #[test]
    fn city_yaml(m in mutation()) { load_damaged("city.yaml", &m)?; }

    #[test]
    fn poi_npy(m in mutation()) { load_damaged("poi.npy", &m)?; }

    #[test]
    fn images(m in mutation(), tile in 0usize..9) {
        let city = small_city();
        let key = city.keys[tile];
        load_damaged(&format!("images/{}_{}.png", key.x, key.y), &m)?;
    }

    #[test]
    fn split_files(m in mutation()) {
        let city = small_city();
        let mut valid = String::from("x,y,split\n");
        for (i, k) in city.keys.iter().enumerate() {
            valid.push_str(&format!("{},{},{}\n", k.x, k.y, ["train", "valid", "test"][i % 3]));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("split.csv");
        std::fs::write(&path, apply(valid.as_bytes(), &m)).unwrap();
        if let Err(e) = (SplitConfig::File { path }).split(&city, 1) {
            names(&e, "split.csv")?;
        }
    }

    #[test]
    fn odiac_label_tables(m in mutation()) {
        let valid = "satellite_img_name,BD09 coordinate,WGS84 coordinate,carbon_emissions (ton),population (unit),gdp (million yuan)\n\
            B/16_12659_4738_s.jpg,\"(12659,4738)\",\"(40.09, 116.44)\",564.68,1916,4344.1\n\
            B/16_12668_4714_s.jpg,\"(12668,4714)\",\"(39.92, 116.52)\",1667.1,6945,10000.0\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Labels.csv");
        std::fs::write(&path, apply(valid.as_bytes(), &m)).unwrap();
        if let Err(e) = odiac::import(&path) {
            names(&e, "Labels.csv")?;
        }
    }

    #[test]
    fn checkpoints(m in mutation()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("best.safetensors");
        std::fs::write(&path, apply(checkpoint(), &m)).unwrap();
        if let Err(e) = opencarbon::train::trainer::load_checkpoint(network(), &path) {
            names(&e, "best.safetensors")?;
        }
        // The resume check reads it without burn and never panics either.
        let _ = resume::check_safetensors(&path);
    }

    #[test]
    fn run_directories(m in mutation(), file in 0usize..5) {
        let bytes = checkpoint();
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path();
        std::fs::create_dir_all(run.join("checkpoints")).unwrap();
        let spec = RunSpec::parse(SPEC, "fuzz.yaml", &[]).unwrap();
        std::fs::write(run.join("spec.resolved.yaml"), spec.resolved_yaml()).unwrap();
        std::fs::write(run.join("test_metrics.json"), r#"{"r2":0.5,"rmse":0.4,"mae":0.3,"mape":0.1,"n":2,"best_epoch":1,"valid":{"r2":0.5,"rmse":0.4,"mae":0.3,"mape":0.1,"n":2},"epochs_run":2,"stopped_early":false,"train_seconds":1.0}"#).unwrap();
        std::fs::write(run.join("metrics.csv"), "epoch,split,metric,value\n1,test,r2,0.5\n").unwrap();
        std::fs::write(run.join("predictions.csv"), "x,y,target,prediction\n1,2,3.5,3.4\n2,2,1.0,1.1\n").unwrap();
        std::fs::write(run.join("checkpoints/best.safetensors"), bytes).unwrap();
        let names = ["test_metrics.json", "metrics.csv", "predictions.csv", "spec.resolved.yaml", "checkpoints/best.safetensors"];
        let target = run.join(names[file]);
        let original = std::fs::read(&target).unwrap();
        std::fs::write(&target, apply(&original, &m)).unwrap();
        // meta.json is missing: never Done, whatever else parses; and no panic.
        prop_assert!(!matches!(resume::check(run, Some(&spec)), resume::State::Done(_)));
    }
}

/// A fresh small network (eval mode, as checkpoints are loaded).
fn network() -> opencarbon::model::OpenCarbon {
    let spec = RunSpec::parse(SPEC, "fuzz.yaml", &[]).unwrap();
    spec.model
        .init(&small_city().shapes(), &common::device())
        .unwrap()
}

/// A real checkpoint of [`network`], written once per test binary.
fn checkpoint() -> &'static [u8] {
    static CHECKPOINT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    CHECKPOINT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("best.safetensors");
        opencarbon::train::trainer::save_checkpoint(&network(), &path).unwrap();
        std::fs::read(&path).unwrap()
    })
}
