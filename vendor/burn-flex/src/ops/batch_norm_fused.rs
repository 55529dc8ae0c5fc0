//! OpenCarbon-rs patch: BatchNorm as fused per-channel kernels.
//!
//! burn-backend composes `batch_norm_train` and its backward from about ten whole-tensor
//! operations each way (swap_dims, reshapes, mean_dim, sub, mul, sum_dim, …), every one a pass
//! over the activations on one thread. Here each is two passes, as in PyTorch's CPU kernels:
//!
//! - train forward: per channel, the mean and then the biased variance (two passes, summed in
//!   f64); then `y = (x − mean) · α + β` with `α = γ / √(var + ε)`;
//! - inference forward: that last pass with the given statistics;
//! - backward: per channel `Σ dy` and `Σ (x − mean) · dy` (f64), then
//!   `dx = (dy − Σdy / n − (x − mean) · k) · γ / √(var + ε)` with
//!   `k = Σ (x − mean) · dy / ((var + ε) · n)`, `dγ = Σ (x − mean) · dy / √(var + ε)`,
//!   `dβ = Σ dy` (PyTorch's `batch_norm_backward_cpu`).
//!
//! Statistics run in parallel over channels, each summed in a fixed order; the element-wise
//! passes in parallel over planes, written into fresh memory without a zero-fill first. So the
//! bits do not depend on the number of threads.
//! Supported: f32 and f64, input `[batch, channels, ...]` (rank ≥ 2), per-channel tensors of
//! `channels` elements. Anything else returns `None` and burn-backend's composition runs, as it
//! does everywhere with `OPENCARBON_FLEX_BATCH_NORM=burn`.

use alloc::vec::Vec;
use burn_backend::DType;
use burn_std::{Bytes, Shape};

use super::conv2d_gemm::GradElement;
use crate::{FlexTensor, Layout};

/// Below this many elements the passes stay on the calling thread.
#[cfg(feature = "rayon")]
const PARALLEL_ELEMENTS: usize = 1 << 14;

/// Whether the fused kernels run: `OPENCARBON_FLEX_BATCH_NORM=burn` (read once) selects
/// burn-backend's compositions, so that one build benchmarks both routes.
pub fn enabled() -> bool {
    #[cfg(feature = "std")]
    {
        static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *ENABLED.get_or_init(|| {
            std::env::var("OPENCARBON_FLEX_BATCH_NORM").map_or(true, |route| route.trim() != "burn")
        })
    }
    #[cfg(not(feature = "std"))]
    {
        true
    }
}

fn wide<T: GradElement>(v: T) -> f64 {
    num_traits::ToPrimitive::to_f64(&v).unwrap_or(f64::NAN)
}

fn narrow<T: GradElement>(v: f64) -> T {
    <T as num_traits::NumCast>::from(v).unwrap_or_else(T::nan)
}

/// `[batch, channels, spatial…]` as three numbers.
#[derive(Clone, Copy)]
struct Dims {
    batch: usize,
    channels: usize,
    spatial: usize,
}

impl Dims {
    fn of(x: &FlexTensor, per_channel: &[&FlexTensor]) -> Option<(Self, DType)> {
        let shape = x.layout().shape();
        let dtype = x.dtype();
        if shape.len() < 2 || !matches!(dtype, DType::F32 | DType::F64) {
            return None;
        }
        let channels = shape[1];
        let dims = Self {
            batch: shape[0],
            channels,
            spatial: shape[2..].iter().product(),
        };
        if dims.batch == 0 || channels == 0 || dims.spatial == 0 {
            return None;
        }
        for t in per_channel {
            if t.dtype() != dtype || t.layout().num_elements() != channels {
                return None;
            }
        }
        Some((dims, dtype))
    }

    fn per_sample(&self) -> usize {
        self.channels * self.spatial
    }

    fn count(&self) -> f64 {
        (self.batch * self.spatial) as f64
    }
}

/// Contiguous values of a tensor (copied only when it is not laid out contiguously).
fn values<T: GradElement + burn_backend::Element>(t: &FlexTensor) -> Vec<T> {
    t.to_contiguous().storage::<T>()[..t.layout().num_elements()].to_vec()
}

fn tensor<T: GradElement + burn_backend::Element>(
    data: Vec<T>,
    shape: Shape,
    dtype: DType,
) -> FlexTensor {
    FlexTensor::new(Bytes::from_elems(data), Layout::contiguous(shape), dtype)
}

/// `f(c)` for every channel, in parallel when the tensor is large.
fn per_channel<R: Send>(d: Dims, f: impl Fn(usize) -> R + Sync + Send) -> Vec<R> {
    #[cfg(feature = "rayon")]
    if d.batch * d.per_sample() >= PARALLEL_ELEMENTS {
        use rayon::prelude::*;
        return (0..d.channels).into_par_iter().map(f).collect();
    }
    (0..d.channels).map(f).collect()
}

