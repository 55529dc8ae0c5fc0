//! Spec parsing: defaults, overrides, and one clear error per kind of mistake.

use opencarbon::model::Modality;
use opencarbon::spec::RunSpec;
use proptest::prelude::*;

const BASE: &str =
    "name: t\ndataset: {kind: synthetic, preset: monocentric, width: 4, height: 4}\n";

fn error_of(text: &str) -> String {
    format!("{:#}", RunSpec::parse(text, "spec.yaml", &[]).unwrap_err())
}

#[test]
fn committed_quickstart_parses_with_paper_defaults() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/experiments/quickstart.yaml");
    let spec = RunSpec::load(path.as_ref(), &[]).unwrap();
    assert_eq!(spec.model.embedding_dim, 32);
    assert_eq!(spec.model.modalities, vec![Modality::Image, Modality::Poi]);
    assert_eq!(spec.model.neighbourhood, 1);
    assert_eq!(spec.train.batch_size, 32);
    assert_eq!(spec.train.weight_decay, 5e-3);
    assert_eq!(spec.train.contrastive.temperature, 0.07);
}

#[test]
fn unknown_key_names_line_path_and_suggestion() {
    let e = error_of(&format!("{BASE}train:\n  lr_rate: 0.1\n"));
    assert!(e.contains("spec.yaml"), "{e}");
    assert!(e.contains("line 4"), "{e}");
    assert!(e.contains("train"), "{e}");
    assert!(e.contains("did you mean `lr`"), "{e}");
}

#[test]
fn misspelt_enum_value_suggests() {
    let e = error_of(&format!("{BASE}model:\n  modalities: [imgae, poi]\n"));
    assert!(e.contains("model.modalities"), "{e}");
    assert!(e.contains("did you mean `image`"), "{e}");
}

#[test]
fn wrong_type_names_the_key() {
    let e = error_of(&format!("{BASE}train:\n  epochs: many\n"));
    assert!(e.contains("train.epochs"), "{e}");
}

#[test]
fn out_of_range_values_are_listed_together() {
    let e = error_of(&format!(
        "{BASE}train:\n  lr: -1\n  batch_size: 1\nsplit: {{kind: random, test: 1.5}}\n"
    ));
    assert!(e.contains("train.lr"), "{e}");
    assert!(e.contains("train.batch_size"), "{e}");
    assert!(e.contains("split.test"), "{e}");
}

#[test]
fn contrastive_needs_both_modalities() {
    let e = error_of(&format!("{BASE}model: {{modalities: [poi]}}\n"));
    assert!(e.contains("train.alpha"), "{e}");
    let ok = RunSpec::parse(
        &format!("{BASE}model: {{modalities: [poi]}}\ntrain: {{alpha: 0}}\n"),
        "s",
        &[],
    );
    assert!(ok.is_ok());
}

#[test]
fn missing_required_key() {
    let e = error_of("name: t\n");
    assert!(e.contains("dataset"), "{e}");
}

#[test]
fn overrides_take_precedence() {
    let spec = RunSpec::parse(
        BASE,
        "s",
        &[
            "train.lr=5e-4".into(),
            "model.modalities=[image]".into(),
            "train.alpha=0".into(),
        ],
    )
    .unwrap();
    assert_eq!(spec.train.lr, 5e-4);
    assert_eq!(spec.model.modalities, vec![Modality::Image]);
    let e = format!(
        "{:#}",
        RunSpec::parse(BASE, "s", &["train.lrr=1".into()]).unwrap_err()
    );
    assert!(e.contains("did you mean `lr`"), "{e}");
}

#[test]
fn run_id_is_stable_and_depends_on_the_spec() {
    let a = RunSpec::parse(BASE, "s", &[]).unwrap();
    let b = RunSpec::parse(BASE, "other", &[]).unwrap();
    assert_eq!(a.run_id(), b.run_id());
    let c = RunSpec::parse(BASE, "s", &["train.lr=0.01".into()]).unwrap();
    assert_ne!(a.run_id(), c.run_id());
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = RunSpec::parse(&text, "fuzz", &[]);
    }

    #[test]
    fn arbitrary_overrides_never_panic(key in "[a-z_.]{0,20}", value in "\\PC{0,20}") {
        let _ = RunSpec::parse(BASE, "fuzz", &[format!("{key}={value}")]);
    }
}

