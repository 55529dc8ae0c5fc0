//! Adam on libtorch: torch's multi-tensor kernel (`_fused_adam_`, what
//! `torch.optim.Adam(fused=True)` runs) updates every parameter and its moments in one call.
#![allow(deprecated)] // burn-tch is deprecated upstream

use std::collections::HashMap;

use burn::backend::LibTorch;
use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn_tch::native::{fused_adam_, AdamHyper};
use burn_tch::TchTensor;

use super::Hyper;

/// Whether `value` lives on libtorch.
pub(super) fn owns<const D: usize>(value: &Tensor<D>) -> bool {
    value.clone().try_into_primitive::<LibTorch>().is_ok()
}

/// The state torch's Adam keeps per parameter, created at its first gradient.
struct Moments {
    exp_avg: tch::Tensor,
    exp_avg_sq: tch::Tensor,
    /// Steps this parameter took (a parameter first used later, such as a contrastive head, has
    /// its own bias correction), as a one-element float tensor on its device.
    step: tch::Tensor,
}

pub(super) struct FusedAdam {
    hyper: Hyper,
    moments: HashMap<ParamId, Moments>,
    /// Moments read from a resumable checkpoint, moved onto a parameter's device at its next
    /// gradient.
    restored: HashMap<ParamId, Saved>,
}

/// One parameter's moments as plain numbers.
struct Saved {
    shape: Vec<i64>,
    step: f32,
    exp_avg: Vec<f32>,
    exp_avg_sq: Vec<f32>,
}

impl Saved {
    fn on(self, device: tch::Device) -> Moments {
        let tensor = |values: &[f32]| {
            tch::Tensor::from_slice(values)
                .reshape(self.shape.as_slice())
                .to_device(device)
        };
        Moments {
            exp_avg: tensor(&self.exp_avg),
            exp_avg_sq: tensor(&self.exp_avg_sq),
            step: tch::Tensor::from_slice(&[self.step])
                .reshape([0i64; 0])
                .to_device(device),
        }
    }
}

fn floats(tensor: &tch::Tensor) -> anyhow::Result<Vec<f32>> {
    let flat = tensor
        .to_device(tch::Device::Cpu)
        .to_kind(tch::Kind::Float)
        .reshape([-1]);
    Vec::<f32>::try_from(&flat).map_err(|e| anyhow::anyhow!("reading Adam's moments: {e}"))
}

impl FusedAdam {
    pub fn new(hyper: Hyper) -> Self {
        Self {
            hyper,
            moments: HashMap::new(),
            restored: HashMap::new(),
        }
    }

    /// Every parameter's moments and step, little-endian, in parameter-id order:
    /// id, rank, dims, step, exp_avg, exp_avg_sq.
    pub fn state_bytes(&self) -> anyhow::Result<Vec<u8>> {
        let mut ids: Vec<&ParamId> = self.moments.keys().chain(self.restored.keys()).collect();
        ids.sort();
        let mut out = (ids.len() as u64).to_le_bytes().to_vec();
        for id in ids {
            let saved = match (self.moments.get(id), self.restored.get(id)) {
                (Some(m), _) => Saved {
                    shape: m.exp_avg.size(),
                    step: floats(&m.step)?[0],
                    exp_avg: floats(&m.exp_avg)?,
                    exp_avg_sq: floats(&m.exp_avg_sq)?,
                },
                (None, Some(r)) => Saved {
                    shape: r.shape.clone(),
                    step: r.step,
                    exp_avg: r.exp_avg.clone(),
                    exp_avg_sq: r.exp_avg_sq.clone(),
                },
                (None, None) => unreachable!("listed from the two maps"),
            };
            out.extend(id.val().to_le_bytes());
            out.extend((saved.shape.len() as u64).to_le_bytes());
            for d in &saved.shape {
                out.extend((*d as u64).to_le_bytes());
            }
            out.extend(saved.step.to_le_bytes());
            for v in saved.exp_avg.iter().chain(&saved.exp_avg_sq) {
                out.extend(v.to_le_bytes());
            }
        }
        Ok(out)
    }

