//! A small MLP for tabular covariates (standardised upstream), so that a city with only
//! covariates (the real ODIAC tiles) runs through the same fusion and neighbourhood.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

#[derive(Module, Debug)]
pub struct TabularEncoder {
    pub fc1: Linear,
    pub fc2: Linear,
}

impl TabularEncoder {
    pub fn new(features: usize, hidden: usize, embedding_dim: usize, device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(features, hidden).init(device),
            fc2: LinearConfig::new(hidden, embedding_dim).init(device),
        }
    }

    /// [N, F] → [N, d].
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.fc2.forward(relu(self.fc1.forward(x)))
    }
}
