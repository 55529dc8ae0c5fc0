//! OpenCarbon-rs patch: 2D convolutions and their gradients as im2col/col2im + gemm.
//!
//! burn-backend's default `conv2d_weight_backward` computes the weight gradient as a forward
//! convolution of the batch-transposed input with the batch-transposed output gradient (the
//! batch becomes the reduction channel and the output's spatial extent becomes the kernel), and
//! its default `conv2d_x_backward` runs a transposed convolution. On Flex both go through the
//! forward convolution's machinery (NHWC relayout, per-tile im2col buffers, narrow gemms).
//!
//! Here both gradients are one gemm per chunk of the batch over the standard NCHW im2col matrix
//! `col[(c_in, kh, kw), (b, oh, ow)]`:
//!
//! - weight gradient: `dW[c_out, (c_in, kh, kw)] = Σ_chunks dY_chunk[c_out, (b, oh, ow)] ·
//!   col_chunkᵀ`, i.e. M = C_out, N = C_in·k_h·k_w, K = (batch chunk)·H_out·W_out. The chunks are
//!   fixed by the shapes alone and assigned to a fixed number of lanes, each lane sums its chunks
//!   in order and the lanes are summed in order, so the result does not depend on the number of
//!   threads or on their scheduling: the same inputs give the same bits;
//! - input gradient: `dcol_chunk = Wᵀ · dY_chunk` (M = C_in·k_h·k_w, N = chunk·H_out·W_out,
//!   K = C_out) scattered back with col2im, the chunks (disjoint batch elements) in parallel;
//! - forward: `Y_chunk = W · col_chunk` (M = C_out, N = chunk·H_out·W_out, K = C_in·k_h·k_w),
//!   written straight into the output for a one-element chunk, the chunks in parallel. This
//!   replaces burn-flex's generic path (`conv3d_impl`: a serial NCHW → NHWC copy of the whole
//!   input and a weight relayout on every call, an im2col buffer and a gemm result allocated
//!   per 512-position tile and scattered back with a strided loop); burn-flex's 1×1,
//!   depthwise and small-channel fast paths keep their shapes.
//!
//! Supported: f32 and f64, `groups == 1`, any stride, dilation and (asymmetric) padding. Anything
//! else (grouped or depthwise convolutions, f16/bf16, inconsistent shapes) returns `None` and the
//! caller runs burn-flex's own forward or burn-backend's generic gradient compositions
//! ([`conv2d_weight_backward_generic`], [`conv2d_x_backward_generic`], kept here verbatim in
//! behaviour so that the two can be compared in one build).

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::ops::conv::{calculate_conv_output_size_asymmetric, calculate_padding_out};
use burn_backend::ops::{ConvOptions, ConvTransposeOptions, FloatTensorOps, ModuleOps};
use burn_backend::{DType, TensorMetadata};
use burn_std::{Bytes, Slice};

use super::conv2d_dense;
use super::prepared;
use super::scratch::scratch;
use crate::{Flex, FlexTensor, Layout};

/// [`prepared::prepared`]'s tag for the small-map forward's weights.
const DENSE_FORWARD_WEIGHTS: usize = 0;

/// Target number of columns (K for the weight gradient, N for the input gradient) per batch
/// chunk: big enough that the gemm is not dominated by its setup, small enough that the im2col
/// buffer of a chunk stays in the outer caches.
const CHUNK_COLUMNS: usize = 1024;

/// Upper bound on the elements of one chunk's im2col buffer (16 MiB of f32).
const MAX_COL_ELEMENTS: usize = 4 * 1024 * 1024;

/// Most partial weight gradients summed at the end. Fixed (not the number of threads) so that
/// the summation order, hence the bits, depend only on the shapes.
const MAX_LANES: usize = 8;

/// gemm's own threading pays off from about this much work (the threshold burn-flex uses).
#[cfg(feature = "rayon")]
const GEMM_PARALLEL_WORK: usize = 192 * 192 * 192;

/// Whether the gemm kernels run: `OPENCARBON_CONV_GRAD=burn` in the environment (read once)
/// selects burn-backend's generic compositions instead, as it does for the patched burn-tch, so
/// that one build benchmarks both routes. Without `std` the kernels always run.
pub fn gemm_kernels_enabled() -> bool {
    #[cfg(feature = "std")]
    {
        static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *ENABLED.get_or_init(|| {
            std::env::var("OPENCARBON_CONV_GRAD").map_or(true, |route| route.trim() != "burn")
        })
    }
    #[cfg(not(feature = "std"))]
    {
        true
    }
}

/// The element types the kernels run on (the ones gemm computes natively and exactly).
pub trait GradElement:
    bytemuck::Pod
    + num_traits::Float
    + core::ops::AddAssign
    + Send
    + Sync
    + 'static
    + super::scratch::PoolOf
{
}
impl GradElement for f32 {}
impl GradElement for f64 {}

/// Geometry of one 2D convolution, validated against the tensors' shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dGeometry {
    pub batch: usize,
    pub channels_in: usize,
    pub channels_out: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// Padding before the first row / column (the end padding only shows in `out_h` / `out_w`).
    pub pad_begin: [usize; 2],
}

impl Conv2dGeometry {
    /// The geometry when the fast kernels support it: 4D shapes that agree with each other and
    /// with `options`, `groups == 1`, non-empty tensors. `None` otherwise.
    pub fn new(
        x_shape: &[usize],
        weight_shape: &[usize],
        out_shape: &[usize],
        options: &ConvOptions<2>,
    ) -> Option<Self> {
        if x_shape.len() != 4 || weight_shape.len() != 4 || out_shape.len() != 4 {
            return None;
        }
        if options.groups != 1 {
            return None;
        }
        let [batch, channels_in, in_h, in_w] = [x_shape[0], x_shape[1], x_shape[2], x_shape[3]];
        let [channels_out, w_in, kernel_h, kernel_w] = [
            weight_shape[0],
            weight_shape[1],
            weight_shape[2],
            weight_shape[3],
        ];
        let [o_batch, o_channels, out_h, out_w] =
            [out_shape[0], out_shape[1], out_shape[2], out_shape[3]];
        if w_in != channels_in || o_batch != batch || o_channels != channels_out {
            return None;
        }
        let dims = [
            batch,
            channels_in,
            in_h,
            in_w,
            channels_out,
            kernel_h,
            kernel_w,
            out_h,
            out_w,
        ];
        if dims.contains(&0) || options.stride.contains(&0) || options.dilation.contains(&0) {
            return None;
        }
        // The output extent the forward convolution gives for these options.
        for (axis, (size_in, size_out, kernel)) in
            [(in_h, out_h, kernel_h), (in_w, out_w, kernel_w)]
                .into_iter()
                .enumerate()
        {
            let (begin, end) = options.padding[axis];
            let span = options.dilation[axis]
                .checked_mul(kernel - 1)?
                .checked_add(1)?;
            if size_in.checked_add(begin)?.checked_add(end)? < span {
                return None;
            }
            let expected = calculate_conv_output_size_asymmetric(
                kernel,
                options.stride[axis],
                (begin, end),
                options.dilation[axis],
                size_in,
            );
            if expected != size_out {
                return None;
            }
        }
        // Every buffer size below must be representable.
        let cols = channels_in.checked_mul(kernel_h)?.checked_mul(kernel_w)?;
        let spatial = out_h.checked_mul(out_w)?;
        cols.checked_mul(spatial)?.checked_mul(batch)?;
        channels_out.checked_mul(spatial)?.checked_mul(batch)?;
        channels_in
            .checked_mul(in_h)?
            .checked_mul(in_w)?
            .checked_mul(batch)?;
        channels_out.checked_mul(cols)?.checked_mul(MAX_LANES)?;
        Some(Self {
            batch,
            channels_in,
            channels_out,
            in_h,
            in_w,
            kernel_h,
            kernel_w,
            out_h,
            out_w,
            stride: options.stride,
            dilation: options.dilation,
            pad_begin: options.padding_begin(),
        })
    }

    /// Rows of the im2col matrix: C_in·k_h·k_w.
    pub fn cols(&self) -> usize {
        self.channels_in * self.kernel_h * self.kernel_w
    }

    /// Output positions per batch element: H_out·W_out.
    pub fn spatial_out(&self) -> usize {
        self.out_h * self.out_w
    }

