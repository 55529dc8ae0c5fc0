//! The `transfer:` section of a run: the cities a model trained on `dataset` is tested on, the
//! few-shot fractions, how fine-tuning runs, and the per-city normalisation switches.

use serde::{Deserialize, Serialize};

pub use crate::data::NamedDataset;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferConfig {
    /// Cities tested after training (every tile zero-shot; the rest after fine-tuning).
    pub targets: Vec<NamedDataset>,
    /// Fractions of a target's samples to fine-tune on, drawn as spatial blocks; 0 = zero-shot.
    #[serde(default = "default_few_shot")]
    pub few_shot: Vec<f64>,
    /// Block side (tiles) of the fine-tuning sets.
    #[serde(default = "default_block")]
    pub block: usize,
    #[serde(default)]
    pub fine_tune: FineTuneConfig,
    #[serde(default)]
    pub normalize: Normalization,
}

/// Fine-tuning on a target's few-shot tiles: a fixed number of epochs from the source model's
/// best checkpoint with a fresh Adam, no model selection (the target has no validation labels).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FineTuneConfig {
    pub epochs: usize,
    /// Learning rate; a tenth of `train.lr` when unset (a full-size step on a few hundred tiles
    /// can undo what the source taught: measured on Beijing ↔ Shanghai, see docs/transfer.md).
    pub lr: Option<f64>,
    /// Batch size; `train.batch_size` when unset.
    pub batch_size: Option<usize>,
    /// What BatchNorm does while fine-tuning.
    pub batch_norm: FineTuneBatchNorm,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FineTuneBatchNorm {
    /// Keep the source's running statistics and normalise with them (γ and β still train): the
    /// few-shot tiles are a few spatial blocks, whose statistics mis-normalise the rest of the city.
    #[default]
    Frozen,
    /// Train-mode BatchNorm, whose running statistics drift to the few-shot tiles.
    Train,
}

impl Default for FineTuneConfig {
    fn default() -> Self {
        Self {
            epochs: 20,
            lr: None,
            batch_size: None,
            batch_norm: FineTuneBatchNorm::Frozen,
        }
    }
}

/// Per-city normalisation; both off (`source`) by default, so a target city is seen through the
/// source city's statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Normalization {
    pub inputs: InputNormalization,
    pub target: TargetLevel,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputNormalization {
    /// Covariates standardised with the source's training statistics, POI as counted.
    #[default]
    Source,
    /// Each city's covariates standardised, and POI channels scaled to mean 1, over its own tiles
    /// (inputs only, no labels; see `data::normalize`).
    PerCity,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetLevel {
    /// Predictions on the source city's ln-emission scale.
    #[default]
    Source,
    /// With a few-shot set, the target's ln-emission mean and std are estimated from its
    /// fine-tuning tiles and replace the source's in the standardised target (needs
    /// `train.standardize_target`). Zero-shot has no target labels, so it keeps the source's.
    FewShot,
}

fn default_few_shot() -> Vec<f64> {
    vec![0.0]
}

fn default_block() -> usize {
    8
}

impl TransferConfig {
    /// Problems with the values, each naming its key.
    pub fn check(&self, standardize_target: bool) -> Vec<String> {
        let mut problems = Vec::new();
        if self.targets.is_empty() {
            problems.push("transfer.targets: name at least one target city".into());
        }
        for (i, t) in self.targets.iter().enumerate() {
            if self.targets[..i].iter().any(|o| o.name == t.name) {
                problems.push(format!("transfer.targets: `{}` is listed twice", t.name));
            }
        }
        if self.few_shot.is_empty() {
            problems.push("transfer.few_shot: give at least one fraction (0 = zero-shot)".into());
        }
        for &f in &self.few_shot {
            if !(0.0..1.0).contains(&f) {
                problems.push(format!("transfer.few_shot: {f} must lie in [0, 1)"));
            }
        }
        if self.block == 0 {
            problems.push("transfer.block: must be at least 1".into());
        }
        if self.few_shot.iter().any(|&f| f > 0.0) && self.fine_tune.epochs == 0 {
            problems.push(
                "transfer.fine_tune.epochs: must be at least 1 with a few-shot fraction above 0"
                    .into(),
            );
        }
        if let Some(lr) = self.fine_tune.lr {
            if !(lr > 0.0 && lr.is_finite()) {
                problems.push(format!("transfer.fine_tune.lr: {lr} must be > 0"));
            }
        }
        if self.fine_tune.batch_size.is_some_and(|b| b < 2) {
            problems.push("transfer.fine_tune.batch_size: must be at least 2 (BatchNorm)".into());
        }
        if self.normalize.target == TargetLevel::FewShot && !standardize_target {
            problems.push(
                "transfer.normalize.target: `few_shot` rescales the standardised target, so it needs train.standardize_target: true".into(),
            );
        }
        problems
    }

    /// The fractions, ascending and without duplicates.
    pub fn fractions(&self) -> Vec<f64> {
        let mut f = self.few_shot.clone();
        f.sort_by(f64::total_cmp);
        f.dedup();
        f
    }
}
