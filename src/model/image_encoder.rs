//! The image encoder: torchvision's ResNet-18 with `fc` replaced by Linear(512 → d).
//!
//! Field names follow torchvision's state-dict keys (`conv1`, `bn1`, `layer1.0.conv1`, …, `fc`) so
//! that an ImageNet checkpoint maps onto this module with a small key remapping.

use std::path::Path;

use anyhow::{bail, Result};
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::store::{ModuleSnapshot, PytorchStore};

use super::batch_norm::BatchNorm;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor};

use super::config::{ChannelOrder, ImageEncoderConfig, ImageNormalization};

/// torchvision's ResNet init: kaiming_normal_(mode="fan_out", nonlinearity="relu").
fn conv(c_in: usize, c_out: usize, k: usize, stride: usize, pad: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: 2f64.sqrt(),
            fan_out_only: true,
        })
        .init(device)
}

#[derive(Module, Debug)]
pub struct Downsample {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

#[derive(Module, Debug)]
pub struct BasicBlock {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
    pub downsample: Option<Downsample>,
}

impl BasicBlock {
    fn new(c_in: usize, c_out: usize, stride: usize, device: &Device) -> Self {
        let downsample = (stride != 1 || c_in != c_out).then(|| Downsample {
            conv: conv(c_in, c_out, 1, stride, 0, device),
            bn: BatchNorm::new(c_out, device),
        });
        Self {
            conv1: conv(c_in, c_out, 3, stride, 1, device),
            bn1: BatchNorm::new(c_out, device),
            conv2: conv(c_out, c_out, 3, 1, 1, device),
            bn2: BatchNorm::new(c_out, device),
            downsample,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some(d) => d.bn.forward(d.conv.forward(x.clone())),
            None => x.clone(),
        };
        let out = relu(self.bn1.forward(self.conv1.forward(x)));
        let out = self.bn2.forward(self.conv2.forward(out));
        relu(out + identity)
    }
}

#[derive(Module, Debug)]
pub struct ImageEncoder {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub maxpool: MaxPool2d,
    pub layer1: Vec<BasicBlock>,
    pub layer2: Vec<BasicBlock>,
    pub layer3: Vec<BasicBlock>,
    pub layer4: Vec<BasicBlock>,
    pub fc: Linear,
    /// Input handling (channel order, normalisation): configuration, not parameters.
    #[module(skip)]
    pub input: ImageEncoderConfig,
}

impl ImageEncoder {
    pub fn new(embedding_dim: usize, input: ImageEncoderConfig, device: &Device) -> Self {
        let layer = |c_in, c_out, stride| {
            vec![
                BasicBlock::new(c_in, c_out, stride, device),
                BasicBlock::new(c_out, c_out, 1, device),
            ]
        };
        Self {
            conv1: conv(3, 64, 7, 2, 3, device),
            bn1: BatchNorm::new(64, device),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1: layer(64, 64, 1),
            layer2: layer(64, 128, 2),
            layer3: layer(128, 256, 2),
            layer4: layer(256, 512, 2),
            fc: LinearConfig::new(512, embedding_dim).init(device),
            input,
        }
    }

    /// Stored RGB values (0–255, as f32) → what the network sees (channel order, normalisation).
    pub fn prepare(&self, rgb: Tensor<4>) -> Tensor<4> {
        let device = rgb.device();
        let x = match self.input.channel_order {
            ChannelOrder::Rgb => rgb,
            ChannelOrder::Bgr => rgb.select(1, Tensor::<1, Int>::from_data([2i64, 1, 0], &device)),
        };
        match self.input.normalize {
            ImageNormalization::None => x,
            ImageNormalization::Imagenet => {
                let (mut mean, mut std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
                if self.input.channel_order == ChannelOrder::Bgr {
                    mean.reverse();
                    std.reverse();
                }
                let mean = Tensor::<1>::from_floats(mean, &device).reshape([1, 3, 1, 1]);
                let std = Tensor::<1>::from_floats(std, &device).reshape([1, 3, 1, 1]);
                (x / 255.0 - mean) / std
            }
        }
    }

    /// The 512-wide pooled features, before `fc` (what torchvision's `fc` would see).
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        let x = relu(self.bn1.forward(self.conv1.forward(x)));
        let mut x = self.maxpool.forward(x);
        for block in self
            .layer1
            .iter()
            .chain(&self.layer2)
            .chain(&self.layer3)
            .chain(&self.layer4)
        {
            x = block.forward(x);
        }
        let [n, c, _, _] = x.dims();
        x.mean_dim(3).mean_dim(2).reshape([n, c])
    }

    /// [N, 3, H, W] stored RGB (0–255) → [N, d].
    pub fn forward(&self, rgb: Tensor<4>) -> Tensor<2> {
        self.fc.forward(self.features(self.prepare(rgb)))
    }

    /// Loads a torchvision ResNet-18 state dict (`resnet18-5c106cde.pth`, or any `.pth` written
    /// from `torchvision.models.resnet18()`) into every layer but `fc`, which stays as initialised
    /// (it maps 512 → d here, 512 → 1000 classes there). Fails, naming the file, when a layer is
    /// missing or has another shape.
    pub fn load_torchvision(&mut self, path: &Path) -> Result<()> {
        if !path.is_file() {
            bail!(
                "model.image_encoder.pretrained: {} is not a file",
                path.display()
            );
        }
        let mut store = PytorchStore::from_file(path)
            // torchvision's downsample is Sequential(conv, bn); here it is a struct.
            .with_key_remapping(r"\.downsample\.0\.", ".downsample.conv.")
            .with_key_remapping(r"\.downsample\.1\.", ".downsample.bn.")
            // The classifier is not ours to load: park its keys where nothing reads them.
            .with_key_remapping(r"^fc\.", "imagenet_classifier.")
            .allow_partial(true);
        let result = self.load_from(&mut store).map_err(|e| {
            anyhow::anyhow!(
                "model.image_encoder.pretrained: {} is not a loadable ResNet-18 state dict: {e}",
                path.display()
            )
        })?;
        let missing: Vec<&str> = result
            .missing
            .iter()
            .map(|(p, _)| p.as_str())
            .filter(|p| !p.starts_with("fc."))
            .collect();
        if !missing.is_empty() {
            bail!(
                "model.image_encoder.pretrained: {} lacks {} ResNet-18 tensors (e.g. {}); is it a torchvision resnet18 state dict?",
                path.display(),
                missing.len(),
                missing.iter().take(3).copied().collect::<Vec<_>>().join(", ")
            );
        }
        Ok(())
    }
}
