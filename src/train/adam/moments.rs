//! The fused updates' state as plain numbers, and its byte layout in a resumable checkpoint: the
//! same for libtorch and flex, so either reads what the other wrote.

use std::collections::HashMap;

use anyhow::{ensure, Result};
use burn::module::ParamId;
use burn::tensor::Tensor;

/// One parameter's Adam state: torch's names.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Saved {
    pub shape: Vec<usize>,
    /// Steps this parameter took (its own bias correction: a parameter first used later, such
    /// as a contrastive head, starts at its first gradient).
    pub step: f32,
    pub exp_avg: Vec<f32>,
    pub exp_avg_sq: Vec<f32>,
}

/// Every parameter's state, little-endian, in parameter-id order: count, then per parameter
/// id, rank, dims, step, exp_avg, exp_avg_sq.
pub(super) fn encode(states: &mut [(ParamId, &Saved)]) -> Vec<u8> {
    states.sort_by_key(|(id, _)| *id);
    let mut out = (states.len() as u64).to_le_bytes().to_vec();
    for (id, saved) in states.iter() {
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
    out
}

/// Reads [`encode`]'s bytes back; a truncated or padded state is an error.
pub(super) fn decode(bytes: &[u8]) -> Result<HashMap<ParamId, Saved>> {
    let mut rest = bytes;
    let mut take = |n: usize| -> Result<&[u8]> {
        ensure!(rest.len() >= n, "the fused Adam state is cut short");
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let u64_at = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let count = u64_at(take(8)?);
    let mut states = HashMap::new();
    for _ in 0..count {
        let id = ParamId::from(u64_at(take(8)?));
        let rank = u64_at(take(8)?) as usize;
        ensure!(
            rank <= 8,
            "the fused Adam state names a rank-{rank} parameter"
        );
        let mut shape = Vec::with_capacity(rank);
        for _ in 0..rank {
            shape.push(u64_at(take(8)?) as usize);
        }
        let numel = shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .filter(|n| n.checked_mul(8).is_some())
            .ok_or_else(|| anyhow::anyhow!("the fused Adam state names a shape {shape:?}"))?;
        let step = f32::from_le_bytes(take(4)?.try_into().expect("4 bytes"));
        let mut values = |n: usize| -> Result<Vec<f32>> {
            Ok(take(4 * n)?
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect())
        };
        let exp_avg = values(numel)?;
        let exp_avg_sq = values(numel)?;
        states.insert(
            id,
            Saved {
                shape,
                step,
                exp_avg,
                exp_avg_sq,
            },
        );
    }
    ensure!(rest.is_empty(), "the fused Adam state has trailing bytes");
    Ok(states)
}

/// [`decode`], refusing a state that does not fit `model`'s parameters (id to shape): one
/// resumed into another network would otherwise fail mid-step, or update with another's moments.
pub(super) fn decode_for(
    bytes: &[u8],
    model: &HashMap<ParamId, Vec<usize>>,
) -> Result<HashMap<ParamId, Saved>> {
    let states = decode(bytes)?;
    for (id, saved) in &states {
        let Some(shape) = model.get(id) else {
            anyhow::bail!(
                "the checkpoint's Adam state names parameter {id}, which this network does not have"
            );
        };
        ensure!(
            *shape == saved.shape,
            "the checkpoint's Adam state for parameter {id} has shape {:?}, the network's is {shape:?}",
            saved.shape
        );
    }
    Ok(states)
}

/// A parameter's autodiff settings, put back on its updated value (as burn's optimisers do).
pub(super) struct Settings {
    require_grad: bool,
    checkpointing: Option<burn::tensor::GradientCheckpointingStrategy>,
}

impl Settings {
    pub fn of<const D: usize>(param: &Tensor<D>) -> Self {
        Self {
            require_grad: param.is_require_grad(),
            checkpointing: param.gradient_checkpointing_strategy(),
        }
    }

    pub fn restore<const D: usize>(self, updated: Tensor<D>) -> Tensor<D> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_reads_back_and_rejects_damage() {
        let states = vec![
            (
                ParamId::from(7u64),
                Saved {
                    shape: vec![2, 1],
                    step: 3.0,
                    exp_avg: vec![0.5, -1.0],
                    exp_avg_sq: vec![0.25, 1.0],
                },
            ),
            (
                ParamId::from(2u64),
                Saved {
                    shape: vec![],
                    step: 1.0,
                    exp_avg: vec![2.0],
                    exp_avg_sq: vec![4.0],
                },
            ),
        ];
        let bytes = encode(&mut states.iter().map(|(id, s)| (*id, s)).collect::<Vec<_>>());
        let back = decode(&bytes).unwrap();
        assert_eq!(back.len(), 2);
        for (id, saved) in &states {
            assert_eq!(&back[id], saved);
        }
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(&[bytes.as_slice(), &[0]].concat()).is_err());

        // Resumed into a network it does not fit: an error naming the parameter, not a panic.
        let network = |shape: Vec<usize>| {
            HashMap::from([(ParamId::from(7u64), shape), (ParamId::from(2u64), vec![])])
        };
        assert_eq!(decode_for(&bytes, &network(vec![2, 1])).unwrap(), back);
        let wrong = decode_for(&bytes, &network(vec![3, 1]))
            .unwrap_err()
            .to_string();
        assert!(
            wrong.contains("[2, 1]") && wrong.contains("[3, 1]"),
            "{wrong}"
        );
        let fewer = HashMap::from([(ParamId::from(7u64), vec![2, 1])]);
        let missing = decode_for(&bytes, &fewer).unwrap_err().to_string();
        assert!(missing.contains("does not have"), "{missing}");
    }
}