#[test]
fn every_committed_spec_expands() {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                out.push(path);
            }
        }
    }
    let mut specs = Vec::new();
    walk(
        concat!(env!("CARGO_MANIFEST_DIR"), "/experiments").as_ref(),
        &mut specs,
    );
    assert!(specs.len() >= 7);
    for path in specs {
        let e = opencarbon::spec::Experiment::load(&path, &[])
            .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        assert!(!e.runs.is_empty());
    }
}

/// `--set` reaches the experiment-level keys too: `expect`, `compare` and `launcher` (an override
/// used to be dropped silently, so a sweep run with `--set "expect=[]"` still checked them).
#[test]
fn set_overrides_expectations_reference_and_launcher() {
    let text = "name: e
seeds: [1]
dataset: {kind: synthetic, preset: monocentric, width: 6, height: 6, tile_side: 16, poi_categories: 4, seed: 5}
split: {kind: random, test: 0.2, valid: 0.25}
launcher: {kind: local, jobs: 2}
compare: {reference: ridge}
variants:
  ridge: {baseline: {kind: ridge, columns: [ln_population]}}
  mean: {baseline: {kind: mean}}
expect:
  - ridge > mean on r2 at 0.05
";
    let plain = opencarbon::spec::Experiment::parse(text, "e.yaml", &[]).unwrap();
    assert_eq!(plain.expect.len(), 1);
    assert_eq!(plain.reference.as_deref(), Some("ridge"));
    let sets = [
        "expect=[]".to_string(),
        "compare.reference=mean".to_string(),
        "launcher.jobs=1".to_string(),
    ];
    let set = opencarbon::spec::Experiment::parse(text, "e.yaml", &sets).unwrap();
    assert!(set.expect.is_empty());
    assert_eq!(set.reference.as_deref(), Some("mean"));
    assert_ne!(
        format!("{:?}", set.launcher),
        format!("{:?}", plain.launcher)
    );
    let bad = opencarbon::spec::Experiment::parse(text, "e.yaml", &["expect=3".to_string()]);
    assert!(format!("{:#}", bad.unwrap_err()).contains("expect"));
}

/// `tracking:` is the experiment's own section: it parses in a one-run spec too, changes no run
/// id, takes `--set` (what `run --no-tracking` adds), and its mistakes name their key and line.
#[test]
fn tracking_is_an_experiment_section_that_changes_no_run_id() {
    use opencarbon::spec::Experiment;
    let parse = |text: &str, sets: &[&str]| {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Experiment::parse(text, "t.yaml", &sets)
    };
    let untracked = parse(BASE, &[]).unwrap();
    let text =
        format!("{BASE}tracking: {{mlflow: {{uri: 'http://127.0.0.1:5000', experiment: x}}}}\n");
    let tracked = parse(&text, &[]).unwrap();
    assert_eq!(tracked.runs[0].run_id(), untracked.runs[0].run_id());
    let target = tracked
        .tracking
        .target(&tracked.name, Some("http://env:1"))
        .unwrap();
    assert_eq!(
        (target.uri.as_str(), target.experiment.as_str()),
        ("http://127.0.0.1:5000", "x")
    );
    let off = parse(BASE, &["tracking.enabled=false"]).unwrap();
    assert_eq!(off.runs[0].run_id(), untracked.runs[0].run_id());
    assert_eq!(off.tracking.target("t", Some("http://env:1")), None);
    let e = format!(
        "{:#}",
        parse(&format!("{BASE}tracking: {{mlflow: {{url: x}}}}\n"), &[]).unwrap_err()
    );
    assert!(e.contains("tracking.mlflow") && e.contains("line 3"), "{e}");
    let e = format!(
        "{:#}",
        parse(
            &format!("{BASE}tracking: {{mlflow: {{uri: 'http://me:pw@lab:5000'}}}}\n"),
            &[]
        )
        .unwrap_err()
    );
    assert!(
        e.contains("tracking.mlflow.uri") && e.contains("credentials"),
        "{e}"
    );
}

