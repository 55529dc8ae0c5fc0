//! The optimiser of MODEL.md: Adam with coupled L2 weight decay (torch's `Adam(weight_decay=…)`).
//!
//! burn's Adam updates one parameter at a time, about a dozen tensor ops each: on a GPU that is
//! ~60 × 12 kernel launches per step for the full network (Adam took 7.3 ms against PyTorch's
//! 1.1 ms for a ResNet-18 step on one H200). On libtorch the update instead runs torch's fused
//! multi-tensor kernel (`_fused_adam_`, what `torch.optim.Adam(fused=True)` runs) over all
//! parameters at once. `OPENCARBON_ADAM=burn` keeps burn's on libtorch too (benchmarks compare).

use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};

use super::config::TrainConfig;

/// Adam over a whole module: burn's per-parameter update, or libtorch's fused one.
pub struct Adam {
    burn: ModuleOptimizer,
    #[cfg(feature = "tch")]
    fused: Option<fused::FusedAdam>,
}

impl Adam {
    /// The fused update where the model lives on libtorch, unless `OPENCARBON_ADAM=burn`.
    pub fn new(config: &TrainConfig) -> Self {
        Self::with_fused(
            config,
            std::env::var("OPENCARBON_ADAM").as_deref() != Ok("burn"),
        )
    }

    /// `fused: false` keeps burn's update on every backend.
    pub fn with_fused(config: &TrainConfig, fused: bool) -> Self {
        let burn = AdamConfig::new()
            .with_epsilon(config.adam_epsilon as f32)
            .with_weight_decay(
                (config.weight_decay > 0.0)
                    .then(|| WeightDecayConfig::new(config.weight_decay as f32)),
            )
            .init();
        #[cfg(not(feature = "tch"))]
        let _ = fused;
        Self {
            burn,
            #[cfg(feature = "tch")]
            fused: fused.then(|| fused::FusedAdam::new(config)),
        }
    }

    /// One update of every parameter that has a gradient in `grads`, at learning rate `lr`.
    pub fn step<M: Module>(&mut self, lr: f64, model: M, grads: GradientsParams) -> M {
        #[cfg(feature = "tch")]
        if let Some(fused) = &mut self.fused {
            if fused::on_libtorch(&model) {
                return fused.step(lr, model, grads);
            }
            // A model off libtorch (flex) stays with burn's update from here on.
            self.fused = None;
        }
        self.burn.step(lr, model, grads)
    }

    /// Which update ran last (or will run): `fused` or `burn`.
    pub fn kind(&self) -> &'static str {
        #[cfg(feature = "tch")]
        if self.fused.is_some() {
            return "fused";
        }
        "burn"
    }
}

#[cfg(feature = "tch")]
mod fused {
    #![allow(deprecated)] // burn-tch is deprecated upstream

    use std::collections::HashMap;

    use burn::backend::LibTorch;
    use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
    use burn::optim::GradientsParams;
    use burn::tensor::Tensor;
    use burn_tch::native::{fused_adam_, AdamHyper};
    use burn_tch::TchTensor;

    use crate::train::config::TrainConfig;

    /// Whether the module's parameters live on libtorch (checked on the first one).
    pub fn on_libtorch<M: Module>(model: &M) -> bool {
        struct First(Option<bool>);
        impl ModuleVisitor for First {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if self.0.is_none() {
                    let value = param.val().inner();
                    self.0 = Some(value.try_into_primitive::<LibTorch>().is_ok());
                }
            }
        }
        let mut first = First(None);
        model.visit(&mut first);
        first.0.unwrap_or(false)
    }

    /// The moments of one parameter.
    struct Moments {
        exp_avg: tch::Tensor,
        exp_avg_sq: tch::Tensor,
    }

    pub struct FusedAdam {
        beta1: f64,
        beta2: f64,
        epsilon: f64,
        weight_decay: f64,
        moments: HashMap<ParamId, Moments>,
        /// Steps taken, as a one-element tensor on the parameters' device (the kernel reads it).
        step: Option<tch::Tensor>,
    }

    impl FusedAdam {
        pub fn new(config: &TrainConfig) -> Self {
            // burn's AdamConfig defaults, which MODEL.md's torch defaults match.
            Self {
                beta1: 0.9,
                beta2: 0.999,
                epsilon: config.adam_epsilon,
                weight_decay: config.weight_decay,
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
            let step = self.step.get_or_insert_with(|| {
                tch::Tensor::zeros([], (tch::Kind::Float, params[0].device()))
            });
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
                beta1: self.beta1,
                beta2: self.beta2,
                weight_decay: self.weight_decay,
                epsilon: self.epsilon,
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
            let grad = libtorch(grad);
            self.ids.push(param.id);
            self.params.push(value.copy());
            self.grad_values.push(grad);
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
            let mut new = Tensor::from_inner(Tensor::<D>::from_primitive::<LibTorch>(
                TchTensor::new(value),
            ));
            if let Some(strategy) = old.gradient_checkpointing_strategy() {
                new = new.with_gradient_checkpointing_strategy(strategy);
            }
            if old.is_require_grad() {
                new = new.require_grad();
            }
            Param::from_mapped_value(id, new, mapper)
        }
    }
}
