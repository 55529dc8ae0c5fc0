//! OpenCarbon-rs patch: 2D convolutions over feature maps not much larger than their kernel,
//! as one gemm per link between an input and an output position, over the whole batch.
//!
//! A ResNet's last stages on small tiles run 3×3 convolutions over 2×2 and 1×1 maps. There the
//! im2col matrix is mostly padding: at 1×1, eight of a 3×3 kernel's nine taps read zeros, and
//! the gemm multiplies them all. Instead, list the links `(tap, i, o)`: output position `o`
//! reads input position `i` through kernel tap `tap` (padding taps have no link). Each link is
//! one gemm over the whole batch, on contiguous operands: the activations copied
//! position-major (`[P, B, C]`, no copy at 1×1) and the linked taps' weights, `[taps, C_in,
//! C_out]` for the forward and `[C_out, taps, C_in]` for the input gradient, the layouts their
//! gemms read without packing (read through strides inside gemm instead, layer4's forward was
//! 1.6× and its weight gradient 3.9× slower):
//!
//! - forward: `Y[b, c_out, o] += Σ_c_in X[b, c_in, i] · W[c_out, c_in, tap]`
//!   (M = batch, N = C_out, K = C_in);
//! - input gradient: `dX[b, c_in, i] += Σ_c_out dY[b, c_out, o] · W[c_out, c_in, tap]`;
//! - weight gradient: `dW[c_out, c_in, tap] += Σ_b dY[b, c_out, o] · X[b, c_in, i]`.
//!
//! A batch element costs `links · C_in · C_out` products, against im2col's
//! `k_h·k_w · H_out·W_out · C_in · C_out` (at 1×1 with a padded 3×3 kernel: 1 link against 9
//! taps; at 2×2: 16 against 36). The links run in a fixed order and each gemm sums in its own
//! fixed order, so the bits do not depend on the number of threads.

use alloc::vec;
use alloc::vec::Vec;

use super::conv2d_gemm::{Conv2dGeometry, GradElement, gemm_strided};

/// Most links taken this way: beyond, the gemms get too many and too small, and im2col's one
/// large gemm per batch chunk is faster.
const MAX_LINKS: usize = 36;

/// Whether this convolution takes the link route: padding removes some of im2col's taps, and
/// few links remain.
pub fn applies(g: &Conv2dGeometry) -> bool {
    let links = link_count(g);
    links <= MAX_LINKS && links < g.kernel_h * g.kernel_w * g.spatial_out()
}

/// Per axis: the number of (output, kernel offset) pairs whose input lies inside the map.
fn axis_links(
    out: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad: usize,
    size: usize,
) -> usize {
    (0..out)
        .flat_map(|o| (0..kernel).map(move |k| (o * stride + k * dilation) as isize - pad as isize))
        .filter(|&i| i >= 0 && i < size as isize)
        .count()
}

fn link_count(g: &Conv2dGeometry) -> usize {
    axis_links(
        g.out_h,
        g.kernel_h,
        g.stride[0],
        g.dilation[0],
        g.pad_begin[0],
        g.in_h,
    )
    .saturating_mul(axis_links(
        g.out_w,
        g.kernel_w,
        g.stride[1],
        g.dilation[1],
        g.pad_begin[1],
        g.in_w,
    ))
}

/// Every link `(tap, i, o)`: output position `o` reads input position `i` through kernel tap
/// `tap` (flat indices), in output-major, then tap order.
fn links(g: &Conv2dGeometry) -> Vec<(usize, usize, usize)> {
    let mut links = Vec::new();
    for oh in 0..g.out_h {
        for ow in 0..g.out_w {
            for kh in 0..g.kernel_h {
                let ih = (oh * g.stride[0] + kh * g.dilation[0]) as isize - g.pad_begin[0] as isize;
                if ih < 0 || ih >= g.in_h as isize {
                    continue;
                }
                for kw in 0..g.kernel_w {
                    let iw =
                        (ow * g.stride[1] + kw * g.dilation[1]) as isize - g.pad_begin[1] as isize;
                    if iw < 0 || iw >= g.in_w as isize {
                        continue;
                    }
                    links.push((
                        kh * g.kernel_w + kw,
                        ih as usize * g.in_w + iw as usize,
                        oh * g.out_w + ow,
                    ));
                }
            }
        }
    }
    links
}

/// `[B, C, P]` → `[P, B, C]`: each position's batch-by-channel matrix contiguous.
fn positions_major<T: GradElement>(
    a: &[T],
    batch: usize,
    channels: usize,
    positions: usize,
) -> Vec<T> {
    if positions == 1 {
        return a.to_vec();
    }
    let mut out = vec![T::zero(); a.len()];
    for b in 0..batch {
        for c in 0..channels {
            let src = &a[(b * channels + c) * positions..(b * channels + c + 1) * positions];
            for (pos, v) in src.iter().enumerate() {
                out[(pos * batch + b) * channels + c] = *v;
            }
        }
    }
    out
}