fn experiment_error(text: &str, overrides: &[&str]) -> String {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let outcome = std::panic::catch_unwind(|| {
        opencarbon::spec::Experiment::parse(text, "e.yaml", &overrides)
    });
    match outcome {
        Ok(Ok(_)) => panic!("parsed: {text} {overrides:?}"),
        Ok(Err(e)) => format!("{e:#}"),
        Err(_) => panic!("panicked: {text} {overrides:?}"),
    }
}

const SYNTH: &str =
    "{kind: synthetic, preset: monocentric, width: 4, height: 4, tile_side: 16, poi_categories: 2}";

/// `variants: {}`, `datasets: {}`, `seeds: []` and `--set 'variants={}'` used to panic (an
/// experiment of no run); each is an error naming its key.
#[test]
fn empty_variants_datasets_or_seeds_are_errors_naming_the_key() {
    let e = experiment_error(&format!("name: e\ndataset: {SYNTH}\nvariants: {{}}\n"), &[]);
    assert!(
        e.contains("`variants` is empty") && e.contains("e.yaml"),
        "{e}"
    );
    let e = experiment_error("name: e\ndatasets: {}\n", &[]);
    assert!(e.contains("`datasets` is empty"), "{e}");
    let e = experiment_error(&format!("name: e\ndataset: {SYNTH}\nseeds: []\n"), &[]);
    assert!(e.contains("`seeds` is empty"), "{e}");
    let e = experiment_error(&format!("name: e\ndataset: {SYNTH}\n"), &["variants={}"]);
    assert!(e.contains("`variants` is empty"), "{e}");
    let e = experiment_error(
        &format!("name: e\ndataset: {SYNTH}\nvariants: {{a: {{}}}}\n"),
        &["datasets={}"],
    );
    assert!(e.contains("datasets"), "{e}");
}

/// A bad value inside a `kind:`-tagged section (dataset, split) is named by its full key path,
/// not only by the section (serde loses the path inside such sections).
#[test]
fn errors_inside_tagged_sections_name_the_field() {
    let e =
        error_of("name: t\ndataset: {kind: synthetic, preset: monocentric, width: x, height: 4}\n");
    assert!(e.contains("key `dataset.width`"), "{e}");
    let e = error_of(&format!(
        "{BASE}split: {{kind: spatial_cv, folds: 5, block: -1}}\n"
    ));
    assert!(e.contains("key `split.block`"), "{e}");
    let e = error_of(&format!(
        "{BASE}split: {{kind: holdout, test: {{bbox: {{x: [1], y: [0, 3]}}}}}}\n"
    ));
    assert!(e.contains("split.test.bbox.x"), "{e}");
    let e = experiment_error(
        "name: e\ndatasets: {a: {kind: synthetic, preset: monocentric, width: 4, height: 4, signal: {spill: [1]}}}\n",
        &[],
    );
    assert!(e.contains("key `datasets.a.signal.spill`"), "{e}");
    let e = experiment_error(
        &format!("name: e\ndataset: {SYNTH}\nlauncher: {{slurm: {{gpus: x}}}}\n"),
        &[],
    );
    assert!(e.contains("launcher.slurm.gpus"), "{e}");
}

