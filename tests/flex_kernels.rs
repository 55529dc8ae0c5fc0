//! The convolution kernels of the vendored burn-flex (vendor/burn-flex/PATCH.md) against the
//! routes they replace, which the patched backend still carries as its fallbacks: burn-backend's
//! generic gradient compositions (`conv2d_weight_backward_generic`, `conv2d_x_backward_generic`:
//! the weight gradient as a convolution over batch-transposed tensors, the input gradient as a
//! transposed convolution) and burn-flex's own forward (`conv2d_forward_upstream`).
//!
//! Tolerance: both routes run in f32 and sum the same products in different orders; each is
//! compared with the old route run in f64 (the reference), as the largest absolute difference
//! over the largest reference magnitude (`relative_error`). Rounding grows with the number of
//! summed terms K (up to a few thousand here), about √K·2⁻²⁴ relative; the bound is 1e-5 for
//! both routes, well above what either reaches (the printed errors are ~1e-7) and far below what
//! any indexing mistake gives (one misplaced term is ~1e-1).

use burn::tensor::ops::ConvOptions;
use burn::tensor::{Distribution, Tensor, TensorData};
use burn_flex::ops::conv2d_gemm::{
    conv2d_forward, conv2d_forward_upstream, conv2d_weight_backward,
    conv2d_weight_backward_generic, conv2d_x_backward, conv2d_x_backward_generic,
};
use burn_flex::FlexTensor;
use proptest::prelude::*;

use crate::common;

const TOLERANCE: f64 = 1e-5;

/// Deterministic values in [-1, 1) (splitmix64), so a failing case reproduces from its shape.
pub(crate) fn random(shape: &[usize], seed: u64) -> FlexTensor {
    let n: usize = shape.iter().product();
    let mut state = seed;
    let values: Vec<f32> = (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    FlexTensor::from_data(TensorData::new(values, shape.to_vec()))
}

pub(crate) fn to_f64(t: &FlexTensor) -> FlexTensor {
    FlexTensor::from_data(t.clone().into_data().convert::<f64>())
}

pub(crate) fn values(t: FlexTensor) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .try_into_vec::<f64>()
        .expect("float tensor")
}