/// The planes of channel `c` over the batch, in order.
fn planes<T: GradElement>(d: Dims, x: &[T], c: usize) -> impl Iterator<Item = &[T]> {
    (0..d.batch).map(move |b| {
        let start = (b * d.channels + c) * d.spatial;
        &x[start..start + d.spatial]
    })
}

/// `y = (x − mean[c]) · α[c] + β[c]` over every element, `α = γ / √(var + ε)`. (Not
/// `x · α + (β − mean · α)`: for a channel of near-zero variance α is large and that form
/// cancels.)
fn normalise<T: GradElement>(
    d: Dims,
    x: &[T],
    gamma: &[T],
    beta: &[T],
    mean: &[f64],
    var: &[f64],
    epsilon: f64,
) -> Vec<T> {
    let coef: Vec<[T; 3]> = (0..d.channels)
        .map(|c| {
            let alpha = wide(gamma[c]) / (var[c] + epsilon).sqrt();
            [narrow(mean[c]), narrow(alpha), beta[c]]
        })
        .collect();
    // One part per (batch element, channel) plane; no zero-fill of the output first.
    let plane = d.spatial.max(1);
    // SAFETY: each part is one plane, every element of which the loop writes.
    unsafe {
        super::scratch::written(x.len(), plane, |start, out| {
            let [m, a, b] = coef[(start / plane) % d.channels];
            let len = out.len();
            for (o, &v) in out.iter_mut().zip(&x[start..start + len]) {
                o.write((v - m) * a + b);
            }
        })
    }
}

fn train_typed<T: GradElement + burn_backend::Element>(
    d: Dims,
    dtype: DType,
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    epsilon: f64,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let xv = x.to_contiguous();
    let xs = &xv.storage::<T>()[..x.layout().num_elements()];
    let n = d.count();
    let stats: Vec<(f64, f64)> = per_channel(d, |c| {
        let sum: f64 = planes(d, xs, c)
            .flat_map(|p| p.iter())
            .map(|v| wide(*v))
            .sum();
        let mean = sum / n;
        let sq: f64 = planes(d, xs, c)
            .flat_map(|p| p.iter())
            .map(|v| {
                let e = wide(*v) - mean;
                e * e
            })
            .sum();
        (mean, sq / n)
    });
    let mean: Vec<f64> = stats.iter().map(|s| s.0).collect();
    let var: Vec<f64> = stats.iter().map(|s| s.1).collect();
    let y = normalise(
        d,
        xs,
        &values::<T>(gamma),
        &values::<T>(beta),
        &mean,
        &var,
        epsilon,
    );
    let cast = |v: &[f64]| v.iter().map(|&v| narrow(v)).collect::<Vec<T>>();
    (
        tensor(y, x.layout().shape().clone(), dtype),
        tensor(cast(&mean), Shape::new([d.channels]), dtype),
        tensor(cast(&var), Shape::new([d.channels]), dtype),
    )
}

/// `batch_norm_train`: the output, the batch mean and the biased batch variance.
pub fn train(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    epsilon: f64,
) -> Option<(FlexTensor, FlexTensor, FlexTensor)> {
    let (d, dtype) = Dims::of(x, &[gamma, beta])?;
    Some(match dtype {
        DType::F32 => train_typed::<f32>(d, dtype, x, gamma, beta, epsilon),
        DType::F64 => train_typed::<f64>(d, dtype, x, gamma, beta, epsilon),
        _ => return None,
    })
}

fn inference_typed<T: GradElement + burn_backend::Element>(
    d: Dims,
    dtype: DType,
    x: &FlexTensor,
    [gamma, beta, mean, variance]: [&FlexTensor; 4],
    epsilon: f64,
) -> FlexTensor {
    let xv = x.to_contiguous();
    let xs = &xv.storage::<T>()[..x.layout().num_elements()];
    let f64s = |t: &FlexTensor| {
        values::<T>(t)
            .iter()
            .map(|v| wide(*v))
            .collect::<Vec<f64>>()
    };
    let y = normalise(
        d,
        xs,
        &values::<T>(gamma),
        &values::<T>(beta),
        &f64s(mean),
        &f64s(variance),
        epsilon,
    );
    tensor(y, x.layout().shape().clone(), dtype)
}

/// `batch_norm` with given statistics (inference).
pub fn inference(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    mean: &FlexTensor,
    variance: &FlexTensor,
    epsilon: f64,
) -> Option<FlexTensor> {
    let (d, dtype) = Dims::of(x, &[gamma, beta, mean, variance])?;
    let stats = [gamma, beta, mean, variance];
    Some(match dtype {
        DType::F32 => inference_typed::<f32>(d, dtype, x, stats, epsilon),
        DType::F64 => inference_typed::<f64>(d, dtype, x, stats, epsilon),
        _ => return None,
    })
}

