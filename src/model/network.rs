//! The OpenCarbon network assembled from its blocks. Ablations are configurations of this
//! assembly (modalities, window, SE), never copies of it.
//!
//! The network is told which rows of the encoded tiles are each sample's centre and neighbours
//! ([`BatchLayout`]); how those tiles were chosen (distinct tiles, or the script's per-position
//! chunks) is the data layer's business.

use anyhow::{bail, Result};
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};

use super::aggregate_attention::AggregateAttention;
use super::config::{InputShapes, Modality, ModelConfig};
use super::image_encoder::ImageEncoder;
use super::neighbourhood_cnn::NeighbourhoodCnn;
use super::poi_encoder::PoiEncoder;
use super::regressor::Regressor;
use super::tabular_encoder::TabularEncoder;
use super::token_attention::TokenAttention;
use crate::checked::Checked;

/// Inputs of the U tiles a batch encodes, rows in the same order for every modality.
#[derive(Debug, Clone)]
pub struct TileBatch {
    /// [U, 3, H, W], stored RGB values 0–255 as f32.
    pub image: Option<Tensor<4>>,
    /// [U, C, H, W] POI rasters.
    pub poi: Option<Tensor<4>>,
    /// [U, F] standardised covariates.
    pub tabular: Option<Tensor<2>>,
}

/// Where each of the B samples finds its centre and window among the U encoded tiles.
#[derive(Debug, Clone)]
pub struct BatchLayout {
    pub batch_size: usize,
    /// [B] row of each sample's centre tile.
    pub centre: Tensor<1, Int>,
    /// [B·w·w] row of each window position (row-major, rows = y offset), among U + 1 rows: row U
    /// is a zero embedding for masked neighbours. `None` without neighbourhood.
    pub window: Option<Tensor<1, Int>>,
    /// The encoders run on this many equal chunks of the U tiles (1, or w² for the script's
    /// per-position batching, which gives BatchNorm per-position statistics).
    pub encode_chunks: usize,
}

/// What a forward pass returns: predictions and the centre tiles' modality embeddings (for the
/// contrastive loss), before fusion.
#[derive(Debug, Clone)]
pub struct Output {
    /// [B] predicted ln(emission) (or its standardised value, see `train.standardize_target`).
    pub prediction: Tensor<1>,
    /// (modality, [B, d]) in the order of `model.modalities`.
    pub centre: Vec<(Modality, Tensor<2>)>,
}

impl Output {
    pub fn embedding(&self, modality: Modality) -> Option<Tensor<2>> {
        self.centre
            .iter()
            .find(|(m, _)| *m == modality)
            .map(|(_, t)| t.clone())
    }
}

#[derive(Module, Debug)]
pub struct NeighbourhoodBranch {
    /// One CNN per modality, in the order of `model.modalities`.
    pub cnn: Vec<NeighbourhoodCnn>,
    pub fusion: AggregateAttention,
    pub self_grid: TokenAttention,
    pub self_neighbourhood: TokenAttention,
    pub cross: TokenAttention,
}

#[derive(Module, Debug)]
pub struct OpenCarbon {
    pub image: Option<ImageEncoder>,
    pub poi: Option<PoiEncoder>,
    pub tabular: Option<TabularEncoder>,
    pub grid_fusion: AggregateAttention,
    /// Set for `fusion: concat` (then `grid_fusion` is unused).
    pub concat_fusion: Option<burn::nn::Linear>,
    pub neighbourhood: Option<NeighbourhoodBranch>,
    pub head: Regressor,
    #[module(skip)]
    pub modalities: Vec<Modality>,
    /// Window side (1 without neighbourhood).
    #[module(skip)]
    pub window: usize,
}

/// burn seeds a backend-wide generator, so seeding and initialising must not interleave with
/// another thread doing the same (parallel tests, several runs in one process).
static SEEDED_INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Materialize;

impl burn::module::ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        let _ = param.val();
    }
}