/// `[P, B, C]` → `[B, C, P]`, the inverse of [`positions_major`].
fn channels_major<T: GradElement>(
    a: Vec<T>,
    batch: usize,
    channels: usize,
    positions: usize,
) -> Vec<T> {
    if positions == 1 {
        return a;
    }
    let mut out = vec![T::zero(); a.len()];
    for b in 0..batch {
        for c in 0..channels {
            let dst = &mut out[(b * channels + c) * positions..(b * channels + c + 1) * positions];
            for (pos, v) in dst.iter_mut().enumerate() {
                *v = a[(pos * batch + b) * channels + c];
            }
        }
    }
    out
}

/// The kernel taps that have links, in order, and for each tap its place in that list.
fn linked_taps(g: &Conv2dGeometry, links: &[(usize, usize, usize)]) -> (Vec<usize>, Vec<usize>) {
    let k2 = g.kernel_h * g.kernel_w;
    let mut linked = vec![false; k2];
    for &(tap, _, _) in links {
        linked[tap] = true;
    }
    let taps: Vec<usize> = (0..k2).filter(|&tap| linked[tap]).collect();
    let mut slot = vec![usize::MAX; k2];
    for (i, &tap) in taps.iter().enumerate() {
        slot[tap] = i;
    }
    (taps, slot)
}

/// The input gradient's weights: the linked taps' `[C_out, taps, C_in]` (tap `slot[tap]` of
/// output channel `co` is row `co·taps + slot`; unit stride along C_in, which its gemm wants),
/// read from `[C_out, C_in, k_h·k_w]` in one sequential pass: each output channel's kernels are
/// read once for all its taps. (Tap-major, `[taps, C_out,
/// C_in]`, re-read the whole weight tensor once per tap: at 32 px tiles layer3's 3×3 weights
/// nine times per call, ~10 % of inference at batch 32.)
fn weights_by_tap<T: GradElement>(g: &Conv2dGeometry, w: &[T], taps: &[usize]) -> Vec<T> {
    let k2 = g.kernel_h * g.kernel_w;
    let c_in = g.channels_in;
    // Validated geometry; checked again since a short `w` would leave elements unwritten.
    assert_eq!(
        w.len(),
        g.channels_out * c_in * k2,
        "conv2d weights for {g:?}"
    );
    // One part per output channel, in parallel; no zero-fill first.
    let part = (taps.len() * c_in).max(1);
    // SAFETY: a part is one output channel's `taps × C_in` block, and the loops write all of it.
    unsafe {
        super::scratch::written(g.channels_out * taps.len() * c_in, part, |start, out| {
            let co = start / part;
            let kernels = &w[co * c_in * k2..(co + 1) * c_in * k2];
            for (ci, kernel) in kernels.chunks_exact(k2).enumerate() {
                for (t, &tap) in taps.iter().enumerate() {
                    out[t * c_in + ci].write(kernel[tap]);
                }
            }
        })
    }
}

/// The kernel taps the forward reads, in order: what [`forward_weights`] lays out.
pub fn forward_taps(g: &Conv2dGeometry) -> Vec<usize> {
    linked_taps(g, &links(g)).0
}

/// The forward's weights: the linked taps' `[taps, C_in, C_out]` (tap `t` of input channel `ci`
/// is row `t·C_in + ci`), from `[C_out, C_in, k_h·k_w]`. As the gemm's left operand (after it
/// transposes the product so that the output is column-major) this has unit stride along
/// C_out, and gemm then multiplies it where it lies at up to 48 batch columns (one thread) or
/// 96 (several) instead of packing it on every call, as it did the `[C_out, tap, C_in]` layout:
/// ~14 % of inference at batch 32, more than the products. Inside
/// [`super::prepared::with_prepared_weights`] it is made once per weight tensor.
pub fn forward_weights<T: GradElement>(g: &Conv2dGeometry, w: &[T], taps: &[usize]) -> Vec<T> {
    let k2 = g.kernel_h * g.kernel_w;
    let (c_in, c_out) = (g.channels_in, g.channels_out);
    // Validated geometry; checked again since a short `w` would leave elements unwritten.
    assert_eq!(w.len(), c_out * c_in * k2, "conv2d weights for {g:?}");
    // One part per (tap, input channel) row, in parallel; consecutive rows read neighbouring
    // elements of the same cache lines.
    // SAFETY: a part is one row of C_out elements, and the loop writes all of it.
    unsafe {
        super::scratch::written(taps.len() * c_in * c_out, c_out.max(1), |start, out| {
            let row = start / c_out.max(1);
            let (tap, ci) = (taps[row / c_in], row % c_in);
            for (co, v) in out.iter_mut().enumerate() {
                v.write(w[(co * c_in + ci) * k2 + tap]);
            }
        })
    }
}

