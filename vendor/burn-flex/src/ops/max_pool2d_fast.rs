//! OpenCarbon-rs patch: 2D max pooling on f32 without the per-output range arithmetic.
//!
//! burn-flex pools 2D through its 3D kernel, which works out each output's valid window with six
//! integer divisions and always writes i64 indices: ResNet-18's stem pool (3×3, stride 2, over
//! 16×16 maps at 32 px) took 11 % of whole-city inference on 2 cores. Here the valid window of
//! each output row and column is computed once per call, and indices are written only when asked
//! for (training; inference needs none; without them the column windows of each input row are
//! folded first, then the rows, vectorised). The result is the same, value and index: the first
//! largest value in window order, a NaN winning (the last NaN), as PyTorch and the 3D kernel.
//!
//! Supported: f32 `[batch, channels, height, width]`; anything else returns `None` and the 3D
//! kernel runs.

use alloc::vec::Vec;
use burn_backend::DType;
use burn_std::{Bytes, Shape};

use crate::{FlexTensor, Layout};

/// The pooled tensor, and its indices (the flat position in the input plane) if asked for.
pub type Pooled = (FlexTensor, Option<FlexTensor>);

/// Max pooling of an f32 `[N, C, H, W]` tensor; `None` for any other input.
pub fn max_pool2d(
    x: &FlexTensor,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    ceil_mode: bool,
    with_indices: bool,
) -> Option<Pooled> {
    if x.dtype() != DType::F32 || x.layout().shape().num_dims() != 4 {
        return None;
    }
    let x = x.to_contiguous();
    let shape = x.layout().shape();
    let (batch, channels, in_h, in_w) = (shape[0], shape[1], shape[2], shape[3]);
    let rows = Axis::new(
        in_h,
        kernel[0],
        stride[0],
        padding[0],
        dilation[0],
        ceil_mode,
    );
    let cols = Axis::new(
        in_w,
        kernel[1],
        stride[1],
        padding[1],
        dilation[1],
        ceil_mode,
    );
    let (out_h, out_w) = (rows.windows.len(), cols.windows.len());
    let out_plane = out_h * out_w;
    let in_plane = in_h * in_w;
    let planes = batch * channels;
    let input: &[f32] = x.storage();

    let mut output = alloc::vec![f32::NEG_INFINITY; planes * out_plane];
    let mut indices = if with_indices {
        alloc::vec![-1i64; planes * out_plane]
    } else {
        Vec::new()
    };
    // Branch-free selects: which tap holds the maximum is data-dependent, and a mispredicted
    // branch per update cost more than the compares themselves.
    let pool_plane = |plane: usize, out: &mut [f32], mut idx: Option<&mut [i64]>| {
        let src = &input[plane * in_plane..(plane + 1) * in_plane];
        let mut o = 0;
        for row in &rows.windows {
            for col in &cols.windows {
                let (mut best, mut at) = (f32::NEG_INFINITY, -1i64);
                if row.count > 0 && col.count > 0 {
                    at = (row.first * in_w + col.first) as i64;
                    best = src[at as usize];
                    for a in 0..row.count {
                        let base = (row.first + a * row.step) * in_w + col.first;
                        for b in 0..col.count {
                            let i = base + b * col.step;
                            let v = src[i];
                            let take = takes(best, v);
                            best = if take { v } else { best };
                            at = if take { i as i64 } else { at };
                        }
                    }
                }
                out[o] = best;
                if let Some(idx) = idx.as_deref_mut() {
                    idx[o] = at;
                }
                o += 1;
            }
        }
    };

    // Values only (inference): the window order is row-major and the fold above (a NaN wins,
    // else the first largest) is associative, so each input row's column windows are folded
    // first (`across`, `[H, W_out]`), then each output's rows, a whole output row at a time
    // (vectorised selects). Same bits as `pool_plane`, a third of the compares at 3×3 stride 2.
    let pool_values = |plane: usize, out: &mut [f32], across: &mut Vec<f32>| {
        let src = &input[plane * in_plane..(plane + 1) * in_plane];
        across.clear();
        for r in 0..in_h {
            let src_row = &src[r * in_w..(r + 1) * in_w];
            across.extend(cols.windows.iter().map(|col| {
                if col.count == 0 {
                    return f32::NEG_INFINITY;
                }
                let mut best = src_row[col.first];
                for b in 1..col.count {
                    best = pick(best, src_row[col.first + b * col.step]);
                }
                best
            }));
        }
        for (row, out_row) in rows.windows.iter().zip(out.chunks_exact_mut(out_w)) {
            if row.count == 0 {
                out_row.fill(f32::NEG_INFINITY);
                continue;
            }
            out_row.copy_from_slice(&across[row.first * out_w..(row.first + 1) * out_w]);
            for a in 1..row.count {
                let r = row.first + a * row.step;
                for (o, &v) in out_row.iter_mut().zip(&across[r * out_w..(r + 1) * out_w]) {
                    *o = pick(*o, v);
                }
            }
        }
    };

    if out_plane > 0 {
        #[cfg(feature = "rayon")]
        {
            use rayon::prelude::*;
            if with_indices {
                output
                    .par_chunks_mut(out_plane)
                    .zip(indices.par_chunks_mut(out_plane))
                    .enumerate()
                    .for_each(|(plane, (out, idx))| pool_plane(plane, out, Some(idx)));
            } else {
                output.par_chunks_mut(out_plane).enumerate().for_each_init(
                    || Vec::with_capacity(in_h * out_w),
                    |across, (plane, out)| pool_values(plane, out, across),
                );
            }
        }
        #[cfg(not(feature = "rayon"))]
        {
            if with_indices {
                for (plane, (out, idx)) in output
                    .chunks_mut(out_plane)
                    .zip(indices.chunks_mut(out_plane))
                    .enumerate()
                {
                    pool_plane(plane, out, Some(idx));
                }
            } else {
                let mut across = Vec::with_capacity(in_h * out_w);
                for (plane, out) in output.chunks_mut(out_plane).enumerate() {
                    pool_values(plane, out, &mut across);
                }
            }
        }
    }

    let out_shape = Shape::from(alloc::vec![batch, channels, out_h, out_w]);
    let output = FlexTensor::new(
        Bytes::from_elems(output),
        Layout::contiguous(out_shape.clone()),
        DType::F32,
    );
    let indices = with_indices.then(|| {
        FlexTensor::new(
            Bytes::from_elems(indices),
            Layout::contiguous(out_shape),
            DType::I64,
        )
    });
    Some((output, indices))
}

