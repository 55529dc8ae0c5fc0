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
use opencarbon::record::state as resume;
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
    spec.model_params()
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

// ---------------------------------------------------------------------------------------------
// Structural fuzzing of specs: the byte fuzzers above rarely produce a well-formed spec with one
// section missing, emptied or of the wrong type. These start from every committed spec under
// experiments/, change its *structure* at a key path (remove the key, empty the mapping or list,
// or put a value of another YAML type there, nested keys included), in the file or by `--set`,
// and parse it as `opencarbon run` does. `Experiment::parse` must never panic, and an error must
// name the key it concerns (the key changed, or, for a tagged section's `kind` and list entries,
// the key holding it).

use serde_norway::{Mapping, Value};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// What is done at a key path.
#[derive(Debug, Clone)]
enum Change {
    /// The key is left out (a list entry removed).
    Remove,
    /// A mapping becomes `{}`, a list `[]`, a scalar `''`.
    Empty,
    /// The value is replaced.
    Set(Value),
}

/// The committed specs (path relative to the crate, text), read once.
fn committed_specs() -> &'static [(String, String)] {
    static SPECS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    SPECS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        let mut dirs = vec![root.join("experiments")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "yaml") {
                    let name = path.strip_prefix(root).unwrap().display().to_string();
                    files.push((name, std::fs::read_to_string(&path).unwrap()));
                }
            }
        }
        files.sort();
        assert!(
            files.len() >= 10,
            "the committed specs under experiments/: {files:?}"
        );
        files
    })
}

/// Values of every YAML type, several that serde would take for a number of the wrong range.
fn wrong_values() -> Vec<Value> {
    [
        "x",
        "''",
        "0",
        "-1",
        "0.5",
        "18446744073709551615",
        "1e300",
        ".nan",
        "true",
        "~",
        "[]",
        "[1, x]",
        "[[]]",
        "{}",
        "{x: 1}",
        "{kind: x}",
    ]
    .iter()
    .map(|t| serde_norway::from_str(t).unwrap())
    .collect()
}