fn backward_typed<T: GradElement + burn_backend::Element>(
    d: Dims,
    dtype: DType,
    x: &FlexTensor,
    [gamma, mean, variance]: [&FlexTensor; 3],
    epsilon: f64,
    output_grad: &FlexTensor,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let xv = x.to_contiguous();
    let xs = &xv.storage::<T>()[..x.layout().num_elements()];
    let gv = output_grad.to_contiguous();
    let dys = &gv.storage::<T>()[..output_grad.layout().num_elements()];
    let to64 = |v: &T| wide(*v);
    let mean: Vec<f64> = values::<T>(mean).iter().map(to64).collect();
    let inv_std: Vec<f64> = values::<T>(variance)
        .iter()
        .map(|v| 1.0 / (to64(v) + epsilon).sqrt())
        .collect();
    let gamma: Vec<f64> = values::<T>(gamma).iter().map(to64).collect();
    let n = d.count();
    // Per channel: Σ dy and Σ (x − mean)·dy.
    let sums: Vec<(f64, f64)> = per_channel(d, |c| {
        let (mut sum, mut dot) = (0.0f64, 0.0f64);
        for (px, pg) in planes(d, xs, c).zip(planes(d, dys, c)) {
            for (&xv, &g) in px.iter().zip(pg) {
                let g = to64(&g);
                sum += g;
                dot += (to64(&xv) - mean[c]) * g;
            }
        }
        (sum, dot)
    });
    let cast = |v: f64| narrow(v);
    // dx = (dy − Σdy/n − (x − mean)·k) · γ·inv_std, k = Σ(x − mean)·dy · inv_std² / n.
    let coef: Vec<[T; 4]> = (0..d.channels)
        .map(|c| {
            let (sum, dot) = sums[c];
            let k = dot * inv_std[c] * inv_std[c] / n;
            [
                cast(mean[c]),
                cast(sum / n),
                cast(k),
                cast(gamma[c] * inv_std[c]),
            ]
        })
        .collect();
    // One part per (batch element, channel) plane; no zero-fill of the gradient first.
    let plane = d.spatial.max(1);
    // SAFETY: each part is one plane, every element of which the loop writes.
    let dx = unsafe {
        super::scratch::written(xs.len(), plane, |start, out| {
            let [m, mean_dy, k, a] = coef[(start / plane) % d.channels];
            let range = start..start + out.len();
            for ((o, &g), &v) in out.iter_mut().zip(&dys[range.clone()]).zip(&xs[range]) {
                o.write((g - mean_dy - (v - m) * k) * a);
            }
        })
    };
    let gamma_grad: Vec<T> = (0..d.channels)
        .map(|c| cast(sums[c].1 * inv_std[c]))
        .collect();
    let beta_grad: Vec<T> = sums.iter().map(|s| cast(s.0)).collect();
    (
        tensor(dx, x.layout().shape().clone(), dtype),
        tensor(gamma_grad, Shape::new([d.channels]), dtype),
        tensor(beta_grad, Shape::new([d.channels]), dtype),
    )
}

/// `batch_norm_train_backward`: the gradients of the input, γ and β.
pub fn backward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    mean: &FlexTensor,
    variance: &FlexTensor,
    epsilon: f64,
    output_grad: &FlexTensor,
) -> Option<(FlexTensor, FlexTensor, FlexTensor)> {
    let (d, dtype) = Dims::of(x, &[gamma, mean, variance])?;
    if output_grad.dtype() != dtype || output_grad.layout().shape() != x.layout().shape() {
        return None;
    }
    let stats = [gamma, mean, variance];
    Some(match dtype {
        DType::F32 => backward_typed::<f32>(d, dtype, x, stats, epsilon, output_grad),
        DType::F64 => backward_typed::<f64>(d, dtype, x, stats, epsilon, output_grad),
        _ => return None,
    })
}

// ============================================================================
// burn-backend 0.22.1's compositions (`ModuleOps`'s default methods), verbatim on Flex: the
// fallback for what the kernels above do not cover, and the reference they are tested against.
// ============================================================================

use burn_backend::ops::{BatchNormTrain, BatchNormTrainBackward, FloatTensorOps, ModuleOps};
use burn_backend::tensor::FloatTensor;
use burn_backend::{Scalar, TensorMetadata};

use crate::Flex;

