//! Neighbourhood CNN: a d×k×k map of embeddings → Conv(d→64) → ReLU → Conv(64→128) → ReLU →
//! global mean → Linear(128 → d).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

#[derive(Module, Debug)]
pub struct NeighbourhoodCnn {
    pub conv1: Conv2d,
    pub conv2: Conv2d,
    pub fc: Linear,
}

impl NeighbourhoodCnn {
    pub fn new(embedding_dim: usize, device: &Device) -> Self {
        let conv = |c_in, c_out| {
            Conv2dConfig::new([c_in, c_out], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        Self {
            conv1: conv(embedding_dim, 64),
            conv2: conv(64, 128),
            fc: LinearConfig::new(128, embedding_dim).init(device),
        }
    }

    /// [B, d, k, k] → [B, d].
    pub fn forward(&self, map: Tensor<4>) -> Tensor<2> {
        let x = relu(self.conv2.forward(relu(self.conv1.forward(map))));
        let [b, c, _, _] = x.dims();
        self.fc.forward(x.mean_dim(3).mean_dim(2).reshape([b, c]))
    }
}
