//! The regression head: Linear(in → d) → ReLU → BatchNorm1d(d) → Linear(d → 1).
//! With the neighbourhood, `in` = 2d (concat[X_f, n']); without it, `in` = d (X_g).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};

use super::batch_norm::BatchNorm;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

#[derive(Module, Debug)]
pub struct Regressor {
    pub fc1: Linear,
    pub bn: BatchNorm,
    pub fc2: Linear,
}

impl Regressor {
    pub fn new(input: usize, embedding_dim: usize, device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(input, embedding_dim).init(device),
            bn: BatchNorm::new(embedding_dim, device),
            fc2: LinearConfig::new(embedding_dim, 1).init(device),
        }
    }

    /// [B, in] → [B].
    pub fn forward(&self, x: Tensor<2>) -> Tensor<1> {
        let h = self.bn.forward(relu(self.fc1.forward(x)));
        let [b, _] = h.dims();
        self.fc2.forward(h).reshape([b])
    }
}