    /// Restores [`Self::state_bytes`].
    pub fn load_state(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let mut rest = bytes;
        let mut take = |n: usize| -> anyhow::Result<&[u8]> {
            anyhow::ensure!(rest.len() >= n, "the fused Adam state is cut short");
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let u64_at = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        let count = u64_at(take(8)?);
        let mut restored = HashMap::new();
        for _ in 0..count {
            let id = ParamId::from(u64_at(take(8)?));
            let rank = u64_at(take(8)?) as usize;
            anyhow::ensure!(
                rank <= 8,
                "the fused Adam state names a rank-{rank} parameter"
            );
            let mut shape = Vec::with_capacity(rank);
            for _ in 0..rank {
                shape.push(u64_at(take(8)?) as i64);
            }
            let numel: usize = shape.iter().map(|&d| d as usize).product();
            let step = f32::from_le_bytes(take(4)?.try_into().expect("4 bytes"));
            let mut values = |n: usize| -> anyhow::Result<Vec<f32>> {
                Ok(take(4 * n)?
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect())
            };
            let exp_avg = values(numel)?;
            let exp_avg_sq = values(numel)?;
            restored.insert(
                id,
                Saved {
                    shape,
                    step,
                    exp_avg,
                    exp_avg_sq,
                },
            );
        }
        anyhow::ensure!(rest.is_empty(), "the fused Adam state has trailing bytes");
        self.moments.clear();
        self.restored = restored;
        Ok(())
    }

    pub fn step<M: Module>(&mut self, lr: f64, model: M, grads: GradientsParams) -> M {
        let mut gather = Gather {
            grads,
            moments: &mut self.moments,
            restored: &mut self.restored,
            params: Vec::new(),
            grads_out: Vec::new(),
            exp_avgs: Vec::new(),
            exp_avg_sqs: Vec::new(),
            steps: Vec::new(),
        };
        let model = model.map(&mut gather);
        let Gather {
            params,
            grads_out,
            exp_avgs,
            exp_avg_sqs,
            steps,
            ..
        } = gather;
        if params.is_empty() {
            return model;
        }
        let hyper = AdamHyper {
            lr,
            beta1: self.hyper.beta1,
            beta2: self.hyper.beta2,
            weight_decay: self.hyper.weight_decay,
            epsilon: self.hyper.epsilon,
        };
        // Updates the module's parameters in place, through the handles gathered.
        fused_adam_(&params, &grads_out, &exp_avgs, &exp_avg_sqs, &steps, hyper)
            .unwrap_or_else(|error| panic!("fused Adam: {error}"));
        model
    }
}

/// Takes, for every parameter with a gradient, a libtorch handle on storage the kernel may update
/// in place: the parameter's own when nothing else holds it (burn-tch counts the holders), else a
/// fresh copy that becomes the parameter, so a model clone kept elsewhere (the best checkpoint)
/// is never written through.
struct Gather<'a> {
    grads: GradientsParams,
    moments: &'a mut HashMap<ParamId, Moments>,
    restored: &'a mut HashMap<ParamId, Saved>,
    params: Vec<tch::Tensor>,
    grads_out: Vec<tch::Tensor>,
    exp_avgs: Vec<tch::Tensor>,
    exp_avg_sqs: Vec<tch::Tensor>,
    steps: Vec<tch::Tensor>,
}

impl ModuleMapper for Gather<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(grad) = self.grads.remove::<D>(param.id) else {
            return param;
        };
        let (id, old, mapper) = param.consume();
        let settings = Settings::of(&old);
        let value = libtorch(old.inner());
        // The kernel walks parameter, gradient and moments as flat buffers: all contiguous.
        let value = if !value.tensor.is_contiguous() {
            TchTensor::new(value.tensor.contiguous())
        } else if value.can_mut() {
            value
        } else {
            let mut copy = value.tensor.empty_like();
            copy.copy_(&value.tensor);
            TchTensor::new(copy)
        };
        let restored = self.restored.remove(&id);
        let moments = self.moments.entry(id).or_insert_with(|| match restored {
            Some(saved) => saved.on(value.tensor.device()),
            None => Moments {
                exp_avg: value.tensor.zeros_like(),
                exp_avg_sq: value.tensor.zeros_like(),
                step: tch::Tensor::zeros([], (tch::Kind::Float, value.tensor.device())),
            },
        });
        self.params.push(value.tensor.shallow_clone());
        self.grads_out.push(libtorch(grad).tensor.contiguous());
        self.exp_avgs.push(moments.exp_avg.shallow_clone());
        self.exp_avg_sqs.push(moments.exp_avg_sq.shallow_clone());
        self.steps.push(moments.step.shallow_clone());
        let value = Tensor::<D>::from_primitive::<LibTorch>(value);
        Param::from_mapped_value(id, settings.restore(value), mapper)
    }
}

fn libtorch<const D: usize>(tensor: Tensor<D>) -> TchTensor {
    tensor
        .try_into_primitive::<LibTorch>()
        .unwrap_or_else(|error| panic!("fused Adam on a tensor off libtorch: {error:?}"))
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