/// Whether `v`, met after `best` in window order, replaces it: a NaN always (so the last NaN
/// wins), else a strictly larger value (so the first of equal values stays).
#[inline(always)]
fn takes(best: f32, v: f32) -> bool {
    v > best || v.is_nan()
}

/// `best` folded with `v`, as a select.
#[inline(always)]
fn pick(best: f32, v: f32) -> f32 {
    if takes(best, v) { v } else { best }
}

/// The input positions one output's window reads along an axis (padding left out), in window
/// order: `first + i·step` for `i < count`.
#[derive(Clone, Copy)]
struct Window {
    first: usize,
    step: usize,
    count: usize,
}

/// One spatial axis: each output position's window.
struct Axis {
    windows: Vec<Window>,
}

impl Axis {
    fn new(
        input: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        dilation: usize,
        ceil_mode: bool,
    ) -> Self {
        let out =
            super::pool::pool_output_size(input, kernel, padding, stride, dilation, ceil_mode);
        let windows = (0..out)
            .map(|o| {
                // Taps k with 0 ≤ o·stride + k·dilation − padding < input.
                let (start, end) =
                    super::pool::valid_range_maxpool(o, kernel, stride, padding, dilation, input);
                let count = end.saturating_sub(start);
                Window {
                    first: if count > 0 {
                        o * stride + start * dilation - padding
                    } else {
                        0
                    },
                    step: dilation,
                    count,
                }
            })
            .collect();
        Self { windows }
    }
}
