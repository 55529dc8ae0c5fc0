//! Adam on libtorch: torch's multi-tensor kernel (`_fused_adam_`, what
//! `torch.optim.Adam(fused=True)` runs) updates every parameter and its moments in one call.
#![allow(deprecated)] // burn-tch is deprecated upstream

use std::collections::HashMap;

use burn::backend::LibTorch;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn_tch::native::{fused_adam_, AdamHyper};
use burn_tch::TchTensor;

use super::Hyper;

/// Whether `value` lives on libtorch.
pub(super) fn owns<const D: usize>(value: &Tensor<D>) -> bool {
    value.clone().try_into_primitive::<LibTorch>().is_ok()
}

/// The moments of one parameter.
struct Moments {
    exp_avg: tch::Tensor,
    exp_avg_sq: tch::Tensor,
}

pub(super) struct FusedAdam {
    hyper: Hyper,
    moments: HashMap<ParamId, Moments>,
    /// Steps taken, as a one-element tensor on the parameters' device (the kernel reads it).
    step: Option<tch::Tensor>,
}

impl FusedAdam {
    pub fn new(hyper: Hyper) -> Self {
        Self {
            hyper,
            moments: HashMap::new(),
            step: None,
        }
    }

    pub fn step<M: Module>(&mut self, lr: f64, model: M, grads: GradientsParams) -> M {
        let mut collect = Collect {
            grads,
            ids: Vec::new(),
            params: Vec::new(),
            grad_values: Vec::new(),
        };
        model.visit(&mut collect);
        let Collect {
            ids,
            params,
            grad_values,
            ..
        } = collect;
        if ids.is_empty() {
            return model;
        }
        for (id, param) in ids.iter().zip(&params) {
            self.moments.entry(*id).or_insert_with(|| Moments {
                exp_avg: param.zeros_like(),
                exp_avg_sq: param.zeros_like(),
            });
        }
        let step = self
            .step
            .get_or_insert_with(|| tch::Tensor::zeros([], (tch::Kind::Float, params[0].device())));
        let _ = step.f_add_scalar_(1.0).expect("step counter");
        let (exp_avgs, exp_avg_sqs): (Vec<_>, Vec<_>) = ids
            .iter()
            .map(|id| {
                let m = &self.moments[id];
                (m.exp_avg.shallow_clone(), m.exp_avg_sq.shallow_clone())
            })
            .unzip();
        let hyper = AdamHyper {
            lr,
            beta1: self.hyper.beta1,
            beta2: self.hyper.beta2,
            weight_decay: self.hyper.weight_decay,
            epsilon: self.hyper.epsilon,
        };
        fused_adam_(&params, &grad_values, &exp_avgs, &exp_avg_sqs, step, hyper)
            .unwrap_or_else(|error| panic!("fused Adam: {error}"));
        let updated = ids.into_iter().zip(params).collect();
        model.map(&mut Replace { updated })
    }
}

/// Gathers, for every parameter with a gradient, a fresh copy of its value (updated in place
/// by the kernel, so a model clone kept elsewhere, e.g. the best checkpoint, is untouched)
/// and its gradient.
struct Collect {
    grads: GradientsParams,
    ids: Vec<ParamId>,
    params: Vec<tch::Tensor>,
    grad_values: Vec<tch::Tensor>,
}

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(grad) = self.grads.remove::<D>(param.id) else {
            return;
        };
        let value = libtorch(param.val().inner());
        self.ids.push(param.id);
        self.params.push(value.copy());
        self.grad_values.push(libtorch(grad));
    }
}

fn libtorch<const D: usize>(tensor: Tensor<D>) -> tch::Tensor {
    tensor
        .try_into_primitive::<LibTorch>()
        .unwrap_or_else(|error| panic!("fused Adam on a tensor off libtorch: {error:?}"))
        .tensor
}

/// Puts the updated values back, keeping each parameter's autodiff settings.
struct Replace {
    updated: HashMap<ParamId, tch::Tensor>,
}

impl ModuleMapper for Replace {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(value) = self.updated.remove(&param.id) else {
            return param;
        };
        let (id, old, mapper) = param.consume();
        let new = Tensor::<D>::from_primitive::<LibTorch>(TchTensor::new(value));
        Param::from_mapped_value(id, Settings::of(&old).restore(new), mapper)
    }
}

/// A parameter's autodiff settings, put back on its updated value (as burn's optimisers do).
struct Settings {
    require_grad: bool,
    checkpointing: Option<burn::tensor::GradientCheckpointingStrategy>,
}

impl Settings {
    fn of<const D: usize>(param: &Tensor<D>) -> Self {
        Self {
            require_grad: param.is_require_grad(),
            checkpointing: param.gradient_checkpointing_strategy(),
        }
    }

    fn restore<const D: usize>(self, updated: Tensor<D>) -> Tensor<D> {
        let mut param = Tensor::from_inner(updated);
        if let Some(strategy) = self.checkpointing {
            param = param.with_gradient_checkpointing_strategy(strategy);
        }
        if self.require_grad {
            param = param.require_grad();
        }
        param
    }
}