/// Numbers too large for what they size: an error, not an overflow or an allocation panic.
#[test]
fn huge_windows_and_fold_counts_are_errors() {
    let e = error_of(&format!(
        "{BASE}model: {{neighbourhood: 18446744073709551615}}\n"
    ));
    assert!(e.contains("model.neighbourhood"), "{e}");
    let e = experiment_error(
        &format!(
            "name: e\ndataset: {SYNTH}\nsplit: {{kind: random_cv, folds: 18446744073709551615}}\nseeds: [1]\n"
        ),
        &[],
    );
    assert!(e.contains("split.folds"), "{e}");
    let e = error_of(&format!(
        "{BASE}split: {{kind: random_cv, folds: 1000000}}\n"
    ));
    assert!(e.contains("split.folds"), "{e}");
}

/// `opencarbon run SPEC --dry-run` loads every dataset the runs use: a missing labels file fails
/// the dry run, naming the file (it used to print "todo" rows and exit 0).
#[test]
fn dry_run_with_a_missing_labels_file_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("no-such-dir/Nowhere.csv");
    let spec = dir.path().join("spec.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: missing
seeds: [1, 2]
datasets:
  nowhere: {{kind: odiac_tiles, labels: {}}}
split: {{kind: spatial_cv, folds: 5, block: 8}}
model: {{modalities: [tabular]}}
train: {{alpha: 0, epochs: 3}}
variants:
  network: {{}}
  mean: {{baseline: {{kind: mean}}}}
",
            labels.display()
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_opencarbon"))
        .args(["run", "--dry-run", "--out"])
        .arg(dir.path().join("out"))
        .arg(&spec)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "exit 0: {stdout}");
    assert!(stderr.contains("Nowhere.csv"), "{stderr}");
    assert!(!stdout.contains("todo"), "{stdout}");
}

/// A dry run prints one line per run with its tiles, epochs and an estimated duration measured on
/// this machine (baselines: —), and the state last (scripts read `done` off the line's end).
#[test]
fn dry_run_prints_epochs_and_an_estimate_per_run() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: estimate
seeds: [1]
dataset: {SYNTH}
split: {{kind: random, test: 0.25, valid: 0.25}}
model: {{modalities: [poi, tabular]}}
train: {{epochs: 7, batch_size: 4, contrastive: {{pair: [poi, tabular]}}}}
variants:
  network: {{}}
  mean: {{baseline: {{kind: mean}}}}
"
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_opencarbon"))
        .args(["run", "--dry-run", "--out"])
        .arg(dir.path().join("out"))
        .arg(&spec)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let network = lines.iter().find(|l| l.contains("network")).unwrap();
    // 16 tiles: 4 test, 3 valid, 9 train → 2 full batches of 4, and a last batch of one skipped.
    assert!(network.contains("tiles 9/3/4"), "{network}");
    assert!(network.contains("epochs 7 × 2 steps"), "{network}");
    assert!(network.contains("est. ≤ "), "{network}");
    assert!(network.trim_end().ends_with("todo"), "{network}");
    let mean = lines.iter().find(|l| l.contains("mean")).unwrap();
    assert!(
        mean.contains("epochs —") && mean.trim_end().ends_with("todo"),
        "{mean}"
    );
}

/// Rows `key | default` of `value` under `prefix`, nested mappings flattened (`train.early_stopping.rule`).
fn default_rows(prefix: &str, value: &serde_norway::Value, rows: &mut Vec<(String, String)>) {
    use serde_norway::Value;
    match value {
        Value::Mapping(m) if !m.is_empty() => {
            for (k, v) in m {
                let key = k.as_str().expect("config keys are names");
                let path = if prefix.is_empty() {
                    key.to_string()
                } else {
                    format!("{prefix}.{key}")
                };
                default_rows(&path, v, rows);
            }
        }
        other => rows.push((prefix.to_string(), show_default(other))),
    }
}

