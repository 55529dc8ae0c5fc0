//! Short training runs: the loss falls, the same seed gives the same metrics, and a run writes
//! the run directory of DESIGN.md (its TensorBoard scalars read back by TensorBoard itself).

use crate::common;

use opencarbon::checked::Params;
use opencarbon::data::SplitConfig;
use opencarbon::model::{Modality, ModelConfig};
use opencarbon::runner::{self, RunOutcome};
use opencarbon::spec::RunSpec;
use opencarbon::track::MemorySink;
use opencarbon::train::config::{EarlyStopping, Schedule, StoppingRule};
use opencarbon::train::{self, Hooks, TrainConfig};

fn short_config(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 16,
        lr: 2e-3,
        contrastive_epoch: 1,
        validate_every: 2,
        standardize_target: true,
        early_stopping: EarlyStopping {
            rule: StoppingRule::Off,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Trains on the default device, logging into memory; the report (or the error) and the log.
fn train_logged(
    city: &opencarbon::data::City,
    split: &opencarbon::data::Split,
    model: &ModelConfig,
    config: &TrainConfig,
    seed: u64,
) -> (anyhow::Result<train::TrainReport>, MemorySink) {
    let mut sink = MemorySink::default();
    let model = model.clone().checked().unwrap();
    let config = config.clone().checked().unwrap();
    let report = train::train(
        city,
        split,
        &model,
        &config,
        seed,
        &common::device(),
        Hooks {
            sink: &mut sink,
            progress: None,
            checkpoint: None,
            resume: None,
            prune: None,
        },
    );
    (report, sink)
}

fn run_once(seed: u64, epochs: usize) -> (train::TrainReport, MemorySink) {
    let city = common::tiny_city(11);
    let split = SplitConfig::default().split(&city, seed).unwrap();
    let model = ModelConfig {
        modalities: vec![Modality::Image, Modality::Poi],
        ..Default::default()
    };
    let (report, sink) = train_logged(&city, &split, &model, &short_config(epochs), seed);
    (report.unwrap(), sink)
}

#[test]
fn training_loss_falls() {
    let (report, sink) = run_once(5, 8);
    let first = report.train_loss[0];
    let last = *report.train_loss.last().unwrap();
    assert!(
        last < 0.8 * first,
        "loss did not fall: {:?}",
        report.train_loss
    );
    assert!(sink
        .0
        .iter()
        .any(|(_, split, metric, _)| split == "train" && metric == "infonce"));
    assert!(sink
        .0
        .iter()
        .any(|(_, split, metric, _)| split == "valid" && metric == "r2"));
    assert!(report.test.n > 0 && report.test.r2.is_finite());
}

#[test]
fn same_seed_same_metrics() {
    let (a, _) = run_once(9, 2);
    let (b, _) = run_once(9, 2);
    assert_eq!(a.train_loss, b.train_loss);
    assert_eq!(a.test, b.test);
    let (c, _) = run_once(10, 2);
    assert_ne!(
        a.train_loss, c.train_loss,
        "a different seed should change training"
    );
}

const TINY_SPEC: &str = "
name: tiny
seed: 3
dataset: {kind: synthetic, preset: polycentric, width: 8, height: 8, tile_side: 32, poi_categories: 4, seed: 2}
model:
  modalities: [image, poi, tabular]
train:
  epochs: 4
  batch_size: 16
  contrastive_epoch: 1
  validate_every: 2
  standardize_target: true
";

#[test]
fn run_writes_the_run_directory_and_resumes() {
    let out = tempfile::tempdir().unwrap();
    let spec = RunSpec::parse(TINY_SPEC, "tiny.yaml", &[]).unwrap();
    let options = common::run_options(out.path());
    let (dir, outcome) = runner::run(&spec, &options).unwrap();
    let RunOutcome::Done(metrics) = outcome else {
        panic!("first run should train")
    };
    assert_eq!(dir, out.path().join("runs").join(spec.run_id()));
    for file in [
        "spec.resolved.yaml",
        "meta.json",
        "metrics.csv",
        "test_metrics.json",
        "predictions.csv",
        "checkpoints/best.safetensors",
    ] {
        assert!(dir.join(file).exists(), "{file} missing");
    }
    // The resolved spec re-runs alone and names the same run.
    let resolved = std::fs::read_to_string(dir.join("spec.resolved.yaml")).unwrap();
    assert_eq!(RunSpec::parse(&resolved, "resolved", &[]).unwrap(), spec);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["status"], "done");
    assert_eq!(meta["seed"], 3);
    assert!(
        std::fs::read_dir(dir.join("tb")).unwrap().count() >= 1,
        "no TensorBoard event file"
    );

    // The checkpoint reproduces the reported test metrics.
    let city = opencarbon::data::load_city(&spec.dataset, &Default::default()).unwrap();
    let split = spec.split.split(&city, spec.seed).unwrap();
    let device = common::device();
    let fresh = spec.model_params().init(&city.shapes(), &device).unwrap();
    let model =
        train::trainer::load_checkpoint(fresh, &dir.join("checkpoints/best.safetensors")).unwrap();
    let data = train::Prepared::new(&city, &split, spec.model_params(), &spec.train, &device);
    let (test, _) = train::evaluate(&model, &data, &split.test, 64);
    assert!(
        (test.r2 - metrics.r2).abs() < 1e-6,
        "checkpoint R² {} vs reported {}",
        test.r2,
        metrics.r2
    );

    // Running again skips the finished run.
    let (_, again) = runner::run(&spec, &options).unwrap();
    assert!(matches!(again, RunOutcome::Skipped(m) if m.r2 == metrics.r2));

    check_tensorboard_against_csv(&dir);
}

/// Reads the event file with TensorBoard's own reader (Python `tensorboard` package) and
/// compares every scalar with metrics.csv. `scripts/test.sh` (the README's test command) installs
/// the package and sets OPENCARBON_PYTHON; a bare `cargo test` without it says so and skips
/// (OPENCARBON_REQUIRE_TOOLS=1: fails).
fn check_tensorboard_against_csv(dir: &std::path::Path) {
    let Some(python) = common::python(&["tensorboard"]) else {
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check_tensorboard.py");
    let output = std::process::Command::new(python)
        .arg(script)
        .arg(dir)
        .output()
        .expect("running python");
    assert!(
        output.status.success(),
        "TensorBoard read-back failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `train.schedule: script` counts epochs from 0 as `main_contrastive.py` does: InfoNCE once the
/// 0-based epoch exceeds `contrastive_epoch`, validation when it is a multiple of `validate_every`
/// (1-based epochs 1, 6, …, never forced after the last); ours counts from 1 and validates last.
#[test]
fn the_scripts_schedule_counts_epochs_from_zero() {
    let city = common::tiny_city(11);
    let split = SplitConfig::default().split(&city, 1).unwrap();
    let model = ModelConfig {
        modalities: vec![Modality::Image, Modality::Poi],
        neighbourhood: 0,
        ..Default::default()
    };
    let logged = |schedule: Schedule| {
        let config = TrainConfig {
            epochs: 8,
            contrastive_epoch: 2,
            validate_every: 5,
            schedule,
            ..short_config(8)
        };
        let (report, sink) = train_logged(&city, &split, &model, &config, 1);
        let report = report.unwrap();
        let epochs = |split: &str, metric: &str| -> Vec<usize> {
            sink.0
                .iter()
                .filter(|(_, s, m, _)| s == split && m == metric)
                .map(|(e, ..)| *e)
                .collect()
        };
        (
            epochs("train", "infonce"),
            epochs("valid", "r2"),
            report.best_epoch,
        )
    };
    let (nce, valid, best) = logged(Schedule::Opencarbon);
    assert_eq!(nce, vec![3, 4, 5, 6, 7, 8]);
    assert_eq!(valid, vec![5, 8]);
    assert!([5, 8].contains(&best));
    let (nce, valid, best) = logged(Schedule::Script);
    assert_eq!(nce, vec![4, 5, 6, 7, 8]);
    assert_eq!(valid, vec![1, 6]);
    assert!([1, 6].contains(&best));
}

/// `train.batch_order` replays each epoch's order from a file: replaying the order the run would
/// draw itself (ChaCha8 from the seed, as the trainer shuffles) gives the same run bit for bit,
/// another order another run, and a file that is not a permutation of the training split is an
/// error naming the file, line and tile.
#[test]
fn batch_order_replays_a_recorded_order() {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let city = common::tiny_city(11);
    let split = SplitConfig::default().split(&city, 3).unwrap();
    let model = ModelConfig {
        modalities: vec![Modality::Image, Modality::Poi],
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, epochs: &[Vec<usize>]| {
        let path = dir.path().join(name);
        let lines: Vec<String> = epochs
            .iter()
            .map(|o| {
                let pairs: Vec<[i64; 2]> = o
                    .iter()
                    .map(|&i| [city.keys[i].x, city.keys[i].y])
                    .collect();
                serde_json::to_string(&pairs).unwrap()
            })
            .collect();
        std::fs::write(&path, lines.join("\n")).unwrap();
        path
    };
    let run = |batch_order: Option<std::path::PathBuf>| {
        let config = TrainConfig {
            batch_order,
            ..short_config(2)
        };
        train_logged(&city, &split, &model, &config, 3)
            .0
            .map(|r| r.train_loss)
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let mut order = split.train.clone();
    let drawn: Vec<Vec<usize>> = (0..2)
        .map(|_| {
            order.shuffle(&mut rng);
            order.clone()
        })
        .collect();
    let own = run(None).unwrap();
    assert_eq!(run(Some(write("drawn.jsonl", &drawn))).unwrap(), own);
    let reversed: Vec<Vec<usize>> = drawn
        .iter()
        .map(|o| o.iter().rev().copied().collect())
        .collect();
    assert_ne!(run(Some(write("reversed.jsonl", &reversed))).unwrap(), own);

    let mut short = drawn.clone();
    short[1].pop();
    let e = format!("{:#}", run(Some(write("short.jsonl", &short))).unwrap_err());
    assert!(
        e.contains("short.jsonl line 2") && e.contains("not a permutation"),
        "{e}"
    );
    let e = format!(
        "{:#}",
        run(Some(write("one.jsonl", &drawn[..1]))).unwrap_err()
    );
    assert!(e.contains("one.jsonl holds 1 epochs"), "{e}");
    std::fs::write(dir.path().join("stray.jsonl"), "[[999, 999]]\n").unwrap();
    let e = format!(
        "{:#}",
        run(Some(dir.path().join("stray.jsonl"))).unwrap_err()
    );
    assert!(
        e.contains("line 1") && e.contains("(999, 999) is not a tile"),
        "{e}"
    );
}

/// With `clip_covariates`, a tile whose covariates lie far outside the training range (another
/// city, zero-shot) is predicted exactly as the same tile at the range's edge; without it the
/// network extrapolates.
#[test]
fn clipped_covariates_bound_predictions_outside_the_training_range() {
    let city = common::tiny_city(5);
    let split = SplitConfig::default().split(&city, 1).unwrap();
    // One modality: no contrastive term.
    let config = TrainConfig {
        alpha: 0.0,
        ..short_config(2)
    };
    let predict_shifted = |clip: bool| {
        let model = ModelConfig {
            modalities: vec![Modality::Tabular],
            neighbourhood: 0,
            clip_covariates: clip,
            ..Default::default()
        }
        .checked()
        .unwrap();
        let data = train::Prepared::new(&city, &split, &model, &config, &common::device());
        let mut sink = MemorySink::default();
        let hooks = Hooks {
            sink: &mut sink,
            progress: None,
            checkpoint: None,
            resume: None,
            prune: None,
        };
        let (_, trained) =
            train::fit(&data, &split, &config.clone().checked().unwrap(), 1, hooks).unwrap();
        let tabular = city.tabular.as_ref().unwrap();
        let f = tabular.columns.len();
        // Every covariate of every tile 50 units above the largest training value; and at it.
        let max: Vec<f32> = (0..f)
            .map(|c| {
                split
                    .train
                    .iter()
                    .map(|&i| tabular.values[i * f + c])
                    .fold(f32::NEG_INFINITY, f32::max)
            })
            .collect();
        let moved = |shift: f32| {
            let mut other = city.clone();
            let t = other.tabular.as_mut().unwrap();
            for (j, v) in t.values.iter_mut().enumerate() {
                *v = max[j % f] + shift;
            }
            let prepared = train::Prepared::with_scaling(
                &other,
                data.standardizer.clone(),
                data.target_shift,
                data.target_scale,
                &model,
                &common::device(),
            );
            train::predict(&trained, &prepared, &other.samples(), 64)
        };
        (moved(50.0), moved(0.0))
    };
    let (far, edge) = predict_shifted(true);
    for (a, b) in far.iter().zip(&edge) {
        assert!(
            (a - b).abs() < 1e-6,
            "clipped: {a} at +50 against {b} at the edge"
        );
    }
    let (far, edge) = predict_shifted(false);
    let moved = far
        .iter()
        .zip(&edge)
        .filter(|(a, b)| (*a - *b).abs() > 1e-3)
        .count();
    assert!(
        moved > 0,
        "unclipped predictions should change 50 units past the range"
    );
}
