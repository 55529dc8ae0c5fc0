//! Training configuration, with the authors' script as the default.

use serde::{Deserialize, Serialize};

use super::resume::CheckpointEvery;
use crate::model::Modality;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContrastiveDirection {
    /// Cross-entropy over rows of S = X_a X_bᵀ only (the script).
    AToB,
    /// The mean of both directions (CLIP-style).
    Symmetric,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Similarity {
    /// Raw dot products (the script).
    Dot,
    /// Dot products of L2-normalised embeddings.
    Cosine,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContrastiveConfig {
    /// The two modalities contrasted, centre tile, before fusion: rows of S come from the first.
    pub pair: [Modality; 2],
    pub direction: ContrastiveDirection,
    pub similarity: Similarity,
    pub temperature: f64,
}

impl Default for ContrastiveConfig {
    fn default() -> Self {
        Self {
            pair: [Modality::Image, Modality::Poi],
            direction: ContrastiveDirection::AToB,
            similarity: Similarity::Dot,
            temperature: 0.07,
        }
    }
}

/// The learning rate over epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    /// `lr` throughout, as the paper's script.
    Constant,
    /// Cosine decay from `lr` at epoch 1 to `lr`/100 at the last epoch: the last epochs settle
    /// instead of jumping between validations, which short runs (the CI sweep) need.
    Cosine,
}

impl LrSchedule {
    fn is_constant(&self) -> bool {
        *self == LrSchedule::Constant
    }
}

/// How epochs are counted where the contrastive start, validation and early stopping ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Epochs 1…E: InfoNCE from epoch `contrastive_epoch` + 1, validation after every
    /// `validate_every`-th epoch and after the last, stopping once the epoch exceeds `min_epoch`.
    Opencarbon,
    /// The script's 0-based epochs e = 0…E−1: InfoNCE once e > `contrastive_epoch` (one epoch
    /// later than ours), validation when e % `validate_every` == 0 (after epochs 1, 6, 11, …
    /// counted from 1, and not after the last unless it falls on one), stopping once
    /// e > `min_epoch`. Logs and `best_epoch` still count from 1.
    Script,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoppingRule {
    /// The script: a counter of validations without improvement that is never reset; stop
    /// when it exceeds `patience` and the epoch exceeds `min_epoch`, at a validation that did
    /// not improve.
    Script,
    /// Standard patience: stop after `patience` validations in a row without improvement,
    /// once the epoch exceeds `min_epoch`.
    Patience,
    /// Train for all `epochs`.
    Off,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EarlyStopping {
    pub rule: StoppingRule,
    pub patience: usize,
    pub min_epoch: usize,
}

impl Default for EarlyStopping {
    fn default() -> Self {
        Self {
            rule: StoppingRule::Script,
            patience: 30,
            min_epoch: 100,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// Left out of the resolved spec while constant, so older runs keep their ids.
    #[serde(skip_serializing_if = "LrSchedule::is_constant")]
    pub lr_schedule: LrSchedule,
    /// Coupled L2 weight decay, as torch's Adam.
    pub weight_decay: f64,
    pub adam_epsilon: f64,
    /// Weight α of the contrastive term.
    pub alpha: f64,
    /// The contrastive term is added only when `epoch > contrastive_epoch`.
    pub contrastive_epoch: usize,
    pub contrastive: ContrastiveConfig,
    pub validate_every: usize,
    /// Epoch counting for the contrastive start, validation and stopping (ours or the script's).
    pub schedule: Schedule,
    pub early_stopping: EarlyStopping,
    /// Train on (y − mean)/std of the training targets instead of y; metrics stay on the log scale.
    /// Off in the script; it makes short runs (the quickstart) converge.
    pub standardize_target: bool,
    /// Samples per forward pass in evaluation (eval-mode BatchNorm makes this a speed knob only).
    pub eval_batch_size: usize,
    /// Replay each epoch's sample order from this file instead of shuffling (`train::order`).
    pub batch_order: Option<std::path::PathBuf>,
    /// How often the resumable checkpoint is written (`train::resume`). It changes no number,
    /// so it is left out of the resolved spec (and the run id) while it has its default.
    #[serde(skip_serializing_if = "CheckpointEvery::is_default")]
    pub checkpoint_every: CheckpointEvery,
    /// Seed of the network's initial weights and of the batch order, apart from the split's:
    /// unset, the run's `seed`. Searching over it measures how much a "tuned" gain is seed luck
    /// (docs/tuning.md). Left out of the resolved spec while unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_seed: Option<u64>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 3000,
            batch_size: 32,
            lr: 1e-3,
            lr_schedule: LrSchedule::Constant,
            weight_decay: 5e-3,
            adam_epsilon: 1e-8,
            alpha: 1e-3,
            contrastive_epoch: 100,
            contrastive: ContrastiveConfig::default(),
            validate_every: 5,
            schedule: Schedule::Opencarbon,
            early_stopping: EarlyStopping::default(),
            standardize_target: false,
            eval_batch_size: 128,
            batch_order: None,
            checkpoint_every: CheckpointEvery::default(),
            init_seed: None,
        }
    }
}

impl TrainConfig {
    /// The learning rate of epoch `epoch` (1-based) of `epochs`.
    pub fn lr_at(&self, epoch: usize) -> f64 {
        match self.lr_schedule {
            LrSchedule::Constant => self.lr,
            LrSchedule::Cosine => {
                let progress = if self.epochs > 1 {
                    (epoch.saturating_sub(1)) as f64 / (self.epochs - 1) as f64
                } else {
                    0.0
                };
                let floor = self.lr / 100.0;
                floor + (self.lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }

    /// This configuration with epoch `epoch`'s learning rate, for the optimiser steps of that epoch.
    pub fn for_epoch(&self, epoch: usize) -> Self {
        Self {
            lr: self.lr_at(epoch),
            ..self.clone()
        }
    }

    /// Values that depend on the model's: the contrasted pair must be among its modalities.
    pub fn problems_with(&self, modalities: &[Modality]) -> Vec<String> {
        let mut e = Vec::new();
        let [a, b] = self.contrastive.pair;
        if self.alpha > 0.0 && !(modalities.contains(&a) && modalities.contains(&b)) {
            e.push(format!(
                "train.alpha: {} > 0 contrasts {} with {}, but model.modalities is [{}]; set train.alpha: 0 \
                 or choose train.contrastive.pair among the model's modalities",
                self.alpha,
                a.name(),
                b.name(),
                modalities.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")
            ));
        }
        e
    }
}

impl crate::checked::Params for TrainConfig {
    /// The values that depend on neither data nor model; `key: problem` messages.
    fn problems(&self) -> Vec<String> {
        let mut e = Vec::new();
        if self.epochs == 0 {
            e.push("train.epochs: must be at least 1".to_string());
        }
        if self.batch_size < 2 {
            e.push(
                "train.batch_size: must be at least 2 (BatchNorm needs two samples)".to_string(),
            );
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            e.push(format!("train.lr: {} must be a positive number", self.lr));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            e.push(format!(
                "train.weight_decay: {} must be ≥ 0",
                self.weight_decay
            ));
        }
        if !(self.alpha >= 0.0 && self.alpha.is_finite()) {
            e.push(format!("train.alpha: {} must be ≥ 0", self.alpha));
        }
        if !(self.contrastive.temperature > 0.0) {
            e.push("train.contrastive.temperature: must be positive".to_string());
        }
        if self.validate_every == 0 {
            e.push("train.validate_every: must be at least 1".to_string());
        }
        if self.eval_batch_size == 0 {
            e.push("train.eval_batch_size: must be at least 1".to_string());
        }
        e.extend(self.checkpoint_every.problems());
        let [a, b] = self.contrastive.pair;
        if a == b {
            e.push("train.contrastive.pair: name two different modalities".to_string());
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cosine_schedule_runs_from_lr_to_a_hundredth_and_never_rises() {
        let config = TrainConfig {
            epochs: 11,
            lr: 0.01,
            lr_schedule: LrSchedule::Cosine,
            ..TrainConfig::default()
        };
        assert_eq!(config.lr_at(1), 0.01);
        assert!((config.lr_at(6) - (0.0001 + 0.0099 * 0.5)).abs() < 1e-15);
        assert!((config.lr_at(11) - 0.0001).abs() < 1e-15);
        let lrs: Vec<f64> = (1..=11).map(|e| config.lr_at(e)).collect();
        assert!(lrs.windows(2).all(|w| w[1] < w[0]), "{lrs:?}");
        let constant = TrainConfig {
            lr_schedule: LrSchedule::Constant,
            ..config
        };
        assert!((1..=11).all(|e| constant.lr_at(e) == 0.01));
    }
}
