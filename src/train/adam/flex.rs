//! Adam on flex: one pass over each parameter, its gradient and both moments, updating the
//! parameter in place, in blocks on rayon's threads. burn's Adam runs about a dozen whole-tensor
//! ops per parameter, each allocating its result: 100 ms of a 250 ms ResNet-18 step on 2 cores
//! (docs/backends.md). The arithmetic is torch's fused CPU kernel's (`_fused_adam_`, as on
//! libtorch), element by element in f32, so the threads cannot change the bits.

use std::collections::HashMap;

use burn::backend::Flex;
use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{DType, Tensor};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::moments::{self, Saved, Settings};
use super::Hyper;

/// Elements per block handed to a thread (small tensors run on the calling thread).
const BLOCK: usize = 1 << 15;

/// Whether `value` lives on flex.
pub(super) fn owns<const D: usize>(value: &Tensor<D>) -> bool {
    value.clone().try_into_primitive::<Flex>().is_ok()
}

pub(super) struct FusedAdam {
    hyper: Hyper,
    /// Per parameter, created at its first gradient (or read from a checkpoint).
    moments: HashMap<ParamId, Saved>,
}

impl FusedAdam {
    pub fn new(hyper: Hyper) -> Self {
        Self {
            hyper,
            moments: HashMap::new(),
        }
    }

    /// Every parameter's moments and step ([`moments::encode`]).
    pub fn state_bytes(&self) -> Vec<u8> {
        let mut states: Vec<(ParamId, &Saved)> =
            self.moments.iter().map(|(id, s)| (*id, s)).collect();
        moments::encode(&mut states)
    }

    /// Restores [`Self::state_bytes`] for a network with these parameter shapes.
    pub fn load_state(
        &mut self,
        bytes: &[u8],
        shapes: &HashMap<ParamId, Vec<usize>>,
    ) -> anyhow::Result<()> {
        self.moments = moments::decode_for(bytes, shapes)?;
        Ok(())
    }

    pub fn step<M: Module>(&mut self, lr: f64, model: M, grads: GradientsParams) -> M {
        let mut update = Update {
            grads,
            moments: &mut self.moments,
            hyper: self.hyper,
            lr,
        };
        model.map(&mut update)
    }
}

struct Update<'a> {
    grads: GradientsParams,
    moments: &'a mut HashMap<ParamId, Saved>,
    hyper: Hyper,
    lr: f64,
}

impl ModuleMapper for Update<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(grad) = self.grads.remove::<D>(param.id) else {
            return param;
        };
        let (id, old, mapper) = param.consume();
        let settings = Settings::of(&old);
        let value = flex(old.inner());
        let grad = flex(grad);
        let shape = value.layout().shape().to_vec();
        let numel: usize = shape.iter().product();
        // Walked as flat buffers: contiguous from the start of their storage. A parameter held
        // elsewhere too (the best checkpoint) is copied by `storage_mut` before the write.
        let mut value = whole(value);
        let grad = whole(grad);
        let state = self.moments.entry(id).or_insert_with(|| Saved {
            shape: shape.clone(),
            step: 0.0,
            exp_avg: vec![0.0; numel],
            exp_avg_sq: vec![0.0; numel],
        });
        assert_eq!(
            state.exp_avg.len(),
            numel,
            "Adam's state for parameter {id} has {} values, the parameter {numel}",
            state.exp_avg.len()
        );
        state.step += 1.0;
        let rule = Rule::new(self.hyper, self.lr, state.step);
        let param = &mut value.storage_mut::<f32>()[..numel];
        let grad = &grad.storage::<f32>()[..numel];
        let (exp_avg, exp_avg_sq) = (&mut state.exp_avg[..], &mut state.exp_avg_sq[..]);
        if numel <= BLOCK {
            rule.apply(param, grad, exp_avg, exp_avg_sq);
        } else {
            param
                .par_chunks_mut(BLOCK)
                .zip(grad.par_chunks(BLOCK))
                .zip(exp_avg.par_chunks_mut(BLOCK))
                .zip(exp_avg_sq.par_chunks_mut(BLOCK))
                .for_each(|(((p, g), m), v)| rule.apply(p, g, m, v));
        }
        let value = Tensor::<D>::from_primitive::<Flex>(value);
        Param::from_mapped_value(id, settings.restore(value), mapper)
    }
}

/// One step's constants, as torch's fused kernel computes them (in f64, then used in f32).
#[derive(Clone, Copy)]
struct Rule {
    beta1: f32,
    beta2: f32,
    epsilon: f32,
    weight_decay: f32,
    step_size: f32,
    bias_correction2_sqrt: f32,
}

impl Rule {
    fn new(hyper: Hyper, lr: f64, step: f32) -> Self {
        let step = step as f64;
        let bias_correction1 = 1.0 - hyper.beta1.powf(step);
        let bias_correction2 = 1.0 - hyper.beta2.powf(step);
        Self {
            beta1: hyper.beta1 as f32,
            beta2: hyper.beta2 as f32,
            epsilon: hyper.epsilon as f32,
            weight_decay: hyper.weight_decay as f32,
            step_size: (lr / bias_correction1) as f32,
            bias_correction2_sqrt: bias_correction2.sqrt() as f32,
        }
    }

    /// torch's Adam with coupled weight decay (`ADAM_MODE::ORIGINAL`), element by element.
    #[inline]
    fn apply(&self, param: &mut [f32], grad: &[f32], exp_avg: &mut [f32], exp_avg_sq: &mut [f32]) {
        for (((p, &g), m), v) in param.iter_mut().zip(grad).zip(exp_avg).zip(exp_avg_sq) {
            let g = if self.weight_decay != 0.0 {
                g + *p * self.weight_decay
            } else {
                g
            };
            *m += (1.0 - self.beta1) * (g - *m);
            *v = *v * self.beta2 + (1.0 - self.beta2) * g * g;
            let denom = v.sqrt() / self.bias_correction2_sqrt + self.epsilon;
            *p -= self.step_size * *m / denom;
        }
    }
}

fn flex<const D: usize>(tensor: Tensor<D>) -> FlexTensor {
    tensor
        .try_into_primitive::<Flex>()
        .unwrap_or_else(|error| panic!("fused Adam on a tensor off flex: {error:?}"))
}

/// `tensor` as f32 values contiguous from the start of its storage.
fn whole(tensor: FlexTensor) -> FlexTensor {
    assert_eq!(
        tensor.dtype(),
        DType::F32,
        "the fused Adam on flex updates f32 parameters"
    );
    let n = tensor.layout().num_elements();
    if tensor.layout().contiguous_offsets() == Some((0, n)) {
        tensor
    } else {
        tensor.to_contiguous()
    }
}
