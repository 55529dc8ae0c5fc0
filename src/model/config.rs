//! The model configuration: every switch an ablation needs, with the authors' values as defaults.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// An input modality of a tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    /// Satellite image, 3×H×W u8, through the ResNet-18 image encoder.
    Image,
    /// POI distribution raster, C×H×W, through the SE-CNN POI encoder.
    Poi,
    /// Tabular covariates (e.g. population, GDP), through a small MLP.
    Tabular,
}

impl Modality {
    pub const ALL: [Modality; 3] = [Modality::Image, Modality::Poi, Modality::Tabular];
    pub fn name(self) -> &'static str {
        match self {
            Modality::Image => "image",
            Modality::Poi => "poi",
            Modality::Tabular => "tabular",
        }
    }
}

/// What a neighbour outside the city (or not a tile) contributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingNeighbour {
    /// A zero embedding (default).
    Mask,
    /// The authors' script: the missing neighbour points at tile index 0, a real tile.
    Tile0,
}

/// How the encoders see the tiles of a batch; it changes BatchNorm's batch statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncoderBatching {
    /// Each distinct tile of the batch is encoded once (fast; BatchNorm statistics over those tiles).
    Distinct,
    /// One encoder call per window position, each over the B tiles at that position (BatchNorm
    /// statistics per position); a tile is encoded as often as it appears. Not the script's.
    PerPosition,
    /// The script's path (`Regressor.forward`): the batch's windows flattened sample by sample
    /// (B·w² tiles) and cut into w² consecutive chunks of B, so a chunk holds the whole windows
    /// of about B/w² samples and train-mode BatchNorm normalises within each such chunk.
    Script,
}

/// The order of a window's w² positions, which is also the w×w grid the neighbourhood CNN sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowOrder {
    /// Rows are y offsets, columns x offsets (default).
    Yx,
    /// Rows are x offsets (the script's `neighbor_matrix[idx, x − x₀ + k, y − y₀ + k]`): the
    /// CNN sees the transposed window. Matters only for weights trained by the script.
    Xy,
}

/// How the centre tile's modality vectors are fused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fusion {
    /// Aggregate-attention (the paper).
    Attention,
    /// Concatenation → Linear(M·d → d): the concatenation-fusion baseline (no neighbourhood).
    Concat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelOrder {
    /// The script reads images with OpenCV, so the network sees BGR.
    Bgr,
    Rgb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageNormalization {
    /// Raw 0–255 values (the script).
    None,
    /// x/255, then ImageNet mean/std per channel (in the channel order the network sees).
    Imagenet,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageEncoderConfig {
    pub channel_order: ChannelOrder,
    pub normalize: ImageNormalization,
    /// A torchvision ResNet-18 state dict (`resnet18-5c106cde.pth` layout) to start from.
    pub pretrained: Option<PathBuf>,
}

impl Default for ImageEncoderConfig {
    fn default() -> Self {
        Self {
            channel_order: ChannelOrder::Bgr,
            normalize: ImageNormalization::None,
            pretrained: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Embedding width d of every modality vector.
    pub embedding_dim: usize,
    /// Modalities the network uses; each must be present in the dataset.
    pub modalities: Vec<Modality>,
    /// Neighbourhood radius k: a (2k+1)×(2k+1) window; 0 turns the neighbourhood branch off.
    pub neighbourhood: usize,
    /// Squeeze-and-excitation blocks in the POI encoder.
    pub se: bool,
    pub fusion: Fusion,
    pub missing_neighbour: MissingNeighbour,
    pub encoder_batching: EncoderBatching,
    pub window_order: WindowOrder,
    pub image_encoder: ImageEncoderConfig,
    /// Hidden width of the aggregate-attention scorer.
    pub attention_hidden: usize,
    /// Heads of the feature-token attention.
    pub attention_heads: usize,
    /// Hidden width of the tabular MLP.
    pub tabular_hidden: usize,
    /// Clamp each covariate to its range over the training tiles before standardising, so that
    /// predictions on tiles outside it (zero-shot on another city) do not extrapolate. Left out
    /// of the resolved spec while off, so older runs keep their ids.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub clip_covariates: bool,
    /// Start from these weights instead of a seeded draw: a PyTorch state dict whose keys are
    /// this network's parameter paths (`tools/fidelity/script_state.py` converts the authors'
    /// script's). Every parameter must be in it.
    pub initial_weights: Option<PathBuf>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            embedding_dim: 32,
            modalities: vec![Modality::Image, Modality::Poi],
            neighbourhood: 1,
            se: true,
            fusion: Fusion::Attention,
            missing_neighbour: MissingNeighbour::Mask,
            encoder_batching: EncoderBatching::Distinct,
            window_order: WindowOrder::Yx,
            image_encoder: ImageEncoderConfig::default(),
            attention_hidden: 32,
            attention_heads: 2,
            tabular_hidden: 32,
            clip_covariates: false,
            initial_weights: None,
        }
    }
}

impl ModelConfig {
    /// Window side 2k+1 (1 without neighbourhood).
    pub fn window(&self) -> usize {
        2 * self.neighbourhood + 1
    }

    pub fn uses(&self, modality: Modality) -> bool {
        self.modalities.contains(&modality)
    }
}

impl crate::checked::Params for ModelConfig {
    /// The values that do not depend on the data; `key: problem` messages.
    fn problems(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.embedding_dim == 0 {
            errors.push("model.embedding_dim: must be at least 1".to_string());
        }
        if self.modalities.is_empty() {
            errors.push("model.modalities: name at least one of image, poi, tabular".to_string());
        }
        let mut seen = self.modalities.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != self.modalities.len() {
            errors.push("model.modalities: a modality is listed twice".to_string());
        }
        if self.attention_heads == 0 {
            errors.push("model.attention_heads: must be at least 1".to_string());
        }
        if self.attention_hidden == 0 || self.tabular_hidden == 0 {
            errors.push(
                "model.attention_hidden / model.tabular_hidden: must be at least 1".to_string(),
            );
        }
        if self.fusion == Fusion::Concat && self.neighbourhood > 0 {
            errors.push(
                "model.fusion: concat is the no-neighbourhood baseline; set model.neighbourhood: 0"
                    .to_string(),
            );
        }
        if let Some(path) = &self.image_encoder.pretrained {
            if !self.uses(Modality::Image) {
                errors.push(
                    "model.image_encoder.pretrained: set, but `image` is not in model.modalities"
                        .to_string(),
                );
            } else if !path.is_file() {
                errors.push(format!(
                    "model.image_encoder.pretrained: {} does not exist (bring torchvision's resnet18-5c106cde.pth)",
                    path.display()
                ));
            }
        }
        if let Some(path) = &self.initial_weights {
            if !path.is_file() {
                errors.push(format!(
                    "model.initial_weights: {} does not exist",
                    path.display()
                ));
            }
        }
        if self.neighbourhood > 3 {
            // Not `window()`: 2k + 1 overflows for a k near usize::MAX.
            let side = self.neighbourhood.saturating_mul(2).saturating_add(1);
            errors.push(format!(
                "model.neighbourhood: {} gives a {side}×{side} window; at most 3 (7×7) is supported",
                self.neighbourhood,
            ));
        }
        errors
    }
}

/// Shapes of the inputs the network is built for, read off the dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputShapes {
    /// Image side (square images), if the city has images.
    pub image_size: Option<usize>,
    /// POI raster (channels, side), if the city has rasters.
    pub poi: Option<(usize, usize)>,
    /// Number of tabular covariates, if any.
    pub tabular: Option<usize>,
}
