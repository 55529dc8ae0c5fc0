//! The resumable checkpoint (`checkpoints/resume.ckpt`): everything the rest of a run depends on,
//! so that a run stopped at any step (a signal, a kill, a preempted Slurm task) continues to the
//! same bytes as the run left alone, on the same machine and backend.
//!
//! One file, written atomically (and fsynced): the training weights and the best weights as burn
//! records (which keep the parameter ids the optimiser state is keyed by), the optimiser state
//! (Adam's moments and step), and [`Progress`] as JSON (epoch and batch, the epoch's sample order,
//! the shuffling RNG's position, the loss terms of the epoch so far, early-stopping state, best
//! validation, metric history, training time). A SHA-256 of the rest closes the file, so a torn or
//! foreign file is refused rather than resumed from.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::metrics::Metrics;

/// The file name inside the run's `checkpoints/`.
pub const FILE: &str = "resume.ckpt";
const MAGIC: &[u8] = b"OPENCARBON-RESUME 1\n";

/// How often a run writes its resumable checkpoint (at the end of an epoch), besides when a
/// signal stops it: `{epochs: n}`, `{minutes: m}` (after the first epoch that ends at least m
/// minutes after the last checkpoint), or `{}` (only on a signal). `{minutes: 5}` by default:
/// docs/reliability.md measures what a checkpoint costs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointEvery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minutes: Option<f64>,
}

impl Default for CheckpointEvery {
    fn default() -> Self {
        Self {
            epochs: None,
            minutes: Some(5.0),
        }
    }
}

impl CheckpointEvery {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Whether a checkpoint is due after `epoch`, `minutes` after the last one.
    pub fn due(&self, epoch: usize, minutes: f64) -> bool {
        self.epochs.is_some_and(|n| n > 0 && epoch % n == 0)
            || self.minutes.is_some_and(|m| minutes >= m)
    }

    pub fn problems(&self) -> Vec<String> {
        let mut e = Vec::new();
        if self.epochs.is_some() && self.minutes.is_some() {
            e.push("train.checkpoint_every: give `epochs` or `minutes`, not both".into());
        }
        if self.epochs == Some(0) {
            e.push(
                "train.checkpoint_every.epochs: must be at least 1 (`{}`: only on a signal)".into(),
            );
        }
        if let Some(m) = self.minutes.filter(|m| !(*m > 0.0 && m.is_finite())) {
            e.push(format!(
                "train.checkpoint_every.minutes: {m} must be a positive number (`{{}}`: only on a signal)"
            ));
        }
        e
    }
}

/// Where the loop stands: everything but the tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Progress {
    /// The run (or fine-tuning) this checkpoint belongs to; another's is refused.
    pub owner: String,
    /// The epoch to run next, or the one in progress when `next_batch` > 0 (1-based).
    pub epoch: usize,
    /// Batches of `epoch` already taken (0: the epoch has not started).
    pub next_batch: usize,
    /// The sample order of the last epoch that started (each epoch shuffles the one before).
    pub order: Vec<usize>,
    /// The shuffling RNG's position (ChaCha8 word position, as a decimal string: JSON has no u128).
    pub rng_word_pos: String,
    /// The loss terms of `epoch`'s batches so far, and the samples they covered.
    pub l1_terms: Vec<f32>,
    pub nce_terms: Vec<f32>,
    pub seen: usize,
    /// (epoch, validation metrics) of the best checkpoint so far.
    pub best: Option<(usize, Metrics)>,
    pub no_improvement: usize,
    pub since_best: usize,
    pub train_loss: Vec<f64>,
    pub epochs_run: usize,
    /// Training time of earlier attempts, seconds.
    pub train_seconds: f64,
    /// Every scalar logged so far (epoch, split, metric, value), replayed into fresh sinks.
    pub logged: Vec<(usize, String, String, f64)>,
    /// Training is over (what is left: the test, fine-tuning, the records).
    pub finished: bool,
    pub stopped_early: bool,
}

impl Progress {
    /// Where a run (or fine-tuning) of `owner` starts: epoch 1, nothing done.
    pub fn start(owner: String) -> Self {
        Self {
            owner,
            epoch: 1,
            next_batch: 0,
            order: vec![],
            rng_word_pos: String::new(),
            l1_terms: vec![],
            nce_terms: vec![],
            seen: 0,
            best: None,
            no_improvement: 0,
            since_best: 0,
            train_loss: vec![],
            epochs_run: 0,
            train_seconds: 0.0,
            logged: vec![],
            finished: false,
            stopped_early: false,
        }
    }
}

/// A checkpoint as read back: progress and the three byte blobs.
pub struct Checkpoint {
    pub progress: Progress,
    pub model: Vec<u8>,
    pub best_model: Option<Vec<u8>>,
    pub optimizer: Vec<u8>,
}

