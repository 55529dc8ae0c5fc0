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

use super::moments::{self, Saved, Settings};
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

/// A saved state on `device`.
fn moments_on(saved: Saved, device: tch::Device) -> Moments {
    let shape: Vec<i64> = saved.shape.iter().map(|&d| d as i64).collect();
    let tensor = |values: &[f32]| {
        tch::Tensor::from_slice(values)
            .reshape(shape.as_slice())
            .to_device(device)
    };
    Moments {
        exp_avg: tensor(&saved.exp_avg),
        exp_avg_sq: tensor(&saved.exp_avg_sq),
        step: tch::Tensor::from_slice(&[saved.step])
            .reshape([0i64; 0])
            .to_device(device),
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

    /// Every parameter's moments and step ([`moments::encode`]).
    pub fn state_bytes(&self) -> anyhow::Result<Vec<u8>> {
        let mut read = Vec::with_capacity(self.moments.len());
        for (id, m) in &self.moments {
            let saved = Saved {
                shape: m.exp_avg.size().iter().map(|&d| d as usize).collect(),
                step: floats(&m.step)?[0],
                exp_avg: floats(&m.exp_avg)?,
                exp_avg_sq: floats(&m.exp_avg_sq)?,
            };
            read.push((*id, saved));
        }
        let mut states: Vec<(ParamId, &Saved)> = read
            .iter()
            .map(|(id, s)| (*id, s))
            .chain(self.restored.iter().map(|(id, r)| (*id, r)))
            .collect();
        Ok(moments::encode(&mut states))
    }

    /// Restores [`Self::state_bytes`] for a network with these parameter shapes.
    pub fn load_state(
        &mut self,
        bytes: &[u8],
        shapes: &HashMap<ParamId, Vec<usize>>,
    ) -> anyhow::Result<()> {
        self.restored = moments::decode_for(bytes, shapes)?;
        self.moments.clear();
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
            Some(saved) => moments_on(saved, value.tensor.device()),
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
