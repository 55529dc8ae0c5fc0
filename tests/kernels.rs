//! The kernels the libtorch backend routes to libtorch (vendor/burn-tch/PATCH.md) and the Adam
//! update, against hand-computed values and against other routes to the same result. They run on
//! the default backend in CI and, with `--features tch`, on libtorch's native kernels.

use crate::common;

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use opencarbon::train::adam::Adam;
use opencarbon::train::TrainConfig;

#[derive(Module, Debug)]
struct Weights {
    w: Param<Tensor<1>>,
}

#[derive(Module, Debug)]
struct Mlp {
    a: Param<Tensor<2>>,
    b: Param<Tensor<2>>,
    bias: Param<Tensor<1>>,
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .expect("float tensor")
}

fn autodiff() -> Device {
    common::device().autodiff()
}

/// max |a − b| / max |b|
fn relative_error(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

fn train_config() -> TrainConfig {
    TrainConfig {
        lr: 0.01,
        weight_decay: 0.1,
        adam_epsilon: 1e-8,
        ..Default::default()
    }
}

/// Three Adam steps on loss = Σ c ⊙ w (gradient c, constant), with coupled weight decay, against
/// torch's update rule written out in f64.
#[test]
fn adam_follows_torchs_update_rule() {
    let device = autodiff();
    let w0 = [0.5f64, -1.0, 2.0, 0.0];
    let c = [1.0f64, 0.25, -3.0, 1e-3];
    let config = train_config();
    let mut model = Weights {
        w: Param::from_tensor(Tensor::<1>::from_data(
            TensorData::new(w0.map(|v| v as f32).to_vec(), [4]),
            &device,
        )),
    };
    let constant =
        Tensor::<1>::from_data(TensorData::new(c.map(|v| v as f32).to_vec(), [4]), &device);
    let mut adam = Adam::new(&config);
    let (beta1, beta2, eps) = (0.9f64, 0.999f64, config.adam_epsilon);
    let (mut w, mut m, mut v) = (w0, [0.0f64; 4], [0.0f64; 4]);
    for step in 1..=3 {
        let loss = (model.w.val() * constant.clone()).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = adam.step(config.lr, model, grads);
        for i in 0..4 {
            let g = c[i] + config.weight_decay * w[i];
            m[i] = beta1 * m[i] + (1.0 - beta1) * g;
            v[i] = beta2 * v[i] + (1.0 - beta2) * g * g;
            let m_hat = m[i] / (1.0 - beta1.powi(step));
            let v_hat = v[i] / (1.0 - beta2.powi(step));
            w[i] -= config.lr * m_hat / (v_hat.sqrt() + eps);
        }
        let ours = values(model.w.val());
        let e = relative_error(&ours, &w);
        assert!(
            e < 1e-6,
            "step {step} ({} Adam): {ours:?} vs {w:?}",
            adam.kind()
        );
    }
    println!(
        "Adam ({}) after 3 steps: {:?}",
        adam.kind(),
        values(model.w.val())
    );
}

#[derive(Module, Debug)]
struct Two {
    early: Param<Tensor<1>>,
    late: Param<Tensor<1>>,
}

/// torch keeps a step count per parameter, started at its first gradient: a parameter first used
/// at step 3 (a contrastive head, say) gets the bias correction of its own first step.
#[test]
fn adam_counts_steps_per_parameter() {
    let device = autodiff();
    let config = train_config();
    let mut model = Two {
        early: Param::from_tensor(Tensor::<1>::from_floats([0.5, -0.25], &device)),
        late: Param::from_tensor(Tensor::<1>::from_floats([1.5, 2.0], &device)),
    };
    let mut adam = Adam::new(&config);
    let (beta1, beta2, eps, lr, wd) = (0.9f64, 0.999f64, 1e-8, config.lr, config.weight_decay);
    // Gradient of Σw is 1 for every element; weight decay adds λw.
    let torch_step = |w: &mut f64, m: &mut f64, v: &mut f64, t: i32| {
        let g = 1.0 + wd * *w;
        *m = beta1 * *m + (1.0 - beta1) * g;
        *v = beta2 * *v + (1.0 - beta2) * g * g;
        *w -= lr * (*m / (1.0 - beta1.powi(t))) / ((*v / (1.0 - beta2.powi(t))).sqrt() + eps);
    };
    let mut early = [(0.5f64, 0.0, 0.0), (-0.25, 0.0, 0.0)];
    let mut late = [(1.5f64, 0.0, 0.0), (2.0, 0.0, 0.0)];
    for step in 1..=4 {
        let loss = if step < 3 {
            model.early.val().sum()
        } else {
            model.early.val().sum() + model.late.val().sum()
        };
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = adam.step(lr, model, grads);
        for (w, m, v) in early.iter_mut() {
            torch_step(w, m, v, step);
        }
        if step >= 3 {
            for (w, m, v) in late.iter_mut() {
                torch_step(w, m, v, step - 2);
            }
        }
    }
    let expected_early: Vec<f64> = early.iter().map(|e| e.0).collect();
    let expected_late: Vec<f64> = late.iter().map(|e| e.0).collect();
    let e_early = relative_error(&values(model.early.val()), &expected_early);
    let e_late = relative_error(&values(model.late.val()), &expected_late);
    assert!(
        e_early < 1e-6 && e_late < 1e-6,
        "{} Adam: early {:?} vs {expected_early:?}, late {:?} vs {expected_late:?}",
        adam.kind(),
        values(model.early.val()),
        values(model.late.val())
    );
}

/// An update must not write through to a copy of the model kept elsewhere (the best checkpoint):
/// libtorch's fused kernel updates in place, so it must work on fresh storage.
#[test]
fn adam_leaves_model_clones_untouched() {
    let device = autodiff();
    let model = Weights {
        w: Param::from_tensor(Tensor::<1>::from_floats([1.0, 2.0, 3.0], &device)),
    };
    let kept = model.clone();
    let before = values(kept.w.val());
    let loss = model.w.val().sum();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let mut adam = Adam::new(&train_config());
    let model = adam.step(0.1, model, grads);
    assert_eq!(values(kept.w.val()), before, "the kept clone changed");
    assert_ne!(values(model.w.val()), before, "the model did not change");
}

/// A deterministic `rows × cols` matrix (not from the device RNG, which tests running in
/// parallel share).
fn matrix(rows: usize, cols: usize, phase: f32, device: &Device) -> Tensor<2> {
    let values: Vec<f32> = (0..rows * cols)
        .map(|i| (i as f32 * 0.37 + phase).sin())
        .collect();
    Tensor::from_data(TensorData::new(values, [rows, cols]), device)
}

fn mlp(device: &Device) -> Mlp {
    Mlp {
        a: Param::from_tensor(matrix(6, 8, 0.1, device)),
        b: Param::from_tensor(matrix(3, 8, 0.2, device)),
        bias: Param::from_tensor(matrix(1, 3, 0.3, device).reshape([3])),
    }
}

fn mlp_loss(model: &Mlp, x: Tensor<2>) -> Tensor<1> {
    let hidden = x.matmul(model.a.val()).tanh();
    // `b` enters transposed, so its gradient arrives as a transposed (non-contiguous) view.
    let out = hidden.matmul(model.b.val().transpose()) + model.bias.val().unsqueeze::<2>();
    (out.clone() * out).sum()
}

/// The fused update (libtorch's kernel, or flex's single pass) and burn's per-parameter update
/// follow the same trajectory.
#[test]
fn fused_and_per_parameter_adam_agree_over_steps() {
    let device = autodiff();
    let x = matrix(5, 6, 0.4, &device);
    let config = train_config();
    let run = |fused: bool| {
        let mut adam = Adam::with_fused(&config, fused);
        let mut model = mlp(&device);
        for _ in 0..5 {
            let grads = GradientsParams::from_grads(mlp_loss(&model, x.clone()).backward(), &model);
            model = adam.step(config.lr, model, grads);
        }
        (adam.kind(), model)
    };
    let (fused_kind, fused) = run(true);
    let (burn_kind, burn) = run(false);
    assert_eq!(burn_kind, "burn");
    assert_eq!(fused_kind, "fused", "both backends have a fused update");
    for (name, a, b) in [
        ("a", values(fused.a.val()), values(burn.a.val())),
        ("b", values(fused.b.val()), values(burn.b.val())),
    ] {
        let e = relative_error(&a, &b);
        assert!(
            e < 1e-5,
            "{name}: {fused_kind} vs burn Adam differ by {e:.2e}"
        );
    }
    let e = relative_error(&values(fused.bias.val()), &values(burn.bias.val()));
    assert!(
        e < 1e-5,
        "bias: {fused_kind} vs burn Adam differ by {e:.2e}"
    );
}

/// Gradients of a convolution with asymmetric padding, stride, dilation and groups equal those of
/// the same convolution on an explicitly padded input (a different route through the backward:
/// the pad's gradient, then a symmetric convolution's).
#[test]
fn convolution_gradients_with_asymmetric_padding() {
    let device = autodiff();
    device.seed(3);
    let normal = Distribution::Normal(0.0, 1.0);
    let x = Tensor::<4>::random([2, 4, 9, 11], normal, &device).require_grad();
    let weight = Tensor::<4>::random([6, 2, 3, 3], normal, &device).require_grad();
    // H: (9 + 3 − 3) / 2 + 1 = 5; W: (11 + 3 − 5) / 2 + 1 = 5 (kernel 3 dilated by 2 spans 5).
    let output_grad = Tensor::<4>::random([2, 6, 5, 5], normal, &device);
    let asymmetric = ConvOptions {
        stride: [2, 2],
        padding: [(1, 2), (0, 3)],
        dilation: [1, 2],
        groups: 2,
    };
    let symmetric = ConvOptions {
        stride: [2, 2],
        padding: [(0, 0), (0, 0)],
        dilation: [1, 2],
        groups: 2,
    };
    let direct = conv2d(x.clone(), weight.clone(), None, asymmetric);
    assert_eq!(direct.dims(), [2, 6, 5, 5]);
    let grads = (direct * output_grad.clone()).sum().backward();
    let (x_direct, w_direct) = (
        x.grad(&grads).expect("input gradient"),
        weight.grad(&grads).expect("weight gradient"),
    );
    let x2 = x.clone().detach().require_grad();
    let w2 = weight.clone().detach().require_grad();
    let padded = x2.clone().pad([(1, 2), (0, 3)], 0.0);
    let reference = conv2d(padded, w2.clone(), None, symmetric);
    let grads = (reference * output_grad).sum().backward();
    let (x_ref, w_ref) = (
        x2.grad(&grads).expect("input gradient"),
        w2.grad(&grads).expect("weight gradient"),
    );
    let ex = relative_error(&values(x_direct), &values(x_ref));
    let ew = relative_error(&values(w_direct), &values(w_ref));
    println!("asymmetric convolution gradients: input {ex:.2e}, weight {ew:.2e}");
    assert!(ex < 1e-5 && ew < 1e-5, "input {ex:.2e}, weight {ew:.2e}");
}
