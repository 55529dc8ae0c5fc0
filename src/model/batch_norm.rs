//! BatchNorm with PyTorch's running-variance update.
//!
//! burn 0.22's `BatchNorm` folds the *biased* batch variance into `running_var`; PyTorch folds the
//! *unbiased* one (× n/(n−1), n = values per channel). Normalisation itself uses the biased
//! variance in both. The difference shows in eval mode after training, most in the regressor's
//! BatchNorm1d (n = batch size: 3 % at 32). This module is burn's, with PyTorch's update; its
//! fields have burn's names, so checkpoints and the PyTorch adapter treat it as a BatchNorm.
//! The parity fixtures pin both the output and the updated running statistics to PyTorch's.

use burn::module::{Flag, Module, Param, RunningState};
use burn::tensor::{Device, Tensor};

#[derive(Module, Debug)]
pub struct BatchNorm {
    pub gamma: Param<Tensor<1>>,
    pub beta: Param<Tensor<1>>,
    pub training: Param<Flag>,
    pub running_mean: RunningState<Tensor<1>>,
    pub running_var: RunningState<Tensor<1>>,
    pub momentum: f64,
    pub epsilon: f64,
}

impl BatchNorm {
    /// PyTorch's defaults: γ = 1, β = 0, running mean 0 and variance 1, momentum 0.1, ε = 1e-5.
    pub fn new(features: usize, device: &Device) -> Self {
        Self {
            gamma: Param::from_tensor(Tensor::ones([features], device)),
            beta: Param::from_tensor(Tensor::zeros([features], device)),
            training: Param::from_bool(true),
            running_mean: RunningState::new(Tensor::zeros([features], device)),
            running_var: RunningState::new(Tensor::ones([features], device)),
            momentum: 0.1,
            epsilon: 1e-5,
        }
    }

    /// `[N, C, …]` → same shape: batch statistics (and a running-statistics update) when the
    /// input is on an autodiff device and the layer trains; running statistics otherwise.
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        let device = input.device();
        if !(device.is_autodiff() && self.training.is_enabled()) {
            return burn::tensor::module::batch_norm(
                input,
                self.gamma.val(),
                self.beta.val(),
                self.running_mean.value().to_device(&device),
                self.running_var.value().to_device(&device),
                self.epsilon,
            );
        }
        let dims = input.dims();
        let per_channel: usize = dims.iter().product::<usize>() / dims[1];
        let result = burn::tensor::module::batch_norm_train(
            input,
            self.gamma.val(),
            self.beta.val(),
            self.epsilon,
        );
        // PyTorch's update uses the unbiased variance.
        let unbiased = per_channel as f64 / (per_channel.max(2) - 1) as f64;
        let m = self.momentum;
        let mean = self.running_mean.value_sync().to_device(&device);
        let var = self.running_var.value_sync().to_device(&device);
        self.running_mean
            .update((mean * (1.0 - m) + result.mean.detach() * m).detach());
        self.running_var
            .update((var * (1.0 - m) + result.variance.detach() * (m * unbiased)).detach());
        result.output
    }
}