pub fn batch_norm_generic(
    x: FloatTensor<Flex>,
    gamma: FloatTensor<Flex>,
    beta: FloatTensor<Flex>,
    mean: FloatTensor<Flex>,
    variance: FloatTensor<Flex>,
    epsilon: f64,
) -> FloatTensor<Flex> {
    let rank = x.shape().num_dims();
    let channels = x.shape()[1];
    let mut dimensions = alloc::vec![1; rank];
    dimensions[1] = channels;
    let shape = Shape::from(dimensions);
    let gamma = Flex::float_reshape(gamma, shape.clone());
    let beta = Flex::float_reshape(beta, shape.clone());
    let mean = Flex::float_reshape(mean, shape.clone());
    let variance = Flex::float_reshape(variance, shape);
    let std = Flex::float_sqrt(Flex::float_add_scalar(variance, Scalar::Float(epsilon)));
    let normalized = Flex::float_div(Flex::float_sub(x, mean), std);
    Flex::float_add(Flex::float_mul(normalized, gamma), beta)
}

pub fn batch_norm_train_generic(
    x: FloatTensor<Flex>,
    gamma: FloatTensor<Flex>,
    beta: FloatTensor<Flex>,
    epsilon: f64,
) -> BatchNormTrain<Flex> {
    let shape = x.shape();
    let channels = shape[1];
    let samples_per_channel = shape.num_elements() / channels;
    let flattened = Shape::new([channels, samples_per_channel]);
    let mut per_channel = alloc::vec![1; shape.num_dims()];
    per_channel[1] = channels;

    // Use mean directly to avoid overflowing intermediate sums in f16.
    let mean = Flex::float_mean_dim(
        Flex::float_reshape(Flex::float_swap_dims(x.clone(), 0, 1), flattened.clone()),
        1,
    );
    let mean = Flex::float_reshape(mean, Shape::from(per_channel));
    let centered = Flex::float_sub(x.clone(), mean.clone());
    let variance = Flex::float_mean_dim(
        Flex::float_reshape(
            Flex::float_swap_dims(Flex::float_mul(centered.clone(), centered), 0, 1),
            flattened,
        ),
        1,
    );
    let mean = Flex::float_reshape(mean, Shape::new([channels]));
    let variance = Flex::float_reshape(variance, Shape::new([channels]));
    let output = Flex::batch_norm(x, gamma, beta, mean.clone(), variance.clone(), epsilon);

    BatchNormTrain::new(output, mean, variance)
}

pub fn batch_norm_train_backward_generic(
    x: FloatTensor<Flex>,
    gamma: FloatTensor<Flex>,
    mean: FloatTensor<Flex>,
    variance: FloatTensor<Flex>,
    epsilon: f64,
    output_grad: FloatTensor<Flex>,
) -> BatchNormTrainBackward<Flex> {
    let shape = x.shape();
    let rank = shape.num_dims();
    let channels = shape[1];
    let flattened = Shape::new([channels, shape.num_elements() / channels]);
    let mut per_channel = alloc::vec![1; rank];
    per_channel[1] = channels;
    let per_channel = Shape::from(per_channel);

    let inv_std = Flex::float_reshape(
        Flex::float_recip(Flex::float_sqrt(Flex::float_add_scalar(
            variance,
            Scalar::Float(epsilon),
        ))),
        per_channel.clone(),
    );
    let normalized = Flex::float_mul(
        Flex::float_sub(x, Flex::float_reshape(mean, per_channel.clone())),
        inv_std.clone(),
    );

    let output_grad_flat = Flex::float_reshape(
        Flex::float_swap_dims(output_grad.clone(), 0, 1),
        flattened.clone(),
    );
    let normalized_grad_flat = Flex::float_reshape(
        Flex::float_swap_dims(
            Flex::float_mul(output_grad.clone(), normalized.clone()),
            0,
            1,
        ),
        flattened,
    );
    let beta_grad = Flex::float_sum_dim(output_grad_flat.clone(), 1);
    let gamma_grad = Flex::float_sum_dim(normalized_grad_flat.clone(), 1);

    // Compute means independently: parameter-gradient sums can overflow in f16.
    let mean_grad = Flex::float_reshape(
        Flex::float_mean_dim(output_grad_flat, 1),
        per_channel.clone(),
    );
    let mean_normalized_grad = Flex::float_reshape(
        Flex::float_mean_dim(normalized_grad_flat, 1),
        per_channel.clone(),
    );
    let centred_grad = Flex::float_sub(output_grad, mean_grad);
    let projected = Flex::float_mul(normalized, mean_normalized_grad);
    let scale = Flex::float_mul(Flex::float_reshape(gamma, per_channel), inv_std);
    let x_grad = Flex::float_mul(scale, Flex::float_sub(centred_grad, projected));

    BatchNormTrainBackward::new(
        x_grad,
        Flex::float_reshape(gamma_grad, Shape::new([channels])),
        Flex::float_reshape(beta_grad, Shape::new([channels])),
    )
}