impl Checked<ModelConfig> {
    /// Builds the network with weights drawn from `seed`: the same seed gives the same weights.
    pub fn init_seeded(
        &self,
        shapes: &InputShapes,
        device: &Device,
        seed: u64,
    ) -> Result<OpenCarbon> {
        let _guard = SEEDED_INIT
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        device.seed(seed);
        let mut model = self.init(shapes, device)?;
        if let (Some(path), Some(image)) = (&self.image_encoder.pretrained, model.image.as_mut()) {
            image.load_torchvision(path)?;
        }
        // burn initialises parameters lazily, on first use; draw them all now, under the lock.
        model.visit(&mut Materialize);
        if let Some(path) = &self.initial_weights {
            load_initial_weights(&mut model, path)?;
        }
        Ok(model)
    }

    /// Builds the network for inputs of the given shapes; fails when the dataset lacks a
    /// modality the configuration names (its own values were checked when it was made).
    pub fn init(&self, shapes: &InputShapes, device: &Device) -> Result<OpenCarbon> {
        let d = self.embedding_dim;
        let (mut image, mut poi, mut tabular) = (None, None, None);
        for &modality in &self.modalities {
            match modality {
                Modality::Image => {
                    if shapes.image_size.is_none() {
                        bail!("model.modalities names `image` but the dataset has no images");
                    }
                    image = Some(ImageEncoder::new(d, self.image_encoder.clone(), device));
                }
                Modality::Poi => {
                    if let Some((_, side)) = shapes.poi {
                        let min = super::poi_encoder::min_side();
                        if side < min {
                            bail!("the dataset's POI rasters are {side}×{side}; the SE-CNN POI encoder needs at least {min}×{min}");
                        }
                    }
                    let Some((channels, side)) = shapes.poi else {
                        bail!("model.modalities names `poi` but the dataset has no POI rasters");
                    };
                    poi = Some(PoiEncoder::new(channels, side, d, self.se, device));
                }
                Modality::Tabular => {
                    let Some(features) = shapes.tabular else {
                        bail!("model.modalities names `tabular` but the dataset has no tabular covariates");
                    };
                    tabular = Some(TabularEncoder::new(
                        features,
                        self.tabular_hidden,
                        d,
                        device,
                    ));
                }
            }
        }
        let neighbourhood = (self.neighbourhood > 0).then(|| NeighbourhoodBranch {
            cnn: self
                .modalities
                .iter()
                .map(|_| NeighbourhoodCnn::new(d, device))
                .collect(),
            fusion: AggregateAttention::new(d, self.attention_hidden, device),
            self_grid: TokenAttention::new(self.attention_heads, device),
            self_neighbourhood: TokenAttention::new(self.attention_heads, device),
            cross: TokenAttention::new(self.attention_heads, device),
        });
        let head_input = if neighbourhood.is_some() { 2 * d } else { d };
        Ok(OpenCarbon {
            image,
            poi,
            tabular,
            grid_fusion: AggregateAttention::new(d, self.attention_hidden, device),
            concat_fusion: (self.fusion == super::config::Fusion::Concat)
                .then(|| burn::nn::LinearConfig::new(self.modalities.len() * d, d).init(device)),
            neighbourhood,
            head: Regressor::new(head_input, d, device),
            modalities: self.modalities.clone(),
            window: self.window(),
        })
    }
}

/// Runs `encode` on `chunks` equal slices of `x` along the first axis and concatenates.
fn chunked<const D: usize>(
    x: Tensor<D>,
    chunks: usize,
    encode: impl Fn(Tensor<D>) -> Tensor<2>,
) -> Tensor<2> {
    if chunks <= 1 {
        return encode(x);
    }
    Tensor::cat(x.chunk(chunks, 0).into_iter().map(encode).collect(), 0)
}

impl OpenCarbon {
    /// Embeds every tile of the batch with each modality's encoder: (modality, [U, d]).
    pub fn encode(&self, tiles: TileBatch, chunks: usize) -> Vec<(Modality, Tensor<2>)> {
        self.modalities
            .iter()
            .map(|&m| {
                let e = match m {
                    Modality::Image => {
                        let (enc, x) = (
                            self.image.as_ref().expect("image encoder"),
                            tiles.image.clone(),
                        );
                        chunked(x.expect("image tensor for an image model"), chunks, |t| {
                            enc.forward(t)
                        })
                    }
                    Modality::Poi => {
                        let (enc, x) = (self.poi.as_ref().expect("poi encoder"), tiles.poi.clone());
                        chunked(x.expect("POI tensor for a POI model"), chunks, |t| {
                            enc.forward(t)
                        })
                    }
                    Modality::Tabular => {
                        let (enc, x) = (
                            self.tabular.as_ref().expect("tabular encoder"),
                            tiles.tabular.clone(),
                        );
                        chunked(
                            x.expect("tabular tensor for a tabular model"),
                            chunks,
                            |t| enc.forward(t),
                        )
                    }
                };
                (m, e)
            })
            .collect()
    }