/// The forward output `[N, C_out, H_out, W_out]` (without bias), from the weights of
/// [`forward_weights`] for this geometry's [`forward_taps`].
pub fn forward<T: GradElement>(g: &Conv2dGeometry, x: &[T], wf: &[T]) -> Vec<T> {
    let (hw, p) = (g.in_h * g.in_w, g.spatial_out());
    let (b_n, c_in, c_out) = (g.batch, g.channels_in, g.channels_out);
    let links = links(g);
    let (taps, slot) = linked_taps(g, &links);
    assert_eq!(
        wf.len(),
        taps.len() * c_in * c_out,
        "prepared weights for {g:?}"
    );
    let xt = positions_major(x, b_n, c_in, hw);
    let mut yt = vec![T::zero(); b_n * c_out * p];
    for &(tap, i, o) in &links {
        // YT[o][b, co] += Σ_ci XT[i][b, ci] · WF[tap][ci, co]
        // SAFETY: each operand is a whole [rows, cols] block inside its buffer.
        unsafe {
            gemm_strided(
                b_n,
                c_out,
                c_in,
                yt.as_mut_ptr().add(o * b_n * c_out),
                c_out as isize,
                1,
                true,
                xt.as_ptr().add(i * b_n * c_in),
                c_in as isize,
                1,
                wf.as_ptr().add(slot[tap] * c_in * c_out),
                c_out as isize,
                1,
                true,
            );
        }
    }
    channels_major(yt, b_n, c_out, p)
}

/// The input gradient `[N, C_in, H, W]`.
pub fn input_grad<T: GradElement>(g: &Conv2dGeometry, w: &[T], dy: &[T]) -> Vec<T> {
    let (hw, p) = (g.in_h * g.in_w, g.spatial_out());
    let (b_n, c_in, c_out) = (g.batch, g.channels_in, g.channels_out);
    let links = links(g);
    let (taps, slot) = linked_taps(g, &links);
    let wt = weights_by_tap(g, w, &taps);
    let dyt = positions_major(dy, b_n, c_out, p);
    let mut dxt = vec![T::zero(); b_n * c_in * hw];
    for &(tap, i, o) in &links {
        // dXT[i][b, ci] += Σ_co dYT[o][b, co] · WT[tap][co, ci]
        // SAFETY: as in `forward`.
        unsafe {
            gemm_strided(
                b_n,
                c_in,
                c_out,
                dxt.as_mut_ptr().add(i * b_n * c_in),
                c_in as isize,
                1,
                true,
                dyt.as_ptr().add(o * b_n * c_out),
                c_out as isize,
                1,
                wt.as_ptr().add(slot[tap] * c_in),
                (taps.len() * c_in) as isize,
                1,
                true,
            );
        }
    }
    channels_major(dxt, b_n, c_in, hw)
}

/// The weight gradient `[C_out, C_in, k_h, k_w]`.
pub fn weight_grad<T: GradElement>(g: &Conv2dGeometry, x: &[T], dy: &[T]) -> Vec<T> {
    let (hw, p, k2) = (g.in_h * g.in_w, g.spatial_out(), g.kernel_h * g.kernel_w);
    let (b_n, c_in, c_out) = (g.batch, g.channels_in, g.channels_out);
    let links = links(g);
    let (taps, slot) = linked_taps(g, &links);
    let xt = positions_major(x, b_n, c_in, hw);
    let dyt = positions_major(dy, b_n, c_out, p);
    let plane = c_out * c_in;
    let mut dwt = vec![T::zero(); taps.len() * plane];
    for &(tap, i, o) in &links {
        // dWT[tap][co, ci] += Σ_b dYT[o][b, co] · XT[i][b, ci]
        // SAFETY: as in `forward`.
        unsafe {
            gemm_strided(
                c_out,
                c_in,
                b_n,
                dwt.as_mut_ptr().add(slot[tap] * plane),
                c_in as isize,
                1,
                true,
                dyt.as_ptr().add(o * b_n * c_out),
                1,
                c_out as isize,
                xt.as_ptr().add(i * b_n * c_in),
                c_in as isize,
                1,
                true,
            );
        }
    }
    // Back to [C_out, C_in, k_h·k_w]; taps without links stay zero.
    let mut dw = vec![T::zero(); plane * k2];
    for (j, kernel) in dw.chunks_exact_mut(k2).enumerate() {
        for (t, &tap) in taps.iter().enumerate() {
            kernel[tap] = dwt[t * plane + j];
        }
    }
    dw
}
