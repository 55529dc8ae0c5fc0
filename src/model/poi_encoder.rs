//! The SE-CNN POI encoder of MODEL.md: three strided convolutions, SE after the first two.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};

use super::batch_norm::BatchNorm;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::se::SqueezeExcitation;

#[derive(Module, Debug)]
pub struct PoiEncoder {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub se1: Option<SqueezeExcitation>,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
    pub se2: Option<SqueezeExcitation>,
    pub conv3: Conv2d,
    pub fc: Linear,
}

/// (kernel, stride, padding) of the three convolutions.
const LAYERS: [(usize, usize, usize); 3] = [(7, 3, 3), (7, 3, 1), (3, 3, 1)];

/// Side of the final 1-channel map for an input side (10 for 256, as in the script).
pub fn flattened_side(side: usize) -> usize {
    LAYERS
        .iter()
        .fold(side, |n, &(k, s, p)| (n + 2 * p).saturating_sub(k) / s + 1)
}

/// The smallest raster side the three convolutions accept (each needs side + 2·padding ≥ kernel).
pub fn min_side() -> usize {
    (1..)
        .find(|&side| {
            LAYERS
                .iter()
                .try_fold(side, |n, &(k, s, p)| {
                    (n + 2 * p >= k).then(|| (n + 2 * p - k) / s + 1)
                })
                .is_some()
        })
        .expect("some side fits")
}

impl PoiEncoder {
    pub fn new(
        channels: usize,
        side: usize,
        embedding_dim: usize,
        se: bool,
        device: &Device,
    ) -> Self {
        let conv = |c_in, c_out, (k, s, p): (usize, usize, usize)| {
            Conv2dConfig::new([c_in, c_out], [k, k])
                .with_stride([s, s])
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .with_bias(false)
                .init(device)
        };
        let flat = flattened_side(side).pow(2);
        Self {
            conv1: conv(channels, 32, LAYERS[0]),
            bn1: BatchNorm::new(32, device),
            se1: se.then(|| SqueezeExcitation::new(32, device)),
            conv2: conv(32, 32, LAYERS[1]),
            bn2: BatchNorm::new(32, device),
            se2: se.then(|| SqueezeExcitation::new(32, device)),
            conv3: conv(32, 1, LAYERS[2]),
            fc: LinearConfig::new(flat, embedding_dim).init(device),
        }
    }

    /// [N, C, H, W] rasters → [N, d] embeddings.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = relu(self.bn1.forward(self.conv1.forward(x)));
        if let Some(se) = &self.se1 {
            x = se.forward(x);
        }
        x = relu(self.bn2.forward(self.conv2.forward(x)));
        if let Some(se) = &self.se2 {
            x = se.forward(x);
        }
        let x = self.conv3.forward(x);
        let [n, _, h, w] = x.dims();
        self.fc.forward(x.reshape([n, h * w]))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn flattened_side_matches_the_script() {
        assert_eq!(super::flattened_side(256), 10);
        assert_eq!(super::flattened_side(64), 2);
    }

    #[test]
    fn the_smallest_raster_passes_every_convolution() {
        // 13: 13 → 3 (7×7, stride 3, pad 3) → 1 (7×7, stride 3, pad 1: 3 + 2 ≥ 7 fails at 12).
        assert_eq!(super::min_side(), 13);
        assert_eq!(super::flattened_side(13), 1);
    }
}
