//! The vendored burn-flex's 2D max pooling (vendor/burn-flex/PATCH.md, `max_pool2d_fast.rs`)
//! against the 3D kernel it replaces for f32, which burn-flex still runs for every other dtype
//! and rank: the same values and the same indices, exactly (pooling does no arithmetic), ties
//! and NaNs included.

use burn::tensor::{Distribution, Tensor, TensorData};
use burn_flex::ops::max_pool2d_fast::max_pool2d;
use burn_flex::ops::pool::{max_pool2d_with_indices_f32, max_pool3d_with_indices_f32};
use burn_flex::FlexTensor;
use proptest::prelude::*;

use crate::common;
use crate::flex_kernels::assert_same_bits_whatever_the_thread_count;

/// Values on a coarse grid (so windows hold ties), some NaN when `nans`.
fn input(shape: [usize; 4], seed: u64, nans: bool) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let r = (state >> 33) % 17;
            if nans && r == 0 {
                f32::NAN
            } else {
                r as f32 / 4.0 - 2.0
            }
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct Pool {
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    ceil_mode: bool,
}

/// Values (as bits, so NaNs compare) and indices of the 2D kernel, with and without indices.
fn fast(x: &[f32], shape: [usize; 4], p: Pool) -> (Vec<u32>, Vec<i64>, Vec<u32>) {
    let x = FlexTensor::from_data(TensorData::new(x.to_vec(), shape.to_vec()));
    let pool = |with_indices| {
        max_pool2d(
            &x,
            p.kernel,
            p.stride,
            p.padding,
            p.dilation,
            p.ceil_mode,
            with_indices,
        )
        .expect("f32 [N, C, H, W] takes the 2D kernel")
    };
    let (y, indices) = pool(true);
    let (alone, none) = pool(false);
    assert!(none.is_none(), "indices written though not asked for");
    (bits(y), ints(indices.expect("indices")), bits(alone))
}

/// The same through burn-flex's 3D kernel on `[N, C, 1, H, W]`.
fn reference(x: &[f32], shape: [usize; 4], p: Pool) -> (Vec<u32>, Vec<i64>, Vec<usize>) {
    let [n, c, h, w] = shape;
    let x = FlexTensor::from_data(TensorData::new(x.to_vec(), vec![n, c, 1, h, w]));
    let (y, indices) = max_pool3d_with_indices_f32(
        x,
        [1, p.kernel[0], p.kernel[1]],
        [1, p.stride[0], p.stride[1]],
        [0, p.padding[0], p.padding[1]],
        [1, p.dilation[0], p.dilation[1]],
        p.ceil_mode,
    );
    let dims = y.layout().shape().to_vec();
    (
        bits(y),
        ints(indices),
        vec![dims[0], dims[1], dims[3], dims[4]],
    )
}

fn bits(t: FlexTensor) -> Vec<u32> {
    let v: Vec<f32> = t.into_data().try_into_vec().expect("f32");
    v.iter().map(|v| v.to_bits()).collect()
}

fn ints(t: FlexTensor) -> Vec<i64> {
    t.into_data().try_into_vec().expect("i64")
}

fn pool_strategy() -> impl Strategy<Value = Pool> {
    (
        (1usize..=4, 1usize..=4),
        (1usize..=3, 1usize..=3),
        (0usize..=2, 0usize..=2),
        (1usize..=2, 1usize..=2),
        any::<bool>(),
    )
        .prop_map(|(k, s, p, d, ceil_mode)| Pool {
            kernel: [k.0, k.1],
            stride: [s.0, s.1],
            // PyTorch's rule: padding at most half the kernel.
            padding: [p.0.min(k.0 / 2), p.1.min(k.1 / 2)],
            dilation: [d.0, d.1],
            ceil_mode,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Batch 1–3, channels 1–4, sides 1–11, every kernel option; values with ties and NaNs.
    #[test]
    fn max_pool2d_matches_the_3d_kernel(
        batch in 1usize..=3,
        channels in 1usize..=4,
        height in 1usize..=11,
        width in 1usize..=11,
        pool in pool_strategy(),
        nans in any::<bool>(),
        seed in 0u64..1_000,
    ) {
        let shape = [batch, channels, height, width];
        let x = input(shape, seed, nans);
        let (values, indices, alone) = fast(&x, shape, pool);
        let (want_values, want_indices, _) = reference(&x, shape, pool);
        prop_assert_eq!(&values, &want_values);
        prop_assert_eq!(&indices, &want_indices);
        prop_assert_eq!(&alone, &want_values);
    }
}

/// The network's stem pool (3×3, stride 2, padding 1 over 16×16 maps at 32 px; 64×64 at 128 px)
/// through the public entry point burn's autodiff calls, the shape as PyTorch gives it, and the
/// same bits at 1, 2 and 3 threads.
#[test]
fn the_stem_pool_matches_and_ignores_the_thread_count() {
    let pool = Pool {
        kernel: [3, 3],
        stride: [2, 2],
        padding: [1, 1],
        dilation: [1, 1],
        ceil_mode: false,
    };
    for (shape, out) in [([4, 64, 16, 16], 8), ([2, 64, 64, 64], 32)] {
        let x = input(shape, 7, false);
        let (want_values, want_indices, dims) = reference(&x, shape, pool);
        assert_eq!(dims, vec![shape[0], shape[1], out, out]);
        let run = || {
            let t = FlexTensor::from_data(TensorData::new(x.clone(), shape.to_vec()));
            let (y, indices) =
                max_pool2d_with_indices_f32(t, [3, 3], [2, 2], [1, 1], [1, 1], false);
            assert_eq!(y.layout().shape().to_vec(), dims);
            (bits(y), ints(indices))
        };
        assert_eq!(run(), (want_values.clone(), want_indices.clone()));
        assert_same_bits_whatever_the_thread_count(run);
    }
}

/// burn's `max_pool2d` on the flex device, with autodiff: the forward is the kernel's, and the
/// gradient goes to each window's maximum (the indices the kernel wrote).
#[test]
fn autodiff_on_flex_pools_with_the_kernel() {
    let device = common::device().autodiff();
    device.seed(3);
    let x = Tensor::<4>::random([2, 3, 9, 7], Distribution::Normal(0.0, 1.0), &device);
    let values: Vec<f32> = x.to_data().try_to_vec().expect("f32");
    let x = x.detach().require_grad();
    // As the image encoder's stem builds it.
    let pool = burn::nn::pool::MaxPool2dConfig::new([3, 3])
        .with_strides([2, 2])
        .with_padding(burn::nn::PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init();
    let y = pool.forward(x.clone());
    let (want, indices, _) = reference(
        &values,
        [2, 3, 9, 7],
        Pool {
            kernel: [3, 3],
            stride: [2, 2],
            padding: [1, 1],
            dilation: [1, 1],
            ceil_mode: false,
        },
    );
    let got: Vec<f32> = y.to_data().try_to_vec().expect("f32");
    assert_eq!(got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want);
    let grads = y.sum().backward();
    let grad: Vec<f32> = x
        .grad(&grads)
        .expect("gradient")
        .to_data()
        .try_to_vec()
        .expect("f32");
    // Each output adds 1 at its window's maximum.
    let mut expected = vec![0f32; grad.len()];
    let out_plane = indices.len() / 6;
    for (o, at) in indices.iter().enumerate() {
        expected[(o / out_plane) * 63 + *at as usize] += 1.0;
    }
    assert_eq!(grad, expected);
}