    /// Number of batch chunks, a function of the shapes only: enough that a chunk holds about
    /// `CHUNK_COLUMNS` columns (and its im2col stays under `MAX_COL_ELEMENTS`), then rounded up
    /// to 4 or to a multiple of 8, so that 2, 4 or 8 threads get equal shares (3 chunks of
    /// 64 on 2 threads left one idle a third of the time); at most the batch.
    pub fn batch_chunks(&self) -> usize {
        let spatial = self.spatial_out();
        let by_columns = CHUNK_COLUMNS.div_ceil(spatial);
        let by_memory = (MAX_COL_ELEMENTS / (self.cols() * spatial).max(1)).max(1);
        let chunks = self.batch.div_ceil(by_columns.min(by_memory).max(1));
        let balanced = match chunks {
            0 | 1 => 1,
            2..=4 => 4,
            n => n.div_ceil(MAX_LANES) * MAX_LANES,
        };
        balanced.min(self.batch)
    }

    /// The first batch element of chunk `c` of `chunks`, and its size (sizes differ by at most
    /// one).
    pub fn chunk_bounds(&self, c: usize, chunks: usize) -> (usize, usize) {
        let start = c * self.batch / chunks;
        (start, (c + 1) * self.batch / chunks - start)
    }
}

/// Splits `buffer` (`[batch, plane]`) into the chunks' disjoint parts.
fn split_chunks<'a, T>(
    g: &Conv2dGeometry,
    chunks: usize,
    plane: usize,
    mut buffer: &'a mut [T],
) -> Vec<(usize, usize, &'a mut [T])> {
    let mut parts = Vec::with_capacity(chunks);
    for c in 0..chunks {
        let (b0, nb) = g.chunk_bounds(c, chunks);
        let (head, tail) = core::mem::take(&mut buffer).split_at_mut(nb * plane);
        parts.push((b0, nb, head));
        buffer = tail;
    }
    parts
}

/// The range of output indices `o` in `0..out` whose input index `o·stride + offset` lies in
/// `0..size_in`.
#[inline]
fn valid_range(offset: isize, stride: usize, size_in: usize, out: usize) -> (usize, usize) {
    let stride_i = stride as isize;
    // First o with o·stride + offset ≥ 0.
    let lo = if offset >= 0 {
        0
    } else {
        ((-offset) + stride_i - 1) / stride_i
    };
    // First o with o·stride + offset ≥ size_in.
    let hi_num = size_in as isize - offset;
    let hi = if hi_num <= 0 {
        0
    } else {
        (hi_num + stride_i - 1) / stride_i
    };
    let lo = (lo as usize).min(out);
    let hi = (hi as usize).min(out);
    (lo, hi.max(lo))
}

/// Output planes up to this many positions gather through [`Im2col`]'s index table when they
/// are strided, narrower than the input, or of at most 16 positions.
const GATHER_PLANE: usize = 4096;

/// im2col for one convolution, worked out once per batch chunk. Strided convolutions and those
/// whose output rows are narrower than the input's (ResNet-18's 7×7 stride-2 stem, its stride-2
/// 3×3 convolutions, the POI encoder's stride-3 ones) went through the row loop of
/// [`im2col_rows`]: per output row a strided copy of 4 to 16 values with its bounds and fills,
/// 0.7–1.8 ns per element against 0.2 for the 8×8 "same" convolutions. For those, and for
/// planes of at most 16 positions (4×4 maps: 0.6 ns), a table of each tap's source index per
/// output position (or none, for padding) is made once here, and every channel's row is then
/// one pass over it: 0.4–0.5 ns per element.
struct Im2col<'g> {
    g: &'g Conv2dGeometry,
    /// `[taps, P]` source indices into an input plane; `u32::MAX` where the tap reads padding.
    gather: Option<Vec<u32>>,
}

impl<'g> Im2col<'g> {
    fn new(g: &'g Conv2dGeometry) -> Self {
        let same_width = g.stride == [1, 1] && g.out_w == g.in_w;
        let p = g.spatial_out();
        let small = p <= GATHER_PLANE && g.in_h * g.in_w < u32::MAX as usize;
        let gather = ((!same_width || p <= 16) && small).then(|| {
            let mut table = Vec::with_capacity(g.kernel_h * g.kernel_w * p);
            for kh in 0..g.kernel_h {
                for kw in 0..g.kernel_w {
                    for oh in 0..g.out_h {
                        let ih = (oh * g.stride[0] + kh * g.dilation[0]) as isize
                            - g.pad_begin[0] as isize;
                        for ow in 0..g.out_w {
                            let iw = (ow * g.stride[1] + kw * g.dilation[1]) as isize
                                - g.pad_begin[1] as isize;
                            let inside = (0..g.in_h as isize).contains(&ih)
                                && (0..g.in_w as isize).contains(&iw);
                            table.push(if inside {
                                (ih as usize * g.in_w + iw as usize) as u32
                            } else {
                                u32::MAX
                            });
                        }
                    }
                }
            }
            table
        });
        Self { g, gather }
    }

    /// Fills `col` (`[cols, ld]`, row-major; this batch element's columns start at
    /// `col_offset`) with the patches of `x_b` (`[C_in, H, W]`). Padding positions are zero.
    fn fill<T: GradElement>(&self, x_b: &[T], col: &mut [T], ld: usize, col_offset: usize) {
        let Some(table) = &self.gather else {
            return im2col_rows(self.g, x_b, col, ld, col_offset);
        };
        let g = self.g;
        let (hw, p) = (g.in_h * g.in_w, g.spatial_out());
        let taps = g.kernel_h * g.kernel_w;
        let zero = T::zero();
        for ci in 0..g.channels_in {
            let plane = &x_b[ci * hw..(ci + 1) * hw];
            for (tap, sources) in table.chunks_exact(p).enumerate() {
                let row = ci * taps + tap;
                let dst = &mut col[row * ld + col_offset..row * ld + col_offset + p];
                for (d, &i) in dst.iter_mut().zip(sources) {
                    // u32::MAX lies outside every plane: padding reads zero.
                    *d = plane.get(i as usize).copied().unwrap_or(zero);
                }
            }
        }
    }
}

/// [`Im2col::fill`] by rows (and by taps for stride-1 "same" convolutions).
fn im2col_rows<T: GradElement>(
    g: &Conv2dGeometry,
    x_b: &[T],
    col: &mut [T],
    ld: usize,
    col_offset: usize,
) {
    let (h, w) = (g.in_h, g.in_w);
    let (oh_n, ow_n) = (g.out_h, g.out_w);
    let [sh, sw] = g.stride;
    let [dh, dw] = g.dilation;
    let [ph, pw] = g.pad_begin;
    let zero = T::zero();
    let mut row = 0;
    for ci in 0..g.channels_in {
        let plane = &x_b[ci * h * w..(ci + 1) * h * w];
        for kh in 0..g.kernel_h {
            let off_h = (kh * dh) as isize - ph as isize;
            let (oh_lo, oh_hi) = valid_range(off_h, sh, h, oh_n);
            for kw in 0..g.kernel_w {
                let off_w = (kw * dw) as isize - pw as isize;
                let (ow_lo, ow_hi) = valid_range(off_w, sw, w, ow_n);
                let dst = &mut col[row * ld + col_offset..row * ld + col_offset + oh_n * ow_n];
                if sh == 1 && sw == 1 && ow_n == w {
                    // Rows as wide as the input's, both strides 1: one copy per tap.
                    shifted_copy(plane, dst, w, (oh_lo, oh_hi), (ow_lo, ow_hi), off_h, off_w);
                    row += 1;
                    continue;
                }
                for oh in 0..oh_n {
                    let dst_row = &mut dst[oh * ow_n..(oh + 1) * ow_n];
                    if oh < oh_lo || oh >= oh_hi || ow_lo >= ow_hi {
                        dst_row.fill(zero);
                        continue;
                    }
                    let ih = (oh * sh) as isize + off_h;
                    let src_row = &plane[ih as usize * w..(ih as usize + 1) * w];
                    // Tiny rows (8 wide at 32 px tiles): no library call for an empty fill.
                    if ow_lo > 0 {
                        dst_row[..ow_lo].fill(zero);
                    }
                    if ow_hi < ow_n {
                        dst_row[ow_hi..].fill(zero);
                    }
                    let iw0 = (ow_lo * sw) as isize + off_w;
                    let iw0 = iw0 as usize;
                    if sw == 1 {
                        dst_row[ow_lo..ow_hi].copy_from_slice(&src_row[iw0..iw0 + (ow_hi - ow_lo)]);
                    } else {
                        for (i, d) in dst_row[ow_lo..ow_hi].iter_mut().enumerate() {
                            *d = src_row[iw0 + i * sw];
                        }
                    }
                }
                row += 1;
            }
        }
    }
}