/// Every key path of `value` (mapping keys and list indices), parents before children.
fn key_paths(value: &Value) -> Vec<Vec<Step>> {
    fn walk(v: &Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
        let children: Vec<(Step, &Value)> = match v {
            Value::Mapping(m) => m
                .iter()
                .filter_map(|(k, v)| Some((Step::Key(k.as_str()?.to_string()), v)))
                .collect(),
            Value::Sequence(s) => s
                .iter()
                .enumerate()
                .map(|(i, v)| (Step::Index(i), v))
                .collect(),
            _ => return,
        };
        for (step, child) in children {
            at.push(step);
            out.push(at.clone());
            walk(child, at, out);
            at.pop();
        }
    }
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

fn show(path: &[Step]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Key(k) if s.is_empty() => s.push_str(k),
            Step::Key(k) => {
                s.push('.');
                s.push_str(k)
            }
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Applies `change` at `path` (which exists in `root`).
fn change_at(root: &mut Value, path: &[Step], change: &Change) {
    let (last, parent) = path.split_last().expect("a key path has a step");
    let mut node = root;
    for step in parent {
        node = match (node, step) {
            (Value::Mapping(m), Step::Key(k)) => m.get_mut(k.as_str()).unwrap(),
            (Value::Sequence(s), Step::Index(i)) => &mut s[*i],
            _ => unreachable!("paths come from the value"),
        };
    }
    match (node, last, change) {
        (Value::Mapping(m), Step::Key(k), Change::Remove) => {
            m.remove(k.as_str());
        }
        (Value::Sequence(s), Step::Index(i), Change::Remove) => {
            s.remove(*i);
        }
        (Value::Mapping(m), Step::Key(k), change) => {
            let slot = m.get_mut(k.as_str()).unwrap();
            *slot = replacement(slot, change);
        }
        (Value::Sequence(s), Step::Index(i), change) => {
            s[*i] = replacement(&s[*i], change);
        }
        _ => unreachable!("paths come from the value"),
    }
}

fn replacement(old: &Value, change: &Change) -> Value {
    match change {
        Change::Set(v) => v.clone(),
        Change::Empty => match old {
            Value::Mapping(_) => Value::Mapping(Mapping::new()),
            Value::Sequence(_) => Value::Sequence(vec![]),
            _ => Value::String(String::new()),
        },
        Change::Remove => unreachable!("handled by the caller"),
    }
}

/// Whether `word` stands in `message` as a word (not inside a longer name).
fn names_word(message: &str, word: &str) -> bool {
    let is_name = |c: char| c.is_alphanumeric() || c == '_';
    message.match_indices(word).any(|(i, _)| {
        let before = message[..i].chars().next_back();
        let after = message[i + word.len()..].chars().next();
        !before.is_some_and(is_name) && !after.is_some_and(is_name)
    })
}

/// How a key path was changed, for what its error may name.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Changed {
    /// Replaced or emptied in the file: the key itself.
    Value,
    /// Removed from the file: the key, or the key that held it.
    Removed,
    /// Set by `--set`, which creates the mappings on its way: the key or any above it.
    Set,
}

/// Whether an error about a change at `path` names it: the key changed (a list entry: its
/// list's key); for `kind`, the tag of a section, that section's key; see [`Changed`].
fn concerns(message: &str, path: &[Step], how: Changed) -> bool {
    let keys: Vec<&str> = path
        .iter()
        .filter_map(|s| match s {
            Step::Key(k) => Some(k.as_str()),
            Step::Index(_) => None,
        })
        .collect();
    let Some(&leaf) = keys.last() else {
        return true;
    };
    if names_word(message, leaf) {
        return true;
    }
    let removed = how == Changed::Removed && path.last() == Some(&Step::Key(leaf.into()));
    if (leaf == "kind" || removed) && keys.len() >= 2 && names_word(message, keys[keys.len() - 2]) {
        return true;
    }
    how == Changed::Set && keys.iter().any(|k| names_word(message, k))
}

/// Parses `text` with `overrides` as `opencarbon run` does; an Err(String) for a panic.
fn parse_catching(
    text: &str,
    origin: &str,
    overrides: &[String],
) -> Result<anyhow::Result<opencarbon::spec::Experiment>, String> {
    std::panic::catch_unwind(|| opencarbon::spec::Experiment::parse(text, origin, overrides))
        .map_err(|p| {
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
}

/// The `--set` form of a change: `path=value` (None where `--set` cannot say it: a removal, a
/// list entry, a key holding `.` or `=`).
fn as_override(path: &[Step], value: &Value) -> Option<String> {
    let mut keys = Vec::new();
    for step in path {
        match step {
            Step::Key(k) if !k.contains(['.', '=']) && !k.is_empty() => keys.push(k.as_str()),
            _ => return None,
        }
    }
    let text = serde_norway::to_string(value).ok()?;
    Some(format!("{}={}", keys.join("."), text.trim_end()))
}

fn by_set(overrides: &[String]) -> String {
    if overrides.is_empty() {
        String::new()
    } else {
        format!(" (by --set {})", overrides.join(" --set "))
    }
}

/// Whether committed spec `spec` parses unchanged, once per spec.
fn base_parses(spec: usize) -> bool {
    static OK: std::sync::OnceLock<Vec<bool>> = std::sync::OnceLock::new();
    let ok = OK.get_or_init(|| {
        committed_specs()
            .iter()
            .map(|(origin, text)| parse_catching(text, origin, &[]).is_ok_and(|r| r.is_ok()))
            .collect()
    });
    ok[spec % ok.len()]
}

/// Checks one structural change of the committed spec `spec` (an index into
/// [`committed_specs`]); `via_set` puts it on the command line instead of in the file.
fn check_structure(spec: usize, changes: &[(usize, Change)], via_set: bool) -> Result<(), String> {
    let spec = spec % committed_specs().len();
    let (origin, text) = &committed_specs()[spec];
    let base: Value = serde_norway::from_str(text).unwrap();
    let paths = key_paths(&base);
    let mut value = base.clone();
    let mut overrides = Vec::new();
    let mut changed: Vec<(Vec<Step>, Changed)> = Vec::new();
    for (at, change) in changes {
        // Paths of the changed value, so that a second change may land inside the first.
        let now = key_paths(&value);
        let pool = if now.is_empty() { &paths } else { &now };
        if pool.is_empty() {
            break;
        }
        let path = pool[at % pool.len()].clone();
        let set = match change {
            Change::Set(v) if via_set => as_override(&path, v),
            _ => None,
        };
        let how = match set {
            Some(o) => {
                overrides.push(o);
                Changed::Set
            }
            None if key_paths(&value).contains(&path) => {
                change_at(&mut value, &path, change);
                if matches!(change, Change::Remove) {
                    Changed::Removed
                } else {
                    Changed::Value
                }
            }
            None => continue,
        };
        changed.push((path, how));
    }
    let mutated = serde_norway::to_string(&value).unwrap();
    let outcome = parse_catching(&mutated, origin, &overrides).map_err(|panic| {
        format!(
            "{origin}: panicked ({panic}) after changing {changed:?}{}:\n{mutated}",
            by_set(&overrides)
        )
    })?;
    let Err(e) = outcome else { return Ok(()) };
    let message = format!("{e:#}");
    // The unchanged spec must parse for its errors to be the change's (a committed spec that
    // does not parse here is still checked for panics).
    if !base_parses(spec) {
        return Ok(());
    }
    if !message.contains(origin.as_str()) && !message.contains("--set") {
        return Err(format!("error names neither the file nor --set: {message}"));
    }
    let expect_line = changed
        .iter()
        .any(|(p, _)| p.first() == Some(&Step::Key("expect".into())))
        && message.contains("line ");
    if !expect_line && !changed.iter().any(|(p, how)| concerns(&message, p, *how)) {
        let shown: Vec<String> = changed.iter().map(|(p, _)| show(p)).collect();
        return Err(format!(
            "{origin}: changing {}{} gives an error that names none of them: {message}",
            shown.join(", "),
            by_set(&overrides)
        ));
    }
    Ok(())
}

/// Every committed spec, every key path, each change once (removal, emptied, a value of each
/// YAML type), in the file; and every top-level section emptied or nulled by `--set`.
#[test]
fn spec_structure_every_key_path() {
    let changes: Vec<Change> = [Change::Remove, Change::Empty]
        .into_iter()
        .chain(
            [
                "x",
                "-1",
                "18446744073709551615",
                "true",
                "~",
                "[1, x]",
                "{x: 1}",
            ]
            .iter()
            .map(|t| Change::Set(serde_norway::from_str(t).unwrap())),
        )
        .collect();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (spec, (_, text)) in committed_specs().iter().enumerate() {
        let n = key_paths(&serde_norway::from_str(text).unwrap()).len();
        for at in 0..n {
            for change in &changes {
                checked += 1;
                if let Err(f) = check_structure(spec, &[(at, change.clone())], false) {
                    failures.push(f);
                }
            }
        }
        let (origin, _) = &committed_specs()[spec];
        for key in [
            "variants",
            "datasets",
            "dataset",
            "seeds",
            "seed",
            "split",
            "model",
            "train",
            "transfer",
            "baseline",
            "expect",
            "compare",
            "launcher",
            "name",
            "description",
        ] {
            for value in ["{}", "[]", "~", "x", "-1"] {
                let set = [format!("{key}={value}")];
                checked += 1;
                match parse_catching(text, origin, &set) {
                    Err(panic) => {
                        failures.push(format!("{origin} --set {}: panicked ({panic})", set[0]))
                    }
                    Ok(Err(e)) => {
                        let message = format!("{e:#}");
                        if !names_word(&message, key) && base_parses(spec) {
                            failures.push(format!(
                                "{origin} --set {}: error does not name `{key}`: {message}",
                                set[0]
                            ));
                        }
                    }
                    Ok(Ok(_)) => {}
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} structural changes failed:\n{}",
        failures.len(),
        failures.join("\n---\n")
    );
}

fn structural_change() -> impl Strategy<Value = (usize, Change)> {
    let values = wrong_values();
    (
        any::<usize>(),
        prop_oneof![
            1 => Just(Change::Remove),
            1 => Just(Change::Empty),
            4 => proptest::sample::select(values).prop_map(Change::Set),
        ],
    )
}

proptest! {
    // Ten times the byte fuzzers' cases: a structural case is a parse, about a millisecond.
    #![proptest_config(ProptestConfig { cases: cases() * 10, ..config() })]

    /// Up to three changes at once, in the file or by `--set`, on a random committed spec.
    #[test]
    fn spec_structure(
        spec in any::<usize>(),
        changes in proptest::collection::vec(structural_change(), 1..4),
        via_set in any::<bool>(),
    ) {
        if let Err(f) = check_structure(spec, &changes, via_set) {
            prop_assert!(false, "{}", f);
        }
    }
}
