//! The vendored burn-flex's fused BatchNorm (vendor/burn-flex/PATCH.md) against burn-backend's
//! compositions it replaces, which the patched backend keeps as its fallback
//! (`batch_norm_*_generic`): the fused kernels in f32 against the compositions in f64, as in
//! `flex_kernels` (largest difference over largest reference magnitude ≤ 1e-5; one misplaced
//! channel or a missing term gives ~1e-1).

use burn_flex::ops::batch_norm_fused::{
    backward, batch_norm_generic, batch_norm_train_backward_generic, batch_norm_train_generic,
    inference, train,
};
use burn_flex::FlexTensor;
use proptest::prelude::*;

use crate::flex_kernels::{
    assert_same_bits_whatever_the_thread_count, bits, random, relative_error, to_f64, values,
};

const TOLERANCE: f64 = 1e-5;
const EPSILON: f64 = 1e-5;

/// Activations with a per-channel offset and scale (so centring matters), γ around 1, β, and an
/// output gradient.
struct Case {
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    output_grad: FlexTensor,
}

impl Case {
    fn new(shape: &[usize], seed: u64) -> Self {
        let channels = shape[1];
        let per_channel: usize = shape[2..].iter().product();
        let raw = values(random(shape, seed));
        let x: Vec<f32> = raw
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let c = (i / per_channel) % channels;
                (*v * (1.0 + c as f64) + 3.0 * c as f64 - 2.0) as f32
            })
            .collect();
        let shift = |t: FlexTensor, by: f64| {
            let v: Vec<f32> = values(t).iter().map(|v| (v + by) as f32).collect();
            FlexTensor::from_data(burn::tensor::TensorData::new(v, vec![channels]))
        };
        Self {
            x: FlexTensor::from_data(burn::tensor::TensorData::new(x, shape.to_vec())),
            gamma: shift(random(&[channels], seed + 1), 1.5),
            beta: shift(random(&[channels], seed + 2), 0.0),
            output_grad: random(shape, seed + 3),
        }
    }

    /// Errors of the fused train forward (output, mean, variance), backward (x, γ, β) and
    /// inference forward against the compositions in f64.
    fn errors(&self) -> Vec<(&'static str, f64)> {
        let (y, mean, var) = train(&self.x, &self.gamma, &self.beta, EPSILON).expect("fused");
        let reference = batch_norm_train_generic(
            to_f64(&self.x),
            to_f64(&self.gamma),
            to_f64(&self.beta),
            EPSILON,
        );
        let (dx, dgamma, dbeta) = backward(
            &self.x,
            &self.gamma,
            &mean,
            &var,
            EPSILON,
            &self.output_grad,
        )
        .expect("fused");
        let reference_grads = batch_norm_train_backward_generic(
            to_f64(&self.x),
            to_f64(&self.gamma),
            reference.mean.clone(),
            reference.variance.clone(),
            EPSILON,
            to_f64(&self.output_grad),
        );
        let inferred =
            inference(&self.x, &self.gamma, &self.beta, &mean, &var, EPSILON).expect("fused");
        let reference_inferred = batch_norm_generic(
            to_f64(&self.x),
            to_f64(&self.gamma),
            to_f64(&self.beta),
            to_f64(&mean),
            to_f64(&var),
            EPSILON,
        );
        let e = |a: FlexTensor, b: FlexTensor| relative_error(&values(a), &values(b));
        // The input gradient cancels to ~0 where a channel has two values (or one): measure it
        // against the size of the terms it is made of, |γ·dy| / √(var + ε), instead.
        let term_scale = self.term_scale(&values(reference.variance.clone()));
        let e_dx = |a: FlexTensor, b: FlexTensor| {
            let (a, b) = (values(a), values(b));
            let largest = b.iter().fold(term_scale, |m, v| m.max(v.abs()));
            relative_error(&a, &b) * b.iter().fold(1e-30f64, |m, v| m.max(v.abs())) / largest
        };
        vec![
            ("output", e(y, reference.output)),
            ("mean", e(mean, reference.mean)),
            ("variance", e(var, reference.variance)),
            ("x gradient", e_dx(dx, reference_grads.x_grad)),
            ("gamma gradient", e(dgamma, reference_grads.gamma_grad)),
            ("beta gradient", e(dbeta, reference_grads.beta_grad)),
            ("inference output", e(inferred, reference_inferred)),
        ]
    }

    /// max over elements of |γ[c] · dy| / √(var[c] + ε).
    fn term_scale(&self, variance: &[f64]) -> f64 {
        let gamma = values(self.gamma.clone());
        let dy = values(self.output_grad.clone());
        let channels = gamma.len();
        let per_channel = dy.len() / channels / self.x.layout().shape()[0];
        dy.iter()
            .enumerate()
            .map(|(i, g)| {
                let c = (i / per_channel) % channels;
                (gamma[c] * g).abs() / (variance[c] + EPSILON).sqrt()
            })
            .fold(0.0, f64::max)
    }

    fn assert_close(&self, label: &str) {
        for (what, e) in self.errors() {
            assert!(e <= TOLERANCE, "{label}: {what} off by {e:.2e}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Ranks 2–4, batch 1–5, channels 1–6, spatial sides 1–7.
    #[test]
    fn batch_norm_matches_the_composition(
        batch in 1usize..=5,
        channels in 1usize..=6,
        spatial in proptest::collection::vec(1usize..=7, 0..=2),
        seed in 0u64..1_000,
    ) {
        let shape: Vec<usize> = [batch, channels].into_iter().chain(spatial).collect();
        for (what, e) in Case::new(&shape, seed).errors() {
            prop_assert!(e <= TOLERANCE, "{:?}: {} off by {:.2e}", shape, what, e);
        }
    }
}

/// The network's BatchNorms at the quickstart's sizes: every ResNet-18 stage at 32 px over a
/// step's ~170 tiles, and the neighbourhood encoder's.
#[test]
fn batch_norm_matches_at_the_networks_sizes() {
    for (i, shape) in [
        [170, 64, 16, 16],
        [170, 64, 8, 8],
        [170, 128, 4, 4],
        [170, 256, 2, 2],
        [170, 512, 1, 1],
        [32, 64, 3, 3],
    ]
    .iter()
    .enumerate()
    {
        Case::new(shape, 40 + i as u64).assert_close(&format!("{shape:?}"));
    }
}

/// The same inputs give the same bits twice and with 1, 2 or 3 threads (statistics are summed
/// per channel in a fixed order).
#[test]
fn batch_norm_repeats_bit_for_bit_whatever_the_thread_count() {
    let case = Case::new(&[64, 32, 8, 8], 7);
    let run = || {
        let (y, mean, var) = train(&case.x, &case.gamma, &case.beta, EPSILON).expect("fused");
        let (dx, dg, db) = backward(
            &case.x,
            &case.gamma,
            &mean,
            &var,
            EPSILON,
            &case.output_grad,
        )
        .expect("fused");
        [y, mean, var, dx, dg, db].map(bits)
    };
    assert_same_bits_whatever_the_thread_count(run);
}

/// What the kernels do not cover says so, and the backend runs the composition.
#[test]
fn batch_norm_declines_what_it_does_not_cover() {
    let case = Case::new(&[2, 3, 4], 3);
    let wrong_channels = random(&[4], 9);
    assert!(train(&case.x, &wrong_channels, &case.beta, EPSILON).is_none());
    assert!(train(&random(&[5], 1), &case.gamma, &case.beta, EPSILON).is_none());
    let mixed = to_f64(&case.gamma);
    assert!(train(&case.x, &mixed, &case.beta, EPSILON).is_none());
    let (_, mean, var) = train(&case.x, &case.gamma, &case.beta, EPSILON).expect("fused");
    let short_grad = random(&[2, 3, 3], 4);
    assert!(backward(&case.x, &case.gamma, &mean, &var, EPSILON, &short_grad).is_none());
}
