//! Squeeze-and-excitation: channel gates from the global mean of each channel.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::{Device, Tensor};

#[derive(Module, Debug)]
pub struct SqueezeExcitation {
    pub fc1: Conv2d,
    pub fc2: Conv2d,
}

impl SqueezeExcitation {
    /// SE(c): 1×1 conv c → max(c/16, 8) (bias) → ReLU → 1×1 conv back to c (bias) → sigmoid.
    pub fn new(channels: usize, device: &Device) -> Self {
        let reduced = (channels / 16).max(8);
        Self {
            fc1: Conv2dConfig::new([channels, reduced], [1, 1]).init(device),
            fc2: Conv2dConfig::new([reduced, channels], [1, 1]).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let squeezed = x.clone().mean_dim(3).mean_dim(2); // [B, C, 1, 1]
        let gates = sigmoid(self.fc2.forward(relu(self.fc1.forward(squeezed))));
        x * gates
    }
}
