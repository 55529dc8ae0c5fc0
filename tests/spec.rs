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