impl Checkpoint {
    /// The file's bytes: magic, then named sections (name, length, bytes), then the SHA-256 of
    /// everything before it.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = MAGIC.to_vec();
        let progress = serde_json::to_vec(&self.progress)?;
        let mut sections: Vec<(&str, &[u8])> = vec![
            ("progress.json", &progress),
            ("model.bpk", &self.model),
            ("optimizer", &self.optimizer),
        ];
        if let Some(best) = &self.best_model {
            sections.push(("best.bpk", best));
        }
        for (name, bytes) in sections {
            out.extend_from_slice(format!("{name} {}\n", bytes.len()).as_bytes());
            out.extend_from_slice(bytes);
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        Ok(out)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < MAGIC.len() + 32 || !bytes.starts_with(MAGIC) {
            bail!(
                "not a resumable checkpoint (no `{}` header)",
                String::from_utf8_lossy(MAGIC).trim()
            );
        }
        let (body, digest) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body).as_slice() != digest {
            bail!("its checksum does not match: the file is torn or altered");
        }
        let mut rest = &body[MAGIC.len()..];
        let (mut progress, mut model, mut best_model, mut optimizer) = (None, None, None, None);
        while !rest.is_empty() {
            let line_end = rest
                .iter()
                .position(|&b| b == b'\n')
                .context("a section header has no end")?;
            let header =
                std::str::from_utf8(&rest[..line_end]).context("a section header is not text")?;
            let (name, len) = header
                .split_once(' ')
                .with_context(|| format!("section header `{header}` has no length"))?;
            let len: usize = len
                .parse()
                .with_context(|| format!("section header `{header}`: bad length"))?;
            rest = &rest[line_end + 1..];
            if rest.len() < len {
                bail!("section {name} is cut short");
            }
            let (data, tail) = rest.split_at(len);
            rest = tail;
            match name {
                "progress.json" => {
                    progress = Some(
                        serde_json::from_slice::<Progress>(data)
                            .context("reading progress.json")?,
                    )
                }
                "model.bpk" => model = Some(data.to_vec()),
                "best.bpk" => best_model = Some(data.to_vec()),
                "optimizer" => optimizer = Some(data.to_vec()),
                other => bail!("unknown section `{other}`"),
            }
        }
        Ok(Self {
            progress: progress.context("no progress.json section")?,
            model: model.context("no model.bpk section")?,
            best_model,
            optimizer: optimizer.context("no optimizer section")?,
        })
    }

    /// Reads `path`: `Ok(None)` when there is none, an error naming the file when it is unusable.
    pub fn read(path: &Path) -> Result<Option<Self>> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Self::from_bytes(&bytes)
            .map(Some)
            .with_context(|| format!("{}", path.display()))
    }

    /// Writes `path` atomically and durably.
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::track::atomic::write(path, &self.to_bytes()?)
    }

    /// The RNG position as a number.
    pub fn rng_word_pos(&self) -> Result<u128> {
        self.progress
            .rng_word_pos
            .parse()
            .context("progress.json: rng_word_pos is not a number")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            progress: Progress {
                owner: "s1-abc".into(),
                epoch: 3,
                next_batch: 2,
                order: vec![4, 1, 3],
                rng_word_pos: u128::MAX.to_string(),
                l1_terms: vec![0.1, f32::MIN_POSITIVE, 3.4e38],
                nce_terms: vec![],
                seen: 64,
                best: None,
                no_improvement: 0,
                since_best: 1,
                train_loss: vec![0.1 + 0.2, 1e-300],
                epochs_run: 2,
                train_seconds: 12.5,
                logged: vec![(1, "train".into(), "l1".into(), 0.30000000000000004)],
                finished: false,
                stopped_early: false,
            },
            model: vec![1, 2, 3],
            best_model: Some(vec![]),
            optimizer: vec![9; 100],
        }
    }

    #[test]
    fn a_checkpoint_reads_back_bit_for_bit() {
        let bytes = sample().to_bytes().unwrap();
        let back = Checkpoint::from_bytes(&bytes).unwrap();
        assert_eq!(back.to_bytes().unwrap(), bytes);
        assert_eq!(back.rng_word_pos().unwrap(), u128::MAX);
        assert_eq!(back.progress.l1_terms[2].to_bits(), 3.4e38f32.to_bits());
        assert_eq!(
            back.progress.train_loss[0].to_bits(),
            (0.1f64 + 0.2).to_bits()
        );
    }

    #[test]
    fn a_torn_or_altered_checkpoint_is_refused() {
        let bytes = sample().to_bytes().unwrap();
        for cut in [0, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                Checkpoint::from_bytes(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut flipped = bytes.clone();
        flipped[MAGIC.len() + 5] ^= 1;
        let e = Checkpoint::from_bytes(&flipped).err().unwrap();
        assert!(format!("{e:#}").contains("checksum"), "{e:#}");
    }

    #[test]
    fn checkpoint_every_is_due_as_configured() {
        let every = |epochs, minutes| CheckpointEvery { epochs, minutes };
        assert!(every(Some(5), None).due(10, 0.0));
        assert!(!every(Some(5), None).due(11, 100.0));
        assert!(every(None, Some(5.0)).due(1, 5.0));
        assert!(!every(None, Some(5.0)).due(1, 4.9));
        assert!(!every(None, None).due(1, 1e9));
        assert_eq!(every(Some(0), None).problems().len(), 1);
        assert_eq!(every(None, Some(-1.0)).problems().len(), 1);
        assert_eq!(every(Some(1), Some(1.0)).problems().len(), 1);
        assert!(CheckpointEvery::default().problems().is_empty());
    }
}
