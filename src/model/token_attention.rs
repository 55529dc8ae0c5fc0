//! Feature-token multi-head attention: a d-vector is read as d tokens of width 1.
//!
//! Each head has q, k, v = Linear(1 → 1); `q`, `k`, `v` below hold all heads side by side
//! (Linear(1 → heads)), which is the same arithmetic. Heads are concatenated and mixed by
//! Linear(heads → 1). The scale is 1/√1 = 1.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

#[derive(Module, Debug)]
pub struct TokenAttention {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub out: Linear,
}

impl TokenAttention {
    pub fn new(heads: usize, device: &Device) -> Self {
        Self {
            q: LinearConfig::new(1, heads).init(device),
            k: LinearConfig::new(1, heads).init(device),
            v: LinearConfig::new(1, heads).init(device),
            out: LinearConfig::new(heads, 1).init(device),
        }
    }

    /// Self-attention over the tokens of `x` [B, d] (no residual; the caller adds it).
    pub fn self_attention(&self, x: Tensor<2>) -> Tensor<2> {
        self.forward(x.clone(), x)
    }

    /// Queries from `query` [B, d], keys and values from `context` [B, d] → [B, d].
    pub fn forward(&self, query: Tensor<2>, context: Tensor<2>) -> Tensor<2> {
        let [b, d] = query.dims();
        let heads = |lin: &Linear, x: Tensor<2>| lin.forward(x.reshape([b, d, 1])).swap_dims(1, 2); // [B, H, d]
        let q = heads(&self.q, query);
        let k = heads(&self.k, context.clone());
        let v = heads(&self.v, context);
        let h = q.dims()[1];
        let scores = q.reshape([b, h, d, 1]).matmul(k.reshape([b, h, 1, d])); // [B, H, d, d]
        let attended = softmax(scores, 3).matmul(v.reshape([b, h, d, 1])); // [B, H, d, 1]
        let mixed = self
            .out
            .forward(attended.reshape([b, h, d]).swap_dims(1, 2)); // [B, d, 1]
        mixed.reshape([b, d])
    }
}