pub(crate) fn bits(t: FlexTensor) -> Vec<u32> {
    t.into_data()
        .try_into_vec::<f32>()
        .expect("f32 tensor")
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// max |a − b| / max |b|
pub(crate) fn relative_error(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// One convolution's inputs: x, weight and an output gradient of the forward output's shape.
struct Case {
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: ConvOptions<2>,
}

impl Case {
    fn new(
        batch: usize,
        [c_in, c_out]: [usize; 2],
        [h, w]: [usize; 2],
        kernel: [usize; 2],
        options: ConvOptions<2>,
        seed: u64,
    ) -> Self {
        let x = random(&[batch, c_in, h, w], seed);
        let weight = random(&[c_out, c_in, kernel[0], kernel[1]], seed + 1);
        let out_h = (h + options.padding[0].0 + options.padding[0].1
            - options.dilation[0] * (kernel[0] - 1)
            - 1)
            / options.stride[0]
            + 1;
        let out_w = (w + options.padding[1].0 + options.padding[1].1
            - options.dilation[1] * (kernel[1] - 1)
            - 1)
            / options.stride[1]
            + 1;
        let output_grad = random(&[batch, c_out, out_h, out_w], seed + 2);
        Self {
            x,
            weight,
            output_grad,
            options,
        }
    }

    /// Relative errors of the gemm forward (with a bias) and of burn-flex's own forward in f32
    /// against the latter in f64; `None` where burn-flex keeps its own path for this shape.
    fn forward_errors(&self) -> Option<[f64; 2]> {
        let (x, w, o) = (&self.x, &self.weight, &self.options);
        let bias = random(&[w.layout().shape()[0]], 77);
        let y = conv2d_forward(x, w, Some(&bias), o)?;
        assert_eq!(y.layout().shape(), self.output_grad.layout().shape());
        let upstream = conv2d_forward_upstream(x.clone(), w.clone(), Some(bias.clone()), o.clone());
        let reference = values(conv2d_forward_upstream(
            to_f64(x),
            to_f64(w),
            Some(to_f64(&bias)),
            o.clone(),
        ));
        Some([
            relative_error(&values(y), &reference),
            relative_error(&values(upstream), &reference),
        ])
    }

    /// (weight, input) relative errors of the kernels and of the generic route in f32, both
    /// against the generic route in f64.
    fn errors(&self) -> ([f64; 2], [f64; 2]) {
        let (x, w, dy, o) = (&self.x, &self.weight, &self.output_grad, &self.options);
        let dw = conv2d_weight_backward(x, w, dy, o).expect("the kernel covers groups = 1");
        let dx = conv2d_x_backward(x, w, dy, o).expect("the kernel covers groups = 1");
        let dw_generic =
            conv2d_weight_backward_generic(x.clone(), w.clone(), dy.clone(), o.clone());
        let dx_generic = conv2d_x_backward_generic(x.clone(), w.clone(), dy.clone(), o.clone());
        let (x64, w64, dy64) = (to_f64(x), to_f64(w), to_f64(dy));
        let dw_ref = values(conv2d_weight_backward_generic(
            x64.clone(),
            w64.clone(),
            dy64.clone(),
            o.clone(),
        ));
        let dx_ref = values(conv2d_x_backward_generic(x64, w64, dy64, o.clone()));
        assert_eq!(dw.layout().shape(), w.layout().shape());
        assert_eq!(dx.layout().shape(), x.layout().shape());
        (
            [
                relative_error(&values(dw), &dw_ref),
                relative_error(&values(dx), &dx_ref),
            ],
            [
                relative_error(&values(dw_generic), &dw_ref),
                relative_error(&values(dx_generic), &dx_ref),
            ],
        )
    }

    fn assert_close(&self, label: &str) {
        match self.forward_errors() {
            Some([k, u]) => {
                println!("{label}: forward kernel {k:.1e}, burn-flex's {u:.1e}");
                assert!(
                    k <= TOLERANCE && u <= TOLERANCE,
                    "{label}: forward {k:.2e}, {u:.2e}"
                );
            }
            None => println!("{label}: forward on burn-flex's own path"),
        }
        let ([kw, kx], [gw, gx]) = self.errors();
        println!(
            "{label}: kernel weight {kw:.1e} input {kx:.1e}; generic weight {gw:.1e} input {gx:.1e}"
        );
        assert!(
            kw <= TOLERANCE && kx <= TOLERANCE,
            "{label}: kernel weight {kw:.2e}, input {kx:.2e}"
        );
        // The reference itself is sound: the generic route in f32 agrees with it too.
        assert!(
            gw <= TOLERANCE && gx <= TOLERANCE,
            "{label}: generic weight {gw:.2e}, input {gx:.2e}"
        );
    }
}

fn options(stride: usize, padding: usize) -> ConvOptions<2> {
    ConvOptions::new([stride, stride], [padding, padding], [1, 1], 1)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random shapes: strides 1–2, padding 0–2 per side (asymmetric too), dilation 1–2,
    /// kernels 1–3, batch 1–4, channels 1–8. The forward is compared where the gemm path
    /// takes it (burn-flex keeps ≤ 4 input and ≤ 16 output channels, and unpadded 1×1).
    #[test]
    fn gradients_match_the_generic_route(
        batch in 1usize..=4,
        c_in in 1usize..=8,
        c_out in 1usize..=8,
        h in 1usize..=12,
        w in 1usize..=12,
        kernel in (1usize..=3, 1usize..=3),
        stride in (1usize..=2, 1usize..=2),
        padding in ((0usize..=2, 0usize..=2), (0usize..=2, 0usize..=2)),
        dilation in (1usize..=2, 1usize..=2),
        seed in 0u64..1_000,
    ) {
        let (kernel, stride, dilation) = ([kernel.0, kernel.1], [stride.0, stride.1], [dilation.0, dilation.1]);
        let padding = [padding.0, padding.1];
        // The padded input must hold the dilated kernel.
        for (axis, size) in [h, w].into_iter().enumerate() {
            prop_assume!(size + padding[axis].0 + padding[axis].1 > dilation[axis] * (kernel[axis] - 1));
        }
        let options = ConvOptions::new_with_padding(stride, padding, dilation, 1);
        let case = Case::new(batch, [c_in, c_out], [h, w], kernel, options, seed);
        let ([kw, kx], [gw, gx]) = case.errors();
        if let Some([k, u]) = case.forward_errors() {
            prop_assert!(k <= TOLERANCE && u <= TOLERANCE, "forward {:.2e}, burn-flex's {:.2e}", k, u);
        }
        prop_assert!(kw <= TOLERANCE && kx <= TOLERANCE, "kernel weight {:.2e}, input {:.2e}", kw, kx);
        prop_assert!(gw <= TOLERANCE && gx <= TOLERANCE, "generic weight {:.2e}, input {:.2e}", gw, gx);
    }
}

/// The network's convolutions at the quickstart's sizes (32 px tiles, 6 POI categories,
/// embedding 32, neighbourhood 3×3), batch 1, and the first layers at the paper's 256 px.
#[test]
fn gradients_match_at_the_networks_layer_sizes() {
    // (label, c_in, c_out, side, kernel, stride, padding)
    let layers: [(&str, usize, usize, usize, usize, usize, usize); 17] = [
        ("resnet conv1", 3, 64, 32, 7, 2, 3),
        ("resnet layer1", 64, 64, 8, 3, 1, 1),
        ("resnet layer2 conv1", 64, 128, 8, 3, 2, 1),
        ("resnet layer2 downsample", 64, 128, 8, 1, 2, 0),
        ("resnet layer2 conv2", 128, 128, 4, 3, 1, 1),
        ("resnet layer3 conv1", 128, 256, 4, 3, 2, 1),
        ("resnet layer3 conv2", 256, 256, 2, 3, 1, 1),
        ("resnet layer4 conv1", 256, 512, 2, 3, 2, 1),
        ("resnet layer4 conv2", 512, 512, 1, 3, 1, 1),
        ("poi conv1", 6, 32, 32, 7, 3, 3),
        ("poi conv2", 32, 32, 11, 7, 3, 1),
        ("poi conv3", 32, 1, 3, 3, 3, 1),
        ("se fc1", 32, 8, 1, 1, 1, 0),
        ("neighbourhood conv1", 32, 64, 3, 3, 1, 1),
        ("neighbourhood conv2", 64, 128, 3, 3, 1, 1),
        ("resnet conv1 at 256 px", 3, 64, 256, 7, 2, 3),
        ("poi conv1 at 256 px", 15, 32, 256, 7, 3, 3),
    ];
    for (i, &(label, c_in, c_out, side, k, stride, padding)) in layers.iter().enumerate() {
        Case::new(
            1,
            [c_in, c_out],
            [side, side],
            [k, k],
            options(stride, padding),
            100 + i as u64,
        )
        .assert_close(label);
    }
    // A training batch at the quickstart size, for the batch-chunked paths.
    Case::new(32, [64, 64], [8, 8], [3, 3], options(1, 1), 7).assert_close("layer1, batch 32");
    Case::new(32, [6, 32], [32, 32], [7, 7], options(3, 3), 8).assert_close("poi conv1, batch 32");
    // The maps smaller than their kernel (one gemm per input-output link over the whole batch).
    Case::new(32, [256, 256], [2, 2], [3, 3], options(1, 1), 9).assert_close("layer3, batch 32");
    Case::new(32, [256, 512], [2, 2], [3, 3], options(2, 1), 10)
        .assert_close("layer4 conv1, batch 32");
    Case::new(32, [512, 512], [1, 1], [3, 3], options(1, 1), 11).assert_close("layer4, batch 32");
}

/// Grouped convolutions are not covered by the kernels: they say so, and the backend runs the
/// routes it ran before.
#[test]
fn grouped_convolutions_fall_back_to_the_generic_route() {
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 2);
    let case = Case::new(2, [4, 6], [5, 5], [3, 3], options.clone(), 11);
    let weight = random(&[6, 2, 3, 3], 12);
    assert!(conv2d_weight_backward(&case.x, &weight, &case.output_grad, &options).is_none());
    assert!(conv2d_x_backward(&case.x, &weight, &case.output_grad, &options).is_none());
    assert!(conv2d_forward(&case.x, &weight, None, &options).is_none());
}

/// The same inputs give the same bits: twice in a row, and with 1, 2 or 3 threads (the batch
/// chunks, the links and their summation order depend on the shapes only).
#[test]
fn gradients_repeat_bit_for_bit_whatever_the_thread_count() {
    // 3×3, batch 7 at 12×12 (several chunks, several lanes) and the POI conv1 at batch 32.
    let cases = [
        Case::new(7, [5, 6], [12, 12], [3, 3], options(1, 1), 21),
        Case::new(32, [6, 32], [32, 32], [7, 7], options(3, 3), 22),
        Case::new(32, [64, 128], [8, 8], [3, 3], options(2, 1), 23),
        // One gemm per link, large enough for gemm's own threads.
        Case::new(96, [256, 256], [2, 2], [3, 3], options(1, 1), 24),
        Case::new(96, [512, 512], [1, 1], [3, 3], options(1, 1), 25),
    ];
    for case in &cases {
        let run = || {
            let (x, w, dy, o) = (&case.x, &case.weight, &case.output_grad, &case.options);
            (
                bits(conv2d_weight_backward(x, w, dy, o).expect("kernel")),
                bits(conv2d_x_backward(x, w, dy, o).expect("kernel")),
                bits(conv2d_forward(x, w, None, o).expect("kernel")),
            )
        };
        assert_same_bits_whatever_the_thread_count(run);
    }
}

/// `run` gives the same result twice in a row, and in rayon pools of 1, 2 and 3 threads.
pub(crate) fn assert_same_bits_whatever_the_thread_count<R: PartialEq + std::fmt::Debug + Send>(
    run: impl Fn() -> R + Sync,
) {
    let first = run();
    assert_eq!(first, run(), "second run");
    for threads in 1..=3 {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        assert_eq!(first, pool.install(&run), "{threads} thread(s)");
    }
}

/// burn's autodiff on the flex device reaches the kernels: the output and the gradients of a
/// convolution through `Tensor::backward` are the kernels' bits, and a second run repeats them.
#[test]
fn autodiff_on_flex_uses_the_kernels() {
    if std::env::var("OPENCARBON_CONV_GRAD").is_ok_and(|v| v.trim() == "burn") {
        println!("OPENCARBON_CONV_GRAD=burn: the generic route is selected, nothing to check");
        return;
    }
    let device = common::device().autodiff();
    device.seed(5);
    let normal = Distribution::Normal(0.0, 1.0);
    let options = ConvOptions::new([2, 1], [1, 2], [1, 2], 1);
    let x = Tensor::<4>::random([3, 6, 9, 10], normal, &device);
    let weight = Tensor::<4>::random([5, 6, 3, 3], normal, &device);
    let run = || {
        let (x, w) = (
            x.clone().detach().require_grad(),
            weight.clone().detach().require_grad(),
        );
        let y = burn::tensor::module::conv2d(x.clone(), w.clone(), None, options.clone());
        let dims = y.dims();
        // d(Σ y ⊙ c)/dy = c: a fixed output gradient.
        let c = Tensor::<4>::from_data(random(&dims, 31).into_data(), &device);
        let y_data = y.clone().into_data();
        let grads = (y * c.clone()).sum().backward();
        (
            x.grad(&grads).expect("input gradient").into_data(),
            w.grad(&grads).expect("weight gradient").into_data(),
            c.into_data(),
            y_data,
        )
    };
    let (dx, dw, c, y) = run();
    let (dx2, dw2, _, y2) = run();
    assert_eq!(dx.as_bytes(), dx2.as_bytes());
    assert_eq!(dw.as_bytes(), dw2.as_bytes());
    assert_eq!(y.as_bytes(), y2.as_bytes());
    let flex = |d: TensorData| FlexTensor::from_data(d);
    let (fx, fw, fc) = (flex(x.into_data()), flex(weight.into_data()), flex(c));
    let kernel_y = conv2d_forward(&fx, &fw, None, &options).expect("kernel");
    assert_eq!(y.as_bytes(), kernel_y.into_data().as_bytes());
    let kernel_dw = conv2d_weight_backward(&fx, &fw, &fc, &options).expect("kernel");
    let kernel_dx = conv2d_x_backward(&fx, &fw, &fc, &options).expect("kernel");
    assert_eq!(dw.as_bytes(), kernel_dw.into_data().as_bytes());
    assert_eq!(dx.as_bytes(), kernel_dx.into_data().as_bytes());
    // And the generic route differs only by rounding.
    let generic = values(conv2d_weight_backward_generic(fx, fw, fc, options));
    let got = dw.convert::<f64>().try_into_vec::<f64>().expect("f64");
    assert!(relative_error(&got, &generic) <= TOLERANCE);
}

/// The convolution kernels' scratch buffers (vendor/burn-flex/src/ops/scratch.rs): a dropped
/// buffer is handed out again on its thread, and each thread keeps a bounded number and size.
#[test]
fn scratch_buffers_are_reused_and_the_pool_stays_bounded() {
    use burn_flex::ops::scratch::{scratch, PoolOf, KEPT, KEPT_BYTES};
    // A thread of its own: the pool starts empty whatever ran before on the test's thread.
    std::thread::spawn(|| {
        let first = scratch::<f32>(1000);
        let at = first.as_ptr();
        drop(first);
        let again = scratch::<f32>(500);
        assert_eq!(again.as_ptr(), at, "the kept buffer is handed out again");
        assert_eq!(again.len(), 500);
        let other = scratch::<f32>(100); // the pool is empty now: a new one
        assert_ne!(other.as_ptr(), at);
        drop((again, other));
        let many: Vec<_> = (0..KEPT + 3).map(|i| scratch::<f32>(10 + i)).collect();
        drop(many);
        assert_eq!(f32::scratch_pool(|pool| pool.len()), KEPT);
        let huge = scratch::<f64>(KEPT_BYTES / 8 + 1);
        drop(huge);
        assert_eq!(
            f64::scratch_pool(|pool| pool.len()),
            0,
            "over the byte bound: freed"
        );
    })
    .join()
    .expect("scratch checks");
}

/// Inference with the weights kept prepared between calls (`backend::with_prepared_weights`,
/// burn-flex PATCH.md item 8) gives the bits of inference without: ResNet-18 on 32 px tiles
/// (layer3 and layer4 take the small-map route) in eval mode, at the authors' batch of 32,
/// called several times in one scope as the authors' path does; the parameters are released
/// (unique again) when the scope ends.
#[test]
fn inference_with_prepared_weights_gives_the_same_bits() {
    use opencarbon::model::config::ImageEncoderConfig;
    use opencarbon::model::image_encoder::ImageEncoder;
    let device = common::device();
    device.seed(41);
    let encoder = ImageEncoder::new(32, ImageEncoderConfig::default(), &device);
    let batches: Vec<Tensor<4>> = (0..3)
        .map(|i| {
            let x = random(&[32, 3, 32, 32], 60 + i).into_data();
            Tensor::<4>::from_data(x, &device).abs() * 255.0
        })
        .collect();
    let run = || -> Vec<Vec<u8>> {
        batches
            .iter()
            .map(|x| encoder.forward(x.clone()).into_data().as_bytes().to_vec())
            .collect()
    };
    let plain = run();
    let kept = opencarbon::backend::with_prepared_weights(|| {
        let first = run();
        assert!(
            burn_flex::ops::prepared::kept_entries() > 0,
            "nothing was kept"
        );
        assert_eq!(first, run(), "a second pass on the kept copies");
        first
    });
    assert_eq!(burn_flex::ops::prepared::kept_entries(), 0);
    assert_eq!(plain, kept);
}