/// One im2col row (a kernel tap) for stride 1 when output rows are as wide as input rows (a
/// "same" convolution): `dst[oh·w + ow] = plane[(oh + off_h)·w + ow + off_w]` where that lies
/// inside the plane, else zero. Inside the valid rows `oh_lo..oh_hi` the source is `dst`'s own
/// index shifted by `off_h·w + off_w`, so the rows go in one copy; the elements that copy wraps
/// across a row's end (the invalid columns) are zeroed after it. Per row the generic loop made
/// three library calls for 8 elements at 32 px tiles, and that dominated the whole im2col.
fn shifted_copy<T: GradElement>(
    plane: &[T],
    dst: &mut [T],
    w: usize,
    (oh_lo, oh_hi): (usize, usize),
    (ow_lo, ow_hi): (usize, usize),
    off_h: isize,
    off_w: isize,
) {
    let zero = T::zero();
    let (lo, hi) = (oh_lo * w, oh_hi * w);
    if oh_lo >= oh_hi || ow_lo >= ow_hi {
        dst.fill(zero);
        return;
    }
    dst[..lo].fill(zero);
    dst[hi..].fill(zero);
    let delta = off_h * w as isize + off_w;
    // Where `dst[i + delta]` would leave the plane, `i` is an invalid column of the first or
    // last valid row: the column pass below writes it.
    let from = lo.max((-delta).max(0) as usize);
    let to = hi.min((plane.len() as isize - delta).max(0) as usize);
    if from < to {
        let src = (from as isize + delta) as usize;
        dst[from..to].copy_from_slice(&plane[src..src + (to - from)]);
    }
    for c in (0..ow_lo).chain(ow_hi..w) {
        for oh in oh_lo..oh_hi {
            dst[oh * w + c] = zero;
        }
    }
}

/// Adds the columns of `dcol` (`[cols, ld]`, this batch element's columns at `col_offset`) back
/// onto `dx_b` (`[C_in, H, W]`), in a fixed order.
fn col2im<T: GradElement>(
    g: &Conv2dGeometry,
    dcol: &[T],
    ld: usize,
    col_offset: usize,
    dx_b: &mut [T],
) {
    let (h, w) = (g.in_h, g.in_w);
    let (oh_n, ow_n) = (g.out_h, g.out_w);
    let [sh, sw] = g.stride;
    let [dh, dw] = g.dilation;
    let [ph, pw] = g.pad_begin;
    let mut row = 0;
    for ci in 0..g.channels_in {
        let plane = &mut dx_b[ci * h * w..(ci + 1) * h * w];
        for kh in 0..g.kernel_h {
            let off_h = (kh * dh) as isize - ph as isize;
            let (oh_lo, oh_hi) = valid_range(off_h, sh, h, oh_n);
            for kw in 0..g.kernel_w {
                let off_w = (kw * dw) as isize - pw as isize;
                let (ow_lo, ow_hi) = valid_range(off_w, sw, w, ow_n);
                if ow_lo < ow_hi {
                    let src = &dcol[row * ld + col_offset..row * ld + col_offset + oh_n * ow_n];
                    let iw0 = ((ow_lo * sw) as isize + off_w) as usize;
                    for oh in oh_lo..oh_hi {
                        let ih = ((oh * sh) as isize + off_h) as usize;
                        let src_row = &src[oh * ow_n + ow_lo..oh * ow_n + ow_hi];
                        let dst_row = &mut plane[ih * w..(ih + 1) * w];
                        if sw == 1 {
                            for (d, s) in dst_row[iw0..iw0 + src_row.len()].iter_mut().zip(src_row)
                            {
                                *d += *s;
                            }
                        } else {
                            for (i, s) in src_row.iter().enumerate() {
                                dst_row[iw0 + i * sw] += *s;
                            }
                        }
                    }
                }
                row += 1;
            }
        }
    }
}

