//! The optimiser of MODEL.md: Adam with coupled L2 weight decay (torch's `Adam(weight_decay=…)`).
//!
//! burn's Adam updates one parameter at a time with about a dozen tensor ops each, every one a
//! pass over the parameter and, on a GPU, a kernel launch: ~60 × 12 per step for the full network
//! (Adam took 7.3 ms against PyTorch's 1.1 ms for a ResNet-18 step on one H200). On libtorch the
//! update is torch's multi-tensor kernel over all parameters at once ([`libtorch`]), which follows
//! torch's update rule exactly (`tests/kernels.rs`); `OPENCARBON_ADAM=burn` keeps burn's
//! (benchmarks compare). flex keeps burn's: a single-pass Rust update measured no faster end to
//! end there (quickstart 262 vs 253 s) and would have changed every committed result.

#[cfg(feature = "tch")]
mod libtorch;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;

use super::config::TrainConfig;

/// Adam's hyper-parameters (torch's names and meaning; β's are burn's and torch's defaults).
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "tch"), allow(dead_code))] // read by the fused updates only
struct Hyper {
    beta1: f64,
    beta2: f64,
    epsilon: f64,
    weight_decay: f64,
}

/// Adam over a whole module: burn's per-parameter update, or a fused one.
pub struct Adam {
    burn: ModuleOptimizer,
    fused: Fused,
}

enum Fused {
    /// Not chosen yet: the first step looks at where the parameters live.
    Pending(Hyper),
    /// burn's update (`OPENCARBON_ADAM=burn`, or a backend without a fused one).
    Off,
    #[cfg(feature = "tch")]
    Libtorch(libtorch::FusedAdam),
}

impl Adam {
    /// The fused update where the backend has one, unless `OPENCARBON_ADAM=burn`.
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
        let hyper = Hyper {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: config.adam_epsilon,
            weight_decay: config.weight_decay,
        };
        Self {
            burn,
            fused: if fused {
                Fused::Pending(hyper)
            } else {
                Fused::Off
            },
        }
    }

    /// One update of every parameter that has a gradient in `grads`, at learning rate `lr`.
    pub fn step<M: Module>(&mut self, lr: f64, model: M, grads: GradientsParams) -> M {
        if let Fused::Pending(hyper) = self.fused {
            self.fused = choose(hyper, &model);
        }
        match &mut self.fused {
            #[cfg(feature = "tch")]
            Fused::Libtorch(adam) => adam.step(lr, model, grads),
            _ => self.burn.step(lr, model, grads),
        }
    }

    /// Which update runs: `fused` (libtorch's kernel), `burn`, or `pending` before the first
    /// step.
    pub fn kind(&self) -> &'static str {
        match self.fused {
            Fused::Pending(_) => "pending",
            Fused::Off => "burn",
            #[allow(unreachable_patterns)]
            _ => "fused",
        }
    }
}

/// The fused update for the backend the module's first float parameter lives on.
fn choose<M: Module>(hyper: Hyper, model: &M) -> Fused {
    struct First {
        hyper: Hyper,
        fused: Option<Fused>,
    }
    impl ModuleVisitor for First {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.fused.is_none() {
                self.fused = Some(fused_for(self.hyper, param.val().inner()));
            }
        }
    }
    let mut first = First { hyper, fused: None };
    model.visit(&mut first);
    first.fused.unwrap_or(Fused::Off)
}

fn fused_for<const D: usize>(hyper: Hyper, value: Tensor<D>) -> Fused {
    #[cfg(feature = "tch")]
    if libtorch::owns(&value) {
        return Fused::Libtorch(libtorch::FusedAdam::new(hyper));
    }
    let _ = (hyper, value);
    Fused::Off
}
