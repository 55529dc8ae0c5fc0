//! Losses: L1 with a sum over the batch, and InfoNCE between two modalities' embeddings.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

use super::config::{ContrastiveConfig, ContrastiveDirection, Similarity};

/// Σ |prediction − target| over the batch (the script's `L1Loss(reduction="sum")`).
pub fn l1_sum(prediction: Tensor<1>, target: Tensor<1>) -> Tensor<1> {
    (prediction - target).abs().sum()
}

/// Mean cross-entropy of `logits` [B, B] against labels 0..B (the diagonal).
fn diagonal_cross_entropy(logits: Tensor<2>) -> Tensor<1> {
    let [b, _] = logits.dims();
    let device = logits.device();
    let labels = Tensor::<1, Int>::arange(0..b as i64, &device).reshape([b, 1]);
    log_softmax(logits, 1).gather(1, labels).mean().neg()
}

/// InfoNCE between `a` and `b` ([B, d] each): S = a bᵀ / τ, labels 0..B−1.
pub fn info_nce(a: Tensor<2>, b: Tensor<2>, config: &ContrastiveConfig) -> Tensor<1> {
    let (a, b) = match config.similarity {
        Similarity::Dot => (a, b),
        Similarity::Cosine => (l2_normalize(a), l2_normalize(b)),
    };
    let logits = a.matmul(b.transpose()) / config.temperature;
    match config.direction {
        ContrastiveDirection::AToB => diagonal_cross_entropy(logits),
        ContrastiveDirection::Symmetric => {
            (diagonal_cross_entropy(logits.clone()) + diagonal_cross_entropy(logits.transpose()))
                / 2.0
        }
    }
}

fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}
