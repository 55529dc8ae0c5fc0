//! `train.batch_order`: each epoch's order of the training samples read from a file instead of
//! drawn, so that a run replays another program's batches (the authors' script, whose DataLoader
//! shuffles with torch's generator; `tools/fidelity/` records it).
//!
//! The file holds one JSON line per epoch: the training tiles as `[x, y]` pairs, in order. Every
//! line must be a permutation of the run's training split.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::data::{City, TileKey};

/// The replayed orders, as sample indices, one per epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay(Vec<Vec<usize>>);

impl Replay {
    /// Reads `path`, checking it against the training split and the number of epochs.
    pub fn read(path: &Path, city: &City, train: &[usize], epochs: usize) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("train.batch_order: reading {}", path.display()))?;
        let index = city.index();
        let mut expected = train.to_vec();
        expected.sort_unstable();
        let mut orders = Vec::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let at = || format!("train.batch_order: {} line {}", path.display(), n + 1);
            let pairs: Vec<[i64; 2]> = serde_json::from_str(line)
                .with_context(|| format!("{}: not a list of [x, y] tiles", at()))?;
            let mut order = Vec::with_capacity(pairs.len());
            for [x, y] in pairs {
                match index.get(&TileKey { x, y }) {
                    Some(&i) => order.push(i),
                    None => bail!("{}: ({x}, {y}) is not a tile of {}", at(), city.name),
                }
            }
            let mut sorted = order.clone();
            sorted.sort_unstable();
            if sorted != expected {
                let count = |v: &[usize]| {
                    v.iter().fold(HashMap::new(), |mut m, &i| {
                        *m.entry(i).or_insert(0usize) += 1;
                        m
                    })
                };
                let (have, want) = (count(&sorted), count(&expected));
                let stray = have.keys().find(|i| have.get(*i) != want.get(*i));
                let lacking = want.keys().find(|i| want.get(*i) != have.get(*i));
                let name = |i: Option<&usize>| {
                    i.map_or("none".to_string(), |&i| {
                        format!("({}, {})", city.keys[i].x, city.keys[i].y)
                    })
                };
                bail!(
                    "{}: {} tiles, not a permutation of the {} training tiles (first difference: has {}, lacks {})",
                    at(),
                    order.len(),
                    train.len(),
                    name(stray),
                    name(lacking)
                );
            }
            orders.push(order);
        }
        if orders.len() < epochs {
            bail!(
                "train.batch_order: {} holds {} epochs; the run trains {}",
                path.display(),
                orders.len(),
                epochs
            );
        }
        Ok(Self(orders))
    }

    /// The order of `epoch` (1-based).
    pub fn epoch(&self, epoch: usize) -> &[usize] {
        &self.0[epoch - 1]
    }
}