    pub fn forward(&self, tiles: TileBatch, layout: &BatchLayout) -> Output {
        let embeddings = self.encode(tiles, layout.encode_chunks);
        self.fuse(embeddings, layout)
    }

    /// Everything after the encoders: gathers centres and windows from `embeddings` (rows as in
    /// `layout`), fuses, aggregates the neighbourhood and regresses. Whole-city inference encodes
    /// every tile once and calls this per batch of samples.
    pub fn fuse(&self, embeddings: Vec<(Modality, Tensor<2>)>, layout: &BatchLayout) -> Output {
        let centre: Vec<(Modality, Tensor<2>)> = embeddings
            .iter()
            .map(|(m, e)| (*m, e.clone().select(0, layout.centre.clone())))
            .collect();
        let x_g = match &self.concat_fusion {
            Some(linear) => linear.forward(Tensor::cat(
                centre.iter().map(|(_, t)| t.clone()).collect(),
                1,
            )),
            None => {
                self.grid_fusion
                    .forward(Tensor::stack(
                        centre.iter().map(|(_, t)| t.clone()).collect(),
                        1,
                    ))
                    .0
            }
        };

        let prediction = match (&self.neighbourhood, &layout.window) {
            (Some(branch), Some(window)) => {
                let (b, w) = (layout.batch_size, self.window);
                let maps = embeddings
                    .into_iter()
                    .zip(&branch.cnn)
                    .map(|((_, e), cnn)| {
                        let [_, d] = e.dims();
                        let zero = Tensor::zeros([1, d], &e.device());
                        let rows = Tensor::cat(vec![e, zero], 0).select(0, window.clone()); // [B·w², d]
                        cnn.forward(
                            rows.reshape([b, w * w, d])
                                .swap_dims(1, 2)
                                .reshape([b, d, w, w]),
                        )
                    })
                    .collect();
                let (x_n, _) = branch.fusion.forward(Tensor::stack(maps, 1));
                let g = branch.self_grid.self_attention(x_g.clone()) + x_g;
                let n = branch.self_neighbourhood.self_attention(x_n.clone()) + x_n;
                let fused = branch.cross.forward(n.clone(), g);
                self.head.forward(Tensor::cat(vec![fused, n], 1))
            }
            (None, _) => self.head.forward(x_g),
            (Some(_), None) => panic!("a neighbourhood model needs BatchLayout::window"),
        };
        Output { prediction, centre }
    }
}

/// Loads every parameter (and BatchNorm running statistic) of `model` from a PyTorch state dict
/// keyed by this network's parameter paths; fails, naming the file, on a missing, surplus or
/// misshapen tensor.
fn load_initial_weights(model: &mut OpenCarbon, path: &std::path::Path) -> Result<()> {
    use burn::store::{ModuleSnapshot, PytorchStore};
    let mut store = PytorchStore::from_file(path).allow_partial(true);
    let result = model.load_from(&mut store).map_err(|e| {
        anyhow::anyhow!(
            "model.initial_weights: {} is not a loadable state dict of this network: {e}",
            path.display()
        )
    })?;
    let list = |v: Vec<String>| v.iter().take(4).cloned().collect::<Vec<_>>().join(", ");
    let missing: Vec<String> = result.missing.iter().map(|(p, _)| p.clone()).collect();
    if !missing.is_empty() {
        bail!(
            "model.initial_weights: {} lacks {} of this network's tensors (e.g. {})",
            path.display(),
            missing.len(),
            list(missing)
        );
    }
    if !result.unused.is_empty() {
        bail!(
            "model.initial_weights: {} has {} tensors this network does not have (e.g. {})",
            path.display(),
            result.unused.len(),
            list(result.unused.clone())
        );
    }
    if !result.errors.is_empty() {
        bail!(
            "model.initial_weights: {}: {}",
            path.display(),
            result
                .errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(())
}