/// `dst[m, n] (+)= lhs[m, k] · rhs[k, n]` with explicit row / column strides.
///
/// Each `dst` element is one dot product over k in gemm's fixed order (its threads split m and
/// n), so the bits do not depend on `parallel` or the number of threads.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_strided<T: GradElement>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_rs: isize,
    dst_cs: isize,
    accumulate: bool,
    lhs: *const T,
    lhs_rs: isize,
    lhs_cs: isize,
    rhs: *const T,
    rhs_rs: isize,
    rhs_cs: isize,
    parallel: bool,
) {
    #[cfg(feature = "rayon")]
    let parallelism = if parallel && m.saturating_mul(n).saturating_mul(k) >= GEMM_PARALLEL_WORK {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    #[cfg(not(feature = "rayon"))]
    let parallelism = {
        let _ = parallel;
        gemm::Parallelism::None
    };
    // SAFETY: the callers pass pointers and strides that stay inside their buffers for every
    // (m, n, k) index; gemm reads `dst` only when `accumulate` is set.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs,
            dst_rs,
            accumulate,
            lhs,
            lhs_cs,
            lhs_rs,
            rhs,
            rhs_cs,
            rhs_rs,
            T::one(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Copies the output gradient of batch elements `b0..b0 + nb` into `[C_out, nb·P]` (the gemm's
/// K or N axis runs over batch and position together).
fn gather_output_grad<T: GradElement>(
    g: &Conv2dGeometry,
    dy: &[T],
    b0: usize,
    nb: usize,
    out: &mut [T],
) {
    let p = g.spatial_out();
    let ld = nb * p;
    for bi in 0..nb {
        let b = b0 + bi;
        for co in 0..g.channels_out {
            let src = &dy[(b * g.channels_out + co) * p..(b * g.channels_out + co + 1) * p];
            out[co * ld + bi * p..co * ld + (bi + 1) * p].copy_from_slice(src);
        }
    }
}

/// The weight gradient of batch elements `b0..b0 + nb`, added to (or written into) `dw`
/// (`[C_out, C_in·k_h·k_w]`).
fn weight_grad_chunk<T: GradElement>(
    g: &Conv2dGeometry,
    x: &[T],
    dy: &[T],
    b0: usize,
    nb: usize,
    dw: &mut [T],
    accumulate: bool,
    parallel: bool,
) {
    let p = g.spatial_out();
    let cols = g.cols();
    let ld = nb * p;
    let in_plane = g.channels_in * g.in_h * g.in_w;
    let mut col = scratch::<T>(cols * ld); // im2col writes every element
    let im2col = Im2col::new(g);
    for bi in 0..nb {
        let b = b0 + bi;
        im2col.fill(&x[b * in_plane..(b + 1) * in_plane], &mut col, ld, bi * p);
    }
    // One batch element: its output gradient is already [C_out, P].
    let gathered;
    let dy_chunk: &[T] = if nb == 1 {
        &dy[b0 * g.channels_out * p..(b0 + 1) * g.channels_out * p]
    } else {
        let mut buf = scratch::<T>(g.channels_out * ld); // gathered whole
        gather_output_grad(g, dy, b0, nb, &mut buf);
        gathered = buf;
        &gathered
    };
    // dW[co, j] (+)= Σ_k dY[co, k] · col[j, k]
    unsafe {
        gemm_strided(
            g.channels_out,
            cols,
            ld,
            dw.as_mut_ptr(),
            cols as isize,
            1,
            accumulate,
            dy_chunk.as_ptr(),
            ld as isize,
            1,
            col.as_ptr(),
            1,
            ld as isize,
            parallel,
        );
    }
}

/// The weight gradient `[C_out, C_in, k_h, k_w]` from contiguous `x` and `dy`.
pub fn weight_grad<T: GradElement>(g: &Conv2dGeometry, x: &[T], dy: &[T]) -> Vec<T> {
    if conv2d_dense::applies(g) {
        return conv2d_dense::weight_grad(g, x, dy);
    }
    let n_chunks = g.batch_chunks();
    let lanes = n_chunks.min(MAX_LANES);
    let size = g.channels_out * g.cols();

    // Lane l sums chunks l, l + lanes, l + 2·lanes, ... in that order.
    let lane = |l: usize, parallel: bool| {
        let mut dw = vec![T::zero(); size];
        for (i, c) in (l..n_chunks).step_by(lanes).enumerate() {
            let (b0, nb) = g.chunk_bounds(c, n_chunks);
            weight_grad_chunk(g, x, dy, b0, nb, &mut dw, i > 0, parallel);
        }
        dw
    };
    if lanes == 1 {
        return lane(0, true);
    }
    #[cfg(feature = "rayon")]
    let partials: Vec<Vec<T>> = {
        use rayon::prelude::*;
        (0..lanes).into_par_iter().map(|l| lane(l, false)).collect()
    };
    #[cfg(not(feature = "rayon"))]
    let partials: Vec<Vec<T>> = (0..lanes).map(|l| lane(l, false)).collect();

    let mut iter = partials.into_iter();
    let mut dw = iter.next().unwrap_or_else(|| vec![T::zero(); size]);
    for partial in iter {
        for (d, s) in dw.iter_mut().zip(&partial) {
            *d += *s;
        }
    }
    dw
}

/// The input gradient of batch elements `b0..b0 + nb` into `dx_chunk` (`[nb, C_in, H, W]`,
/// zero on entry).
fn input_grad_chunk<T: GradElement>(
    g: &Conv2dGeometry,
    w: &[T],
    dy: &[T],
    b0: usize,
    nb: usize,
    dx_chunk: &mut [T],
    parallel: bool,
) {
    let p = g.spatial_out();
    let cols = g.cols();
    let ld = nb * p;
    let in_plane = g.channels_in * g.in_h * g.in_w;
    let gathered;
    let dy_chunk: &[T] = if nb == 1 {
        &dy[b0 * g.channels_out * p..(b0 + 1) * g.channels_out * p]
    } else {
        let mut buf = scratch::<T>(g.channels_out * ld); // gathered whole
        gather_output_grad(g, dy, b0, nb, &mut buf);
        gathered = buf;
        &gathered
    };
    // dcol[j, k] = Σ_co W[co, j] · dY[co, k]
    let mut dcol = scratch::<T>(cols * ld); // the gemm writes every element
    unsafe {
        gemm_strided(
            cols,
            ld,
            g.channels_out,
            dcol.as_mut_ptr(),
            ld as isize,
            1,
            false,
            w.as_ptr(),
            1,
            cols as isize,
            dy_chunk.as_ptr(),
            ld as isize,
            1,
            parallel,
        );
    }
    for bi in 0..nb {
        col2im(
            g,
            &dcol,
            ld,
            bi * p,
            &mut dx_chunk[bi * in_plane..(bi + 1) * in_plane],
        );
    }
}

/// The input gradient `[N, C_in, H, W]` from contiguous `weight` and `dy`.
pub fn input_grad<T: GradElement>(g: &Conv2dGeometry, w: &[T], dy: &[T]) -> Vec<T> {
    if conv2d_dense::applies(g) {
        return conv2d_dense::input_grad(g, w, dy);
    }
    let n_chunks = g.batch_chunks();
    let in_plane = g.channels_in * g.in_h * g.in_w;
    let mut dx = vec![T::zero(); g.batch * in_plane];
    if n_chunks == 1 {
        input_grad_chunk(g, w, dy, 0, g.batch, &mut dx, true);
        return dx;
    }
    let parts = split_chunks(g, n_chunks, in_plane, &mut dx);
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        parts.into_par_iter().for_each(|(b0, nb, dx_chunk)| {
            input_grad_chunk(g, w, dy, b0, nb, dx_chunk, false);
        });
    }
    #[cfg(not(feature = "rayon"))]
    for (b0, nb, dx_chunk) in parts {
        input_grad_chunk(g, w, dy, b0, nb, dx_chunk, false);
    }
    dx
}

/// The forward output of batch elements `b0..b0 + nb` into `y_chunk` (`[nb, C_out, H_out, W_out]`
/// elements from this pointer), writing every one of them.
///
/// # Safety
/// `y_chunk` must be valid for writes of `nb · C_out · H_out · W_out` elements that no one else
/// reads or writes meanwhile; they may be uninitialised (they are only written, through the
/// pointer).
unsafe fn forward_chunk<T: GradElement>(
    g: &Conv2dGeometry,
    x: &[T],
    w: &[T],
    b0: usize,
    nb: usize,
    y_chunk: *mut T,
    parallel: bool,
) {
    let p = g.spatial_out();
    let cols = g.cols();
    let ld = nb * p;
    let in_plane = g.channels_in * g.in_h * g.in_w;
    let mut col = scratch::<T>(cols * ld); // im2col writes every element
    let im2col = Im2col::new(g);
    for bi in 0..nb {
        let b = b0 + bi;
        im2col.fill(&x[b * in_plane..(b + 1) * in_plane], &mut col, ld, bi * p);
    }
    // Y[co, k] = Σ_j W[co, j] · col[j, k]; one element's Y is its output plane as it is. The gemm
    // writes every element of its destination (it does not accumulate).
    let mut buffer = scratch::<T>(if nb == 1 { 0 } else { g.channels_out * ld });
    let dst: *mut T = if nb == 1 {
        y_chunk
    } else {
        buffer.as_mut_ptr()
    };
    unsafe {
        gemm_strided(
            g.channels_out,
            ld,
            cols,
            dst,
            ld as isize,
            1,
            false,
            w.as_ptr(),
            cols as isize,
            1,
            col.as_ptr(),
            ld as isize,
            1,
            parallel,
        );
    }
    if nb > 1 {
        for bi in 0..nb {
            for co in 0..g.channels_out {
                let src = &buffer[co * ld + bi * p..co * ld + (bi + 1) * p];
                // SAFETY: within the chunk's `nb · C_out · P` elements (the caller's contract).
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        src.as_ptr(),
                        y_chunk.add((bi * g.channels_out + co) * p),
                        p,
                    );
                }
            }
        }
    }
}

/// The forward output `[N, C_out, H_out, W_out]` from contiguous `x` and `weight`, plus `bias`.
pub fn forward<T: GradElement>(g: &Conv2dGeometry, x: &[T], w: &[T], bias: Option<&[T]>) -> Vec<T> {
    forward_prepared(g, x, w, None, bias)
}

/// [`forward`], given the small-map route's weights ([`conv2d_dense::forward_weights`]) where
/// the caller has them prepared already; made here otherwise.
pub fn forward_prepared<T: GradElement>(
    g: &Conv2dGeometry,
    x: &[T],
    w: &[T],
    dense_weights: Option<&[T]>,
    bias: Option<&[T]>,
) -> Vec<T> {
    let n_chunks = g.batch_chunks();
    let p = g.spatial_out();
    let out_plane = g.channels_out * p;
    let mut y;
    if conv2d_dense::applies(g) {
        y = match dense_weights {
            Some(wf) => conv2d_dense::forward(g, x, wf),
            None => {
                let wf = conv2d_dense::forward_weights(g, w, &conv2d_dense::forward_taps(g));
                conv2d_dense::forward(g, x, &wf)
            }
        };
    } else if g.cols() == 0 || out_plane == 0 {
        // Nothing to sum (no gemm would write): zeros.
        y = vec![T::zero(); g.batch * out_plane];
    } else {
        // Not zero-filled: the chunks write every element through the pointer before the length
        // is set (a serial zero-fill of the output was ~5 % of inference on 2 cores).
        let len = g.batch * out_plane;
        y = Vec::<T>::with_capacity(len);
        let base = y.as_mut_ptr();
        if n_chunks == 1 {
            // SAFETY: `base` holds `len` elements, all of them this chunk's.
            unsafe { forward_chunk(g, x, w, 0, g.batch, base, true) };
        } else {
            let chunk_at = |c: usize| g.chunk_bounds(c, n_chunks);
            #[cfg(feature = "rayon")]
            {
                use rayon::prelude::*;
                let out = crate::ops::SendMutPtr::new(base);
                (0..n_chunks).into_par_iter().for_each(|c| {
                    let (b0, nb) = chunk_at(c);
                    // SAFETY: chunks are disjoint runs of batch elements inside `len`.
                    unsafe { forward_chunk(g, x, w, b0, nb, out.ptr_add(b0 * out_plane), false) };
                });
            }
            #[cfg(not(feature = "rayon"))]
            for c in 0..n_chunks {
                let (b0, nb) = chunk_at(c);
                // SAFETY: as above.
                unsafe { forward_chunk(g, x, w, b0, nb, base.add(b0 * out_plane), false) };
            }
        }
        // SAFETY: the chunks cover the batch (`chunk_bounds`), and each wrote all of its elements.
        unsafe { y.set_len(len) };
    }
    if let Some(bias) = bias {
        // Planes run over (b, c_out) in order.
        for (i, plane) in y.chunks_mut(p).enumerate() {
            let b = bias[i % g.channels_out];
            for v in plane {
                *v += b;
            }
        }
    }
    y
}

/// Whether burn-flex's own forward has a dedicated path for this convolution (1×1 without
/// stride or padding; few input and output channels), which is kept.
fn upstream_fast_path(g: &Conv2dGeometry) -> bool {
    let pointwise = g.kernel_h == 1
        && g.kernel_w == 1
        && g.stride == [1, 1]
        && g.pad_begin == [0, 0]
        && g.out_h == g.in_h
        && g.out_w == g.in_w;
    // conv.rs: should_use_small_channel_conv (SMALL_CHANNEL_*_THRESHOLD).
    let small_channels = g.channels_in <= 4 && g.channels_out <= 16;
    // conv.rs: should_use_direct_conv (1D-like, unpadded, undilated, many channels).
    let direct = g.kernel_h == 1
        && g.in_h == 1
        && g.pad_begin == [0, 0]
        && g.in_w
            .checked_sub(g.kernel_w)
            .is_some_and(|d| g.out_w == d / g.stride[1] + 1)
        && g.dilation == [1, 1]
        && g.channels_in >= 32
        && g.kernel_w <= 8
        && g.out_w <= 800;
    pointwise || small_channels || direct
}

/// The forward convolution with the gemm kernel, or `None` where it does not apply (see the
/// module documentation) or where burn-flex has a dedicated path; the caller then runs
/// burn-flex's own forward.
pub fn conv2d_forward(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: Option<&FlexTensor>,
    options: &ConvOptions<2>,
) -> Option<FlexTensor> {
    let dtype = float_dtype_matches([x, weight, weight])?;
    if bias.is_some_and(|b| b.dtype() != dtype) {
        return None;
    }
    let x_shape = x.layout().shape();
    let w_shape = weight.layout().shape();
    if x_shape.len() != 4 || w_shape.len() != 4 {
        return None;
    }
    let mut out_shape = [x_shape[0], w_shape[0], 0, 0];
    for axis in 0..2 {
        let (begin, end) = options.padding[axis];
        let span = options.dilation[axis]
            .checked_mul(w_shape[2 + axis].checked_sub(1)?)?
            .checked_add(1)?;
        let padded = x_shape[2 + axis].checked_add(begin)?.checked_add(end)?;
        if padded < span || options.stride[axis] == 0 {
            return None;
        }
        out_shape[2 + axis] = (padded - span) / options.stride[axis] + 1;
    }
    let g = Conv2dGeometry::new(x_shape, w_shape, &out_shape, options)?;
    if upstream_fast_path(&g) {
        return None;
    }
    let bias = match bias {
        Some(b) => {
            let b = b.to_contiguous();
            if b.layout().num_elements() != g.channels_out {
                return None;
            }
            Some(b)
        }
        None => None,
    };
    let x = x.to_contiguous();
    let w = weight.to_contiguous();
    let bytes = match dtype {
        DType::F32 => Bytes::from_elems(forward_tensors::<f32>(&g, &x, weight, &w, bias.as_ref())),
        DType::F64 => Bytes::from_elems(forward_tensors::<f64>(&g, &x, weight, &w, bias.as_ref())),
        _ => return None,
    };
    Some(FlexTensor::new(
        bytes,
        Layout::contiguous(burn_std::Shape::from(out_shape.to_vec())),
        dtype,
    ))
}

/// [`forward_prepared`] on tensors: `x` and `w` contiguous, `weight` as the caller passed it.
/// The small-map route's rearranged weights come from [`prepared::prepared`], so inside
/// `with_prepared_weights` (inference) they are made once per weight tensor.
fn forward_tensors<T: GradElement + burn_backend::Element>(
    g: &Conv2dGeometry,
    x: &FlexTensor,
    weight: &FlexTensor,
    w: &FlexTensor,
    bias: Option<&FlexTensor>,
) -> Vec<T> {
    let dense = conv2d_dense::applies(g).then(|| {
        let taps = conv2d_dense::forward_taps(g);
        let mut what = vec![DENSE_FORWARD_WEIGHTS];
        what.extend_from_slice(&taps);
        prepared::prepared::<T>(weight, &what, |w| {
            conv2d_dense::forward_weights(g, w, &taps)
        })
    });
    forward_prepared::<T>(
        g,
        x.storage(),
        w.storage(),
        dense.as_deref().map(Vec::as_slice),
        bias.map(|b| b.storage::<T>()),
    )
}

/// burn-flex's own forward convolution (asymmetric padding applied to the input first, then
/// its 1×1, depthwise, small-channel, direct or tiled im2col path): the fallback of
/// [`conv2d_forward`] and the reference it is tested against.
pub fn conv2d_forward_upstream(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: ConvOptions<2>,
) -> FlexTensor {
    use crate::ops::conv;
    let (x, options) = burn_backend::ops::conv::pad_asymmetric_conv_input::<Flex, 2>(x, options);
    match x.dtype() {
        DType::F32 => conv::conv2d_f32(x, weight, bias, &options),
        DType::F64 => conv::conv2d_f64(x, weight, bias, &options),
        DType::F16 => conv::conv2d_f16(x, weight, bias, &options),
        DType::BF16 => conv::conv2d_bf16(x, weight, bias, &options),
        dtype => panic!("conv2d: unsupported dtype {:?}", dtype),
    }
}

fn float_dtype_matches(tensors: [&FlexTensor; 3]) -> Option<DType> {
    let dtype = tensors[0].dtype();
    if tensors.iter().any(|t| t.dtype() != dtype) {
        return None;
    }
    matches!(dtype, DType::F32 | DType::F64).then_some(dtype)
}

/// The weight gradient with the gemm kernel, or `None` where it does not apply (see the module
/// documentation); the caller then runs [`conv2d_weight_backward_generic`].
pub fn conv2d_weight_backward(
    x: &FlexTensor,
    weight: &FlexTensor,
    output_grad: &FlexTensor,
    options: &ConvOptions<2>,
) -> Option<FlexTensor> {
    let dtype = float_dtype_matches([x, weight, output_grad])?;
    let g = Conv2dGeometry::new(
        x.layout().shape(),
        weight.layout().shape(),
        output_grad.layout().shape(),
        options,
    )?;
    let x = x.to_contiguous();
    let dy = output_grad.to_contiguous();
    let bytes = match dtype {
        DType::F32 => Bytes::from_elems(weight_grad::<f32>(&g, x.storage(), dy.storage())),
        DType::F64 => Bytes::from_elems(weight_grad::<f64>(&g, x.storage(), dy.storage())),
        _ => return None,
    };
    Some(FlexTensor::new(
        bytes,
        Layout::contiguous(weight.layout().shape().clone()),
        dtype,
    ))
}

/// The input gradient with the gemm kernel, or `None` where it does not apply (see the module
/// documentation); the caller then runs [`conv2d_x_backward_generic`].
pub fn conv2d_x_backward(
    x: &FlexTensor,
    weight: &FlexTensor,
    output_grad: &FlexTensor,
    options: &ConvOptions<2>,
) -> Option<FlexTensor> {
    let dtype = float_dtype_matches([x, weight, output_grad])?;
    let g = Conv2dGeometry::new(
        x.layout().shape(),
        weight.layout().shape(),
        output_grad.layout().shape(),
        options,
    )?;
    let w = weight.to_contiguous();
    let dy = output_grad.to_contiguous();
    let bytes = match dtype {
        DType::F32 => Bytes::from_elems(input_grad::<f32>(&g, w.storage(), dy.storage())),
        DType::F64 => Bytes::from_elems(input_grad::<f64>(&g, w.storage(), dy.storage())),
        _ => return None,
    };
    Some(FlexTensor::new(
        bytes,
        Layout::contiguous(x.layout().shape().clone()),
        dtype,
    ))
}

// ============================================================================
// burn-backend 0.22.1's generic compositions (`burn_backend::ops::conv`, crate-private there),
// run on Flex: the fallback for what the kernels above do not cover, and the reference the
// tests compare them with.
// ============================================================================

fn pad_input(x: FlexTensor, options: &ConvOptions<2>) -> (FlexTensor, ConvOptions<2>) {
    burn_backend::ops::conv::pad_asymmetric_conv_input::<Flex, 2>(x, options.clone())
}

/// burn-backend's `conv2d_weight_backward`: a convolution of the batch-transposed input with
/// the batch-transposed output gradient (per group for grouped convolutions), through
/// burn-flex's own forward ([`conv2d_forward_upstream`]) as before this patch.
pub fn conv2d_weight_backward_generic(
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: ConvOptions<2>,
) -> FlexTensor {
    let (x, options) = pad_input(x, &options);
    let weight_shape = weight.shape();
    let weight_dtype = weight.dtype();
    if options.groups == 1 {
        let x_swapped = Flex::float_swap_dims(x, 0, 1);
        let output_grad_swapped = Flex::float_swap_dims(output_grad, 0, 1);
        let weight_grad_swapped = conv2d_forward_upstream(
            x_swapped,
            output_grad_swapped,
            None,
            ConvOptions::new(options.dilation, options.padding_begin(), options.stride, 1),
        );
        let mut weight_grad = Flex::float_swap_dims(weight_grad_swapped, 0, 1);
        if weight_grad.shape() != weight_shape {
            let slices = vec![
                Slice::from(0..weight_shape[0]),
                Slice::from(0..weight_shape[1]),
                Slice::from(0..weight_shape[2]),
                Slice::from(0..weight_shape[3]),
            ];
            weight_grad = Flex::float_slice(weight_grad, &slices);
        }
        return weight_grad;
    }

    let mut weight_grad = Flex::float_zeros(
        weight_shape.clone(),
        &Default::default(),
        weight_dtype.into(),
    );
    let [channels_out, increment_ci, kernel_size_1, kernel_size_2] = weight_shape.dims();
    let increment_co = channels_out / options.groups;
    let x_swapped = Flex::float_swap_dims(x, 0, 1);
    let output_grad_swapped = Flex::float_swap_dims(output_grad, 0, 1);
    for g in 0..options.groups {
        let (start_ci, end_ci) = (g * increment_ci, (g + 1) * increment_ci);
        let (start_co, end_co) = (g * increment_co, (g + 1) * increment_co);
        let x = Flex::float_slice(
            x_swapped.clone(),
            &[Slice::new(start_ci as isize, Some(end_ci as isize), 1)],
        );
        let grad = Flex::float_slice(
            output_grad_swapped.clone(),
            &[Slice::new(start_co as isize, Some(end_co as isize), 1)],
        );
        let mut tmp = conv2d_forward_upstream(
            x,
            grad,
            None,
            ConvOptions::new(options.dilation, options.padding_begin(), options.stride, 1),
        );
        tmp = Flex::float_swap_dims(tmp, 0, 1);
        let [_, _, k1, k2] = tmp.shape().dims();
        if k1 != kernel_size_1 || k2 != kernel_size_2 {
            tmp = Flex::float_slice(
                tmp,
                &[
                    Slice::from(0..increment_co),
                    Slice::from(0..increment_ci),
                    Slice::from(0..kernel_size_1),
                    Slice::from(0..kernel_size_2),
                ],
            );
        }
        weight_grad = Flex::float_slice_assign(
            weight_grad,
            &[
                Slice::from(start_co..end_co),
                Slice::from(0..increment_ci),
                Slice::from(0..kernel_size_1),
                Slice::from(0..kernel_size_2),
            ],
            tmp,
        );
    }
    weight_grad
}

/// burn-backend's `conv2d_x_backward`: a transposed convolution of the output gradient
/// (asymmetric padding: of the padded input, cropped afterwards).
pub fn conv2d_x_backward_generic(
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: ConvOptions<2>,
) -> FlexTensor {
    let input_shape = x.shape();
    let asymmetric = options.is_asymmetric();
    let padding = options.padding;
    let (x, options) = pad_input(x, &options);

    let [_, _, height_in, width_in] = x.shape().dims();
    let [_, _, height_out, width_out] = output_grad.shape().dims();
    let [_, _, kernel_size_1, kernel_size_2] = weight.shape().dims();
    let padding_1_out = calculate_padding_out(
        kernel_size_1,
        options.stride[0],
        options.padding_begin()[0],
        options.dilation[0],
        height_in,
        height_out,
    );
    let padding_2_out = calculate_padding_out(
        kernel_size_2,
        options.stride[1],
        options.padding_begin()[1],
        options.dilation[1],
        width_in,
        width_out,
    );
    let grad = Flex::conv_transpose2d(
        output_grad,
        weight,
        None,
        ConvTransposeOptions::new(
            options.stride,
            options.padding_begin(),
            [padding_1_out, padding_2_out],
            options.dilation,
            options.groups,
        ),
    );
    if !asymmetric {
        return grad;
    }
    let mut ranges: Vec<Slice> = input_shape
        .iter()
        .map(|&size| Slice::from(0..size))
        .collect();
    for (dim, (begin, _)) in padding.iter().enumerate() {
        ranges[dim + 2] = Slice::from(*begin..*begin + input_shape[dim + 2]);
    }
    Flex::float_slice(grad, &ranges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_backend::TensorData;

    /// A deterministic pseudo-random tensor (xorshift; values in [-1, 1)).
    fn tensor(shape: &[usize], seed: u64) -> FlexTensor {
        let n: usize = shape.iter().product();
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let values: Vec<f32> = (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect();
        FlexTensor::from_data(TensorData::new(values, shape.to_vec()))
    }

    fn values(t: FlexTensor) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().unwrap()
    }

    /// Naive weight and input gradients by the definition, in f64.
    fn naive(x: &[f32], w: &[f32], dy: &[f32], g: &Conv2dGeometry) -> (Vec<f64>, Vec<f64>) {
        let mut dw = vec![0f64; g.channels_out * g.cols()];
        let mut dx = vec![0f64; g.batch * g.channels_in * g.in_h * g.in_w];
        for b in 0..g.batch {
            for co in 0..g.channels_out {
                for oh in 0..g.out_h {
                    for ow in 0..g.out_w {
                        let d =
                            dy[((b * g.channels_out + co) * g.out_h + oh) * g.out_w + ow] as f64;
                        for ci in 0..g.channels_in {
                            for kh in 0..g.kernel_h {
                                for kw in 0..g.kernel_w {
                                    let ih = (oh * g.stride[0] + kh * g.dilation[0]) as isize
                                        - g.pad_begin[0] as isize;
                                    let iw = (ow * g.stride[1] + kw * g.dilation[1]) as isize
                                        - g.pad_begin[1] as isize;
                                    if ih < 0
                                        || iw < 0
                                        || ih >= g.in_h as isize
                                        || iw >= g.in_w as isize
                                    {
                                        continue;
                                    }
                                    let xi = ((b * g.channels_in + ci) * g.in_h + ih as usize)
                                        * g.in_w
                                        + iw as usize;
                                    let wi = ((co * g.channels_in + ci) * g.kernel_h + kh)
                                        * g.kernel_w
                                        + kw;
                                    dw[wi] += d * x[xi] as f64;
                                    dx[xi] += d * w[wi] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        (dw, dx)
    }

    /// The forward convolution by the definition, in f64.
    fn naive_forward(x: &[f32], w: &[f32], bias: &[f32], g: &Conv2dGeometry) -> Vec<f64> {
        let mut y = vec![0f64; g.batch * g.channels_out * g.spatial_out()];
        for b in 0..g.batch {
            for co in 0..g.channels_out {
                for oh in 0..g.out_h {
                    for ow in 0..g.out_w {
                        let mut acc = bias[co] as f64;
                        for ci in 0..g.channels_in {
                            for kh in 0..g.kernel_h {
                                for kw in 0..g.kernel_w {
                                    let ih = (oh * g.stride[0] + kh * g.dilation[0]) as isize
                                        - g.pad_begin[0] as isize;
                                    let iw = (ow * g.stride[1] + kw * g.dilation[1]) as isize
                                        - g.pad_begin[1] as isize;
                                    if ih < 0
                                        || iw < 0
                                        || ih >= g.in_h as isize
                                        || iw >= g.in_w as isize
                                    {
                                        continue;
                                    }
                                    let xi = ((b * g.channels_in + ci) * g.in_h + ih as usize)
                                        * g.in_w
                                        + iw as usize;
                                    let wi = ((co * g.channels_in + ci) * g.kernel_h + kh)
                                        * g.kernel_w
                                        + kw;
                                    acc += x[xi] as f64 * w[wi] as f64;
                                }
                            }
                        }
                        y[((b * g.channels_out + co) * g.out_h + oh) * g.out_w + ow] = acc;
                    }
                }
            }
        }
        y
    }

    fn check(
        batch: usize,
        c_in: usize,
        c_out: usize,
        hw: [usize; 2],
        k: [usize; 2],
        stride: [usize; 2],
        padding: [(usize, usize); 2],
        dilation: [usize; 2],
    ) {
        let options = ConvOptions::new_with_padding(stride, padding, dilation, 1);
        let x = tensor(&[batch, c_in, hw[0], hw[1]], 1);
        let w = tensor(&[c_out, c_in, k[0], k[1]], 2);
        let y = Flex::conv2d(x.clone(), w.clone(), None, options.clone());
        let dy = tensor(&y.shape().dims::<4>(), 3);
        let g = Conv2dGeometry::new(
            x.layout().shape(),
            w.layout().shape(),
            dy.layout().shape(),
            &options,
        )
        .expect("supported geometry");
        let (dw_ref, dx_ref) = naive(
            x.storage::<f32>(),
            w.storage::<f32>(),
            dy.storage::<f32>(),
            &g,
        );
        // Forward, with a bias, against the definition (and burn-flex's own forward).
        let bias = tensor(&[c_out], 4);
        let y_ref = naive_forward(
            x.storage::<f32>(),
            w.storage::<f32>(),
            bias.storage::<f32>(),
            &g,
        );
        let upstream = values(conv2d_forward_upstream(
            x.clone(),
            w.clone(),
            Some(bias.clone()),
            options.clone(),
        ));
        let forward = conv2d_forward(&x, &w, Some(&bias), &options);
        assert_eq!(
            forward.is_none(),
            upstream_fast_path(&g),
            "the gemm forward runs exactly where burn-flex has no fast path"
        );
        let y = forward.map(values).unwrap_or_else(|| upstream.clone());
        assert_eq!(y.len(), y_ref.len());
        for i in 0..y_ref.len() {
            let tol = 1e-4 * (1.0 + y_ref[i].abs());
            assert!(
                (y[i] as f64 - y_ref[i]).abs() <= tol,
                "y[{i}]: {} vs {}",
                y[i],
                y_ref[i]
            );
            assert!(
                (upstream[i] as f64 - y_ref[i]).abs() <= tol,
                "upstream y[{i}]"
            );
        }

        let dw = values(conv2d_weight_backward(&x, &w, &dy, &options).unwrap());
        let dx = values(conv2d_x_backward(&x, &w, &dy, &options).unwrap());
        let dw_gen = values(conv2d_weight_backward_generic(
            x.clone(),
            w.clone(),
            dy.clone(),
            options.clone(),
        ));
        let dx_gen = values(conv2d_x_backward_generic(x, w, dy, options));
        for (name, got, generic, want) in [
            ("weight", &dw, &dw_gen, &dw_ref),
            ("input", &dx, &dx_gen, &dx_ref),
        ] {
            assert_eq!(got.len(), want.len(), "{name}");
            assert_eq!(generic.len(), want.len(), "{name} generic");
            for i in 0..want.len() {
                let tol = 1e-4 * (1.0 + want[i].abs());
                assert!(
                    (got[i] as f64 - want[i]).abs() <= tol,
                    "{name}[{i}]: kernel {} vs naive {}",
                    got[i],
                    want[i]
                );
                assert!(
                    (generic[i] as f64 - want[i]).abs() <= tol,
                    "{name}[{i}]: generic {} vs naive {}",
                    generic[i],
                    want[i]
                );
            }
        }
    }

    #[test]
    fn grads_match_naive_basic() {
        check(2, 3, 4, [5, 6], [3, 3], [1, 1], [(1, 1), (1, 1)], [1, 1]);
    }

    #[test]
    fn grads_match_naive_stride_dilation() {
        check(3, 2, 5, [9, 7], [3, 2], [2, 1], [(0, 0), (2, 2)], [2, 1]);
        check(1, 4, 3, [8, 8], [3, 3], [2, 2], [(1, 1), (1, 1)], [1, 2]);
    }

    #[test]
    fn grads_match_naive_dropped_tail_and_asymmetric_padding() {
        // (10 + 2 - 3) / 2 + 1 = 5: the last input row is never read.
        check(2, 3, 2, [10, 10], [3, 3], [2, 2], [(1, 1), (1, 1)], [1, 1]);
        check(2, 2, 3, [7, 6], [3, 3], [1, 2], [(0, 2), (1, 0)], [1, 1]);
    }

    #[test]
    fn grads_match_naive_pointwise_and_many_chunks() {
        check(5, 6, 7, [4, 4], [1, 1], [1, 1], [(0, 0), (0, 0)], [1, 1]);
        // P = 1024 columns per element: one element per chunk, five lanes.
        check(5, 2, 3, [32, 32], [3, 3], [1, 1], [(1, 1), (1, 1)], [1, 1]);
    }

    #[test]
    fn kernel_wider_than_input_but_padded() {
        check(2, 2, 2, [2, 3], [3, 3], [1, 1], [(1, 1), (1, 1)], [1, 1]);
        check(1, 1, 1, [1, 1], [3, 3], [2, 2], [(1, 1), (1, 1)], [1, 1]);
    }

    #[test]
    fn small_maps_take_the_link_route_and_match_naive() {
        use crate::ops::conv2d_dense;
        let geometry = |c: usize, side: usize, k: usize, stride: usize, pad: usize| {
            let out = (side + 2 * pad - k) / stride + 1;
            let options = ConvOptions::new([stride, stride], [pad, pad], [1, 1], 1);
            Conv2dGeometry::new(
                &[2, c, side, side],
                &[c, c, k, k],
                &[2, c, out, out],
                &options,
            )
            .unwrap()
        };
        // ResNet-18 on 32 px tiles: layer4 (1×1), layer3 (2×2), the stride-2 entries into them.
        for (side, stride) in [(1, 1), (2, 1), (2, 2), (4, 2)] {
            assert!(
                conv2d_dense::applies(&geometry(8, side, 3, stride, 1)),
                "{side} {stride}"
            );
        }
        // Larger maps, and kernels without padding taps, keep im2col.
        assert!(!conv2d_dense::applies(&geometry(8, 4, 3, 1, 1)));
        assert!(!conv2d_dense::applies(&geometry(8, 8, 3, 1, 1)));
        assert!(!conv2d_dense::applies(&geometry(8, 2, 1, 1, 0)));
        assert!(!conv2d_dense::applies(&geometry(8, 3, 3, 1, 0)));
        check(3, 9, 7, [1, 1], [3, 3], [1, 1], [(1, 1), (1, 1)], [1, 1]);
        check(3, 9, 7, [2, 2], [3, 3], [1, 1], [(1, 1), (1, 1)], [1, 1]);
        check(3, 9, 7, [2, 2], [3, 3], [2, 2], [(1, 1), (1, 1)], [1, 1]);
        check(2, 9, 7, [4, 4], [3, 3], [2, 2], [(1, 1), (1, 1)], [1, 1]);
        // Non-square, asymmetric padding, dilation.
        check(2, 9, 7, [2, 3], [3, 2], [1, 2], [(2, 1), (1, 1)], [2, 1]);
        check(2, 9, 7, [3, 2], [3, 3], [1, 1], [(0, 2), (1, 0)], [1, 1]);
    }

    #[test]
    fn prepared_weights_are_kept_in_scope_never_stale_and_dropped_after() {
        use crate::ops::prepared::{kept_entries, with_prepared_weights};
        // layer4 on 32 px tiles: 3×3 over 1×1 maps, the small-map route.
        let (batch, c_in, c_out) = (3, 16, 32);
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let g = Conv2dGeometry::new(
            &[batch, c_in, 1, 1],
            &[c_out, c_in, 3, 3],
            &[batch, c_out, 1, 1],
            &options,
        )
        .unwrap();
        assert!(conv2d_dense::applies(&g));
        let x = tensor(&[batch, c_in, 1, 1], 11);
        let mut w = tensor(&[c_out, c_in, 3, 3], 12);
        let run = |w: &FlexTensor| values(conv2d_forward(&x, w, None, &options).unwrap());
        let naive = |w: &FlexTensor| {
            let (xv, wv) = (values(x.clone()), values(w.clone()));
            naive_forward(&xv, &wv, &vec![0.0; c_out], &g)
        };
        let close = |got: &[f32], want: &[f64]| {
            for (a, b) in got.iter().zip(want) {
                assert!(
                    (*a as f64 - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{a} vs {b}"
                );
            }
        };
        let unscoped = run(&w);
        close(&unscoped, &naive(&w));
        assert_eq!(kept_entries(), 0);
        with_prepared_weights(|| {
            let first = run(&w);
            assert_eq!(kept_entries(), 1);
            // The kept copy holds the storage: the weight is shared now.
            assert!(!w.is_unique());
            assert_eq!(run(&w), first, "a kept copy gives the same bits");
            assert_eq!(first, unscoped, "inside and outside a scope alike");
            assert_eq!(kept_entries(), 1, "the second call reused the copy");
            // An in-place update inside the scope copies the storage first (it is shared), so
            // the kept copy cannot go stale: the next call prepares the new weights.
            w.storage_mut::<f32>()[4] += 0.5;
            let updated = run(&w);
            close(&updated, &naive(&w));
            assert_ne!(updated, first);
            assert_eq!(kept_entries(), 2);
            // Nested scopes keep the entries until the outermost ends.
            with_prepared_weights(|| assert_eq!(run(&w), updated));
            assert_eq!(kept_entries(), 2);
        });
        assert_eq!(kept_entries(), 0);
        assert!(w.is_unique(), "leaving the scope released the storage");
        // A weight that is a strided view is prepared per call, never kept.
        with_prepared_weights(|| {
            let t = w.transpose(2, 3);
            assert!(!t.is_contiguous());
            close(&run(&t), &naive(&t.to_contiguous()));
            assert_eq!(kept_entries(), 0);
        });
    }

    #[test]
    fn forward_covers_many_channels_and_keeps_fast_paths() {
        // Many channels: the gemm forward; 5 × 32² positions: one element per chunk.
        check(5, 8, 20, [32, 32], [3, 3], [1, 1], [(1, 1), (1, 1)], [1, 1]);
        check(3, 6, 32, [11, 11], [7, 7], [3, 3], [(1, 1), (1, 1)], [1, 1]);
        // Few channels and 1×1: burn-flex's own paths (asserted inside `check`).
        check(2, 3, 4, [6, 6], [3, 3], [1, 1], [(1, 1), (1, 1)], [1, 1]);
        check(2, 8, 8, [5, 5], [1, 1], [1, 1], [(0, 0), (0, 0)], [1, 1]);
    }

    #[test]
    fn unsupported_shapes_return_none() {
        let x = tensor(&[2, 4, 5, 5], 1);
        let w = tensor(&[4, 2, 3, 3], 2);
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 2);
        let dy = Flex::conv2d(x.clone(), w.clone(), None, options.clone());
        assert!(conv2d_weight_backward(&x, &w, &dy, &options).is_none());
        assert!(conv2d_x_backward(&x, &w, &dy, &options).is_none());
        assert!(conv2d_forward(&x, &w, None, &options).is_none());
        // An output gradient whose extent does not match the options.
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let w = tensor(&[3, 4, 3, 3], 2);
        let dy = tensor(&[2, 3, 4, 5], 3);
        assert!(conv2d_weight_backward(&x, &w, &dy, &options).is_none());
        assert!(conv2d_x_backward(&x, &w, &dy, &options).is_none());
    }

    #[test]
    fn weight_grad_repeats_bit_for_bit() {
        let x = tensor(&[7, 5, 12, 12], 4);
        let w = tensor(&[6, 5, 3, 3], 5);
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let dy = tensor(&[7, 6, 12, 12], 6);
        let a = values(conv2d_weight_backward(&x, &w, &dy, &options).unwrap());
        let b = values(conv2d_weight_backward(&x, &w, &dy, &options).unwrap());
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }

    /// im2col against its definition, NaN-prefilled so that an element left unwritten shows;
    /// the stride-1 "same width" shapes take the one-copy-per-tap route (dilation, asymmetric
    /// and vertical-only padding, maps narrower than the kernel), the others the row loop.
    #[test]
    fn im2col_matches_definition() {
        let cases: &[(
            [usize; 2],
            [usize; 2],
            [usize; 2],
            [(usize, usize); 2],
            [usize; 2],
        )] = &[
            ([8, 8], [3, 3], [1, 1], [(1, 1), (1, 1)], [1, 1]),
            ([4, 4], [3, 3], [1, 1], [(1, 1), (1, 1)], [1, 1]),
            ([1, 1], [3, 3], [1, 1], [(1, 1), (1, 1)], [1, 1]),
            ([2, 2], [3, 3], [1, 1], [(1, 1), (1, 1)], [1, 1]),
            ([5, 7], [3, 3], [1, 1], [(0, 2), (2, 0)], [1, 1]),
            ([6, 5], [3, 3], [1, 1], [(3, 1), (2, 2)], [2, 2]),
            ([6, 3], [5, 1], [1, 1], [(0, 0), (0, 0)], [1, 1]),
            ([3, 2], [1, 5], [1, 1], [(4, 4), (2, 2)], [1, 1]),
            ([7, 6], [3, 3], [1, 1], [(0, 0), (1, 1)], [1, 1]),
            // Larger planes, as at 256 px tiles.
            ([40, 40], [3, 3], [1, 1], [(1, 1), (1, 1)], [1, 1]),
            ([33, 35], [3, 3], [1, 1], [(0, 2), (1, 1)], [2, 2]),
            ([36, 30], [5, 3], [1, 1], [(4, 0), (1, 1)], [1, 1]),
            // Strided, or not the same width, on planes beyond GATHER_PLANE: the row loop.
            ([140, 140], [3, 3], [2, 2], [(1, 1), (1, 1)], [1, 1]),
            ([70, 140], [3, 3], [1, 1], [(0, 0), (0, 0)], [1, 1]),
            // Not the same width, or strided, or at most 16 positions: the index table.
            ([8, 8], [3, 3], [2, 2], [(1, 1), (1, 1)], [1, 1]),
            ([8, 8], [3, 3], [1, 1], [(0, 0), (0, 0)], [1, 1]),
            ([9, 8], [3, 3], [2, 1], [(1, 1), (1, 1)], [1, 1]),
        ];
        for &(hw, k, stride, padding, dilation) in cases {
            let c_in = 2;
            let options = ConvOptions::new_with_padding(stride, padding, dilation, 1);
            let x = tensor(&[1, c_in, hw[0], hw[1]], 5);
            let out = |i: usize| {
                (hw[i] + padding[i].0 + padding[i].1 - dilation[i] * (k[i] - 1) - 1) / stride[i] + 1
            };
            let (oh_n, ow_n) = (out(0), out(1));
            let g = Conv2dGeometry::new(
                &[1, c_in, hw[0], hw[1]],
                &[1, c_in, k[0], k[1]],
                &[1, 1, oh_n, ow_n],
                &options,
            )
            .unwrap_or_else(|| panic!("{hw:?} k {k:?} s {stride:?} p {padding:?}: unsupported"));
            let xs = x.storage::<f32>();
            let ld = oh_n * ow_n + 3;
            let mut col = vec![f32::NAN; c_in * k[0] * k[1] * ld];
            Im2col::new(&g).fill(xs, &mut col, ld, 2);
            let mut row = 0;
            for ci in 0..c_in {
                for kh in 0..k[0] {
                    for kw in 0..k[1] {
                        for oh in 0..oh_n {
                            for ow in 0..ow_n {
                                let ih = (oh * stride[0] + kh * dilation[0]) as isize
                                    - padding[0].0 as isize;
                                let iw = (ow * stride[1] + kw * dilation[1]) as isize
                                    - padding[1].0 as isize;
                                let inside = (0..hw[0] as isize).contains(&ih)
                                    && (0..hw[1] as isize).contains(&iw);
                                let want = if inside {
                                    xs[(ci * hw[0] + ih as usize) * hw[1] + iw as usize]
                                } else {
                                    0.0
                                };
                                let got = col[row * ld + 2 + oh * ow_n + ow];
                                assert_eq!(
                                    got.to_bits(),
                                    want.to_bits(),
                                    "{hw:?} k {k:?} s {stride:?} p {padding:?} d {dilation:?}: tap ({ci},{kh},{kw}) at ({oh},{ow})"
                                );
                            }
                        }
                        // The neighbours' columns are left alone.
                        assert!(col[row * ld].is_nan() && col[row * ld + 1].is_nan());
                        row += 1;
                    }
                }
            }
        }
    }

    #[test]
    fn valid_range_bounds() {
        // o·2 - 1 in 0..5 for o in 0..4: o = 1, 2 (1, 3); o = 3 gives 5.
        assert_eq!(valid_range(-1, 2, 5, 4), (1, 3));
        assert_eq!(valid_range(0, 1, 3, 5), (0, 3));
        assert_eq!(valid_range(4, 1, 3, 5), (0, 0));
        assert_eq!(valid_range(-7, 3, 2, 3), (3, 3));
    }
}