fn show_default(value: &serde_norway::Value) -> String {
    use serde_norway::Value;
    match value {
        Value::Null => "unset".into(),
        Value::Sequence(items) => format!(
            "[{}]",
            items
                .iter()
                .map(show_default)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Mapping(m) if m.is_empty() => "{}".into(),
        other => serde_norway::to_string(other)
            .unwrap()
            .trim_end()
            .to_string(),
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> serde_norway::Value {
    serde_norway::to_value(v).unwrap()
}

/// docs/defaults.md, generated from the config types: a minimal spec parsed (every serde default
/// and `Default` impl applied) and written back, each section's optional parts the same way.
fn defaults_doc() -> String {
    use serde_norway::Value;
    let minimal = "name: d\ndataset: {kind: synthetic, preset: monocentric, width: 4, height: 4}\n";
    let run = RunSpec::parse(minimal, "defaults", &[]).unwrap();
    let mut sections: Vec<(&str, &str, Vec<(String, String)>)> = Vec::new();
    let rows = |prefix: &str, value: Value| {
        let mut r = Vec::new();
        default_rows(prefix, &value, &mut r);
        r
    };
    // Left out of a resolved spec while at their defaults (so older run ids hold): listed here.
    let mut model = rows("model", to_value(&run.model));
    model.push((
        "model.clip_covariates".into(),
        show_default(&to_value(&run.model.clip_covariates)),
    ));
    let mut train = rows("train", to_value(&run.train));
    train.push((
        "train.lr_schedule".into(),
        show_default(&to_value(&run.train.lr_schedule)),
    ));
    train.push((
        "train.checkpoint_every".into(),
        show_default(&to_value(&run.train.checkpoint_every)),
    ));
    sections.push((
        "Run",
        "",
        vec![
            ("seed".into(), run.seed.to_string()),
            ("seeds".into(), "unset: one run, of `seed`".into()),
            ("variants".into(), "unset: one variant, `default`".into()),
            ("datasets".into(), "unset: the one `dataset`".into()),
            (
                "compare.reference".into(),
                "unset: the first variant".into(),
            ),
            ("expect".into(), "[]".into()),
        ],
    ));
    sections.push(("Model (`model:`)", "", model));
    sections.push(("Training (`train:`)", "", train));
    let mut split: Vec<(String, String, Vec<&str>)> = Vec::new();
    for (kind, given) in [
        ("random", ""),
        ("blocks", "block: 8"),
        ("holdout", "test: {bbox: {x: [0, 1], y: [0, 1]}}"),
        ("spatial_cv", "folds: 5, block: 8"),
        ("random_cv", "folds: 5"),
    ] {
        let text = |extra: &str| {
            let parts: Vec<&str> = [given, extra]
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect();
            format!("{{kind: {kind}, {}}}", parts.join(", ")).replace(", }", "}")
        };
        let config: opencarbon::data::SplitConfig = serde_norway::from_str(&text("")).unwrap();
        let Value::Mapping(mut m) = to_value(&config) else {
            unreachable!("a split is a mapping")
        };
        let required: serde_norway::Mapping = serde_norway::from_str(&text("")).unwrap();
        for key in required.keys() {
            m.remove(key);
        }
        // Optional keys left out of the written spec while unset.
        for key in ["seed", "buffer", "fold"] {
            let accepted = serde_norway::from_str::<opencarbon::data::SplitConfig>(&text(
                &format!("{key}: null"),
            ))
            .is_ok();
            if accepted && m.get(key).is_none() {
                m.insert(key.into(), Value::Null);
            }
        }
        // One row per key and default, with the kinds that take it.
        for (key, default) in rows("split", Value::Mapping(m)) {
            match split
                .iter_mut()
                .find(|(k, d, _): &&mut (String, String, Vec<&str>)| *k == key && *d == default)
            {
                Some((_, _, kinds)) => kinds.push(kind),
                None => split.push((key, default, vec![kind])),
            }
        }
    }
    let mut split: Vec<(String, String)> = split
        .into_iter()
        .map(|(key, default, kinds)| (key, format!("{default} ({})", kinds.join(", "))))
        .collect();
    split.insert(
        0,
        (
            "split".into(),
            format!("{{kind: {}}}", show_default(&to_value(&run.split)["kind"])),
        ),
    );
    sections.push((
        "Split (`split:`)",
        "Each default in brackets: the split kinds that take it (a kind's other keys are required). \
         An unset `seed` is the run's seed; an unset `fold` is every fold, one run each; an unset \
         `buffer` is the widest window any variant reads.",
        split,
    ));
    let synthetic: opencarbon::data::synthetic::SynthConfig =
        serde_norway::from_str("{preset: monocentric, width: 4, height: 4}").unwrap();
    let mut dataset = rows("dataset", to_value(&synthetic));
    dataset.retain(|(k, _)| {
        !["dataset.preset", "dataset.width", "dataset.height"].contains(&k.as_str())
    });
    dataset.extend(rows("dataset.signal", to_value(&synthetic.signal)));
    sections.push((
        "Synthetic city (`dataset: {kind: synthetic, preset, width, height}`)",
        "",
        dataset,
    ));
    let baseline: opencarbon::spec::BaselineSpec = serde_norway::from_str("{kind: ridge}").unwrap();
    let mut b = rows("baseline", to_value(&baseline));
    b.retain(|(k, _)| k != "baseline.kind");
    sections.push(("Baselines (`baseline:`)", "", b));
    let transfer: opencarbon::transfer::TransferConfig =
        serde_norway::from_str("{targets: []}").unwrap();
    let mut t = rows("transfer", to_value(&transfer));
    t.retain(|(k, _)| k != "transfer.targets");
    t.insert(0, ("transfer.targets".into(), "every other dataset".into()));
    sections.push((
        "Transfer (`transfer:`)",
        "An unset `fine_tune.lr` is a tenth of `train.lr`; an unset `fine_tune.batch_size` is `train.batch_size`.",
        t,
    ));
    let launcher = opencarbon::launch::LauncherConfig::default();
    sections.push((
        "Launcher (`launcher:`)",
        "An unset `jobs` is 1 (runs one after another in this process); unset Slurm options are Slurm's own defaults.",
        rows("launcher", to_value(&launcher)),
    ));
    let tracking = opencarbon::track::mlflow::TrackingConfig::default();
    let mut t = rows("tracking", to_value(&tracking));
    for (k, v) in t.iter_mut() {
        match k.as_str() {
            "tracking.mlflow.uri" => *v = "unset: `MLFLOW_TRACKING_URI`, else none".into(),
            "tracking.mlflow.experiment" => *v = "unset: the spec's `name`".into(),
            _ => {}
        }
    }
    sections.push((
        "Tracking (`tracking:`)",
        "No URI in the spec or the environment: no MLflow tracking ([tracking.md](tracking.md)).",
        t,
    ));
    let mut out = String::from(
        "# Defaults\n\n<!-- Generated by `tests/spec.rs` (defaults_doc_is_current) from the config types' defaults; \
         regenerate with `OPENCARBON_WRITE_DOCS=1 cargo test --test integration spec::defaults_doc`. -->\n\n\
         Every key of a spec that may be left out, and the value it then takes: built-in defaults → spec \
         file → `--set` ([experiments.md](experiments.md)). `unset` is an empty optional key.\n",
    );
    for (title, note, rows) in sections {
        out.push_str(&format!("\n## {title}\n\n"));
        if !note.is_empty() {
            out.push_str(note);
            out.push_str("\n\n");
        }
        out.push_str("| key | default |\n|---|---|\n");
        for (k, v) in rows {
            out.push_str(&format!("| `{k}` | {} |\n", v.replace('|', "\\|")));
        }
    }
    out
}

/// docs/defaults.md is the table of every default, generated from the code: this fails when a
/// default changes and the document does not.
#[test]
fn defaults_doc_is_current() {
    let doc = defaults_doc();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/defaults.md");
    if std::env::var_os("OPENCARBON_WRITE_DOCS").is_some() {
        std::fs::write(path, &doc).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == doc,
        "docs/defaults.md is stale (a default changed): regenerate it with \
         OPENCARBON_WRITE_DOCS=1 cargo test --test integration spec::defaults_doc, and review the diff"
    );
}
