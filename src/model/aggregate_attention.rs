//! Aggregate-attention: a softmax-weighted sum of modality vectors, w = W2·tanh(W1 z + b1).

use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

#[derive(Module, Debug)]
pub struct AggregateAttention {
    pub w1: Linear,
    pub w2: Linear,
}

impl AggregateAttention {
    /// Xavier-uniform weights and b1 = 0, as the script initialises them.
    pub fn new(embedding_dim: usize, hidden: usize, device: &Device) -> Self {
        let xavier = Initializer::XavierUniform { gain: 1.0 };
        let mut w1 = LinearConfig::new(embedding_dim, hidden)
            .with_initializer(xavier.clone())
            .init(device);
        w1.bias = Some(Param::from_tensor(Tensor::zeros([hidden], device)));
        let w2 = LinearConfig::new(hidden, 1)
            .with_bias(false)
            .with_initializer(xavier)
            .init(device);
        Self { w1, w2 }
    }

    /// [B, M, d] modality vectors → ([B, d] fused, [B, M] weights β).
    pub fn forward(&self, z: Tensor<3>) -> (Tensor<2>, Tensor<2>) {
        let [b, m, d] = z.dims();
        let scores = self.w2.forward(self.w1.forward(z.clone()).tanh()); // [B, M, 1]
        let beta = softmax(scores, 1);
        let fused = (z * beta.clone()).sum_dim(1).reshape([b, d]);
        (fused, beta.reshape([b, m]))
    }
}
