//! Train / validation / test splits of the sample tiles.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::city::{City, TileKey};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SplitConfig {
    /// Seeded random split in the script's order: `test` of all samples first, then `valid` of
    /// the rest (0.2 and 0.25 give 60/20/20).
    Random {
        #[serde(default = "default_test")]
        test: f64,
        #[serde(default = "default_valid")]
        valid: f64,
        seed: Option<u64>,
    },
    /// Spatial blocks of `block`×`block` tiles, assigned whole to a split (same fractions as
    /// `random`), so that neighbouring tiles rarely straddle train and test.
    Blocks {
        block: usize,
        #[serde(default = "default_test")]
        test: f64,
        #[serde(default = "default_valid")]
        valid: f64,
        seed: Option<u64>,
    },
    /// An explicit CSV with columns x, y, split (train | valid | test).
    File { path: PathBuf },
}

fn default_test() -> f64 {
    0.2
}
fn default_valid() -> f64 {
    0.25
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig::Random { test: 0.2, valid: 0.25, seed: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub valid: Vec<usize>,
    pub test: Vec<usize>,
}

impl SplitConfig {
    pub fn check(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let fractions = match self {
            SplitConfig::Random { test, valid, .. } => Some((test, valid)),
            SplitConfig::Blocks { block, test, valid, .. } => {
                if *block == 0 {
                    errors.push("split.block: must be at least 1".into());
                }
                Some((test, valid))
            }
            SplitConfig::File { .. } => None,
        };
        if let Some((test, valid)) = fractions {
            if !(*test > 0.0 && *test < 1.0) {
                errors.push(format!("split.test: {test} must lie strictly between 0 and 1"));
            }
            if !(*valid > 0.0 && *valid < 1.0) {
                errors.push(format!("split.valid: {valid} must lie strictly between 0 and 1"));
            }
        }
        errors
    }

    /// Splits the samples of `city`; `run_seed` is used when the split names no seed.
    pub fn split(&self, city: &City, run_seed: u64) -> Result<Split> {
        let samples = city.samples();
        let split = match self {
            SplitConfig::Random { test, valid, seed } => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed.unwrap_or(run_seed));
                let mut order = samples.clone();
                order.shuffle(&mut rng);
                let n_test = (*test * order.len() as f64).ceil() as usize;
                let rest = order.split_off(n_test);
                let test_set = order;
                let n_valid = (*valid * rest.len() as f64).ceil() as usize;
                let (valid_set, train_set) = rest.split_at(n_valid);
                Split { train: train_set.to_vec(), valid: valid_set.to_vec(), test: test_set }
            }
            SplitConfig::Blocks { block, test, valid, seed } => {
                let mut blocks: BTreeMap<(i64, i64), Vec<usize>> = BTreeMap::new();
                let b = *block as i64;
                for &i in &samples {
                    let k = city.keys[i];
                    blocks.entry((k.x.div_euclid(b), k.y.div_euclid(b))).or_default().push(i);
                }
                let mut order: Vec<Vec<usize>> = blocks.into_values().collect();
                order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed.unwrap_or(run_seed)));
                let n = samples.len() as f64;
                let want_test = test * n;
                let want_valid = valid * (n - want_test);
                let mut split = Split { train: vec![], valid: vec![], test: vec![] };
                for tiles in order {
                    if (split.test.len() as f64) < want_test {
                        split.test.extend(tiles);
                    } else if (split.valid.len() as f64) < want_valid {
                        split.valid.extend(tiles);
                    } else {
                        split.train.extend(tiles);
                    }
                }
                split
            }
            SplitConfig::File { path } => read_split_file(path, city)?,
        };
        for (name, part) in [("train", &split.train), ("valid", &split.valid), ("test", &split.test)] {
            if part.is_empty() {
                bail!("the {name} split of city `{}` is empty ({} samples in all); change `split`", city.name, samples.len());
            }
        }
        Ok(split)
    }
}

fn read_split_file(path: &PathBuf, city: &City) -> Result<Split> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading split file {}", path.display()))?;
    let index: HashMap<TileKey, usize> = city.index();
    let mut split = Split { train: vec![], valid: vec![], test: vec![] };
    let mut lines = text.lines().enumerate();
    let header = lines.next().map(|(_, h)| h.trim().to_string()).unwrap_or_default();
    if header.replace(' ', "") != "x,y,split" {
        bail!("{}: line 1 must be the header `x,y,split`, found `{header}`", path.display());
    }
    for (no, line) in lines {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let at = || format!("{}: line {}", path.display(), no + 1);
        if fields.len() != 3 {
            bail!("{}: expected x,y,split, found `{line}`", at());
        }
        let x = fields[0].parse::<i64>().with_context(|| format!("{}: x `{}` is not an integer", at(), fields[0]))?;
        let y = fields[1].parse::<i64>().with_context(|| format!("{}: y `{}` is not an integer", at(), fields[1]))?;
        let key = TileKey { x, y };
        let &i = index.get(&key).with_context(|| format!("{}: tile {key} is not a tile of city `{}`", at(), city.name))?;
        if city.emission[i] <= 0.0 {
            bail!("{}: tile {key} has emission 0, so it is not a sample", at());
        }
        match fields[2] {
            "train" => split.train.push(i),
            "valid" => split.valid.push(i),
            "test" => split.test.push(i),
            other => bail!("{}: split `{other}` must be train, valid or test", at()),
        }
    }
    Ok(split)
}
