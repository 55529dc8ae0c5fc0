//! Train / validation / test splits of the sample tiles.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::city::{City, TileKey};
use super::variogram::Detrend;

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
    /// Hold out a region (a bounding box of tile keys, or named districts) as the test split;
    /// validation is `valid` of the other samples, drawn as `block`×`block` spatial blocks.
    Holdout {
        test: Region,
        #[serde(default = "default_valid")]
        valid: f64,
        #[serde(default = "default_block")]
        block: usize,
        seed: Option<u64>,
        /// Tiles within `buffer` tiles (Chebyshev) of a test tile are left out of training and
        /// validation. Left out of a spec, the widest window any of its variants reads (see
        /// [`SplitConfig::default_buffer`]); absent in older records, where it was 0. `auto`:
        /// the target's autocorrelation range ([`Buffer::Auto`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        buffer: Option<Buffer>,
    },
    /// An explicit CSV with columns x, y, split (train | valid | test; `unused` rows are
    /// skipped, so a run's own `split.csv` can be given back).
    File { path: PathBuf },
    /// Spatial k-fold cross-validation: `block`×`block` blocks dealt into `folds` folds balanced
    /// by sample count (seeded); fold `fold` is the test set, validation is `valid` of the other
    /// folds' samples drawn as whole blocks, and samples within `buffer` tiles (Chebyshev) of a
    /// test sample are left out of training and validation. `fold` is a sweep axis: left out, a
    /// spec expands into one run per fold.
    SpatialCv {
        folds: usize,
        block: usize,
        /// Left out of a spec: the widest window any of its variants reads, so that no training
        /// tile's window reaches into the test blocks ([`SplitConfig::default_buffer`]). `auto`:
        /// the target's autocorrelation range ([`Buffer::Auto`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        buffer: Option<Buffer>,
        /// Training tiles within `valid_buffer` tiles (Chebyshev) of a validation tile are left
        /// out too, so that validation scores a neighbourhood model as test does (issue 31).
        /// Absent: none, as every run before it split (so their ids and numbers stand);
        /// [`SplitConfig::default_valid_buffer`] sets it to the test buffer. `auto` as for
        /// `buffer`, over the same candidate tiles.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        valid_buffer: Option<Buffer>,
        #[serde(default = "default_valid")]
        valid: f64,
        seed: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fold: Option<usize>,
        /// Set by a search on its trial runs (issue 31), never in a spec: the run trains and
        /// tests inside this fold's training and validation tiles, on inner spatial fold
        /// `inner.fold` of `inner.folds` (see [`InnerFold`]). The outer test tiles are unused.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inner: Option<InnerFold>,
    },
    /// Random k-fold cross-validation over single samples (the contrast to `spatial_cv`):
    /// samples in a seeded order, every `folds`-th one to a fold; validation is `valid` of the
    /// other folds' samples, drawn at random.
    RandomCv {
        folds: usize,
        #[serde(default = "default_valid")]
        valid: f64,
        seed: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fold: Option<usize>,
    },
}

/// An inner spatial fold of a `spatial_cv` fold, for nested cross-validation (a search's trials,
/// issue 31). The outer fold's training and validation tiles (those outside the test buffer)
/// are dealt as whole blocks into `folds` inner folds; fold `fold` is the inner test set, with
/// the split's `valid_buffer` around it; validation blocks are drawn from the other inner folds
/// (with `valid_buffer` around them too) and the rest trains. No outer test tile is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InnerFold {
    pub folds: usize,
    pub fold: usize,
}

/// `split.buffer` of `spatial_cv` and `holdout`: a number of tiles, or `auto`.
///
/// In YAML a number, the string `auto`, or `{auto: {detrend: linear}}` (`none`, `linear` or
/// `quadratic`: the variogram of the residuals from a trend surface, [`Detrend`]). Resolved (see
/// [`SplitConfig::default_buffer`]), `auto` carries the window-radius floor and is written
/// `max(auto, <floor>)`, or `{auto: {detrend: quadratic, floor: <floor>}}` when detrended, so that
/// a resolved spec re-run alone splits as its experiment did. A number serialises as before
/// (`buffer: 1`), and so does an `auto` without a trend, so resolved specs and their run ids are
/// unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffer {
    /// This many tiles (Chebyshev) around each test tile.
    Tiles(usize),
    /// The spatial autocorrelation range of the target, in tiles rounded up, as blockCV's
    /// `cv_spatial_autocor`: a spherical model fitted to the empirical (Matheron) semivariogram
    /// of ln emission over the candidate training tiles (every sample outside the test set),
    /// distances in tiles between tile keys ([`crate::data::variogram`]); with `detrend`, of the
    /// residuals from an OLS trend surface fitted over the same tiles. Never below `floor`, the
    /// widest window radius the experiment reads (a narrower buffer leaks).
    Auto { floor: usize, detrend: Detrend },
}

/// The map form of `auto`: `{auto: {detrend: quadratic, floor: 1}}`, both keys optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AutoOptions {
    #[serde(default)]
    detrend: Detrend,
    #[serde(default, skip_serializing_if = "is_zero")]
    floor: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Buffer {
    /// `auto` with its floor (0: none yet) and no trend.
    pub fn auto(floor: usize) -> Buffer {
        Buffer::Auto {
            floor,
            detrend: Detrend::None,
        }
    }

    /// `auto`, `max(auto, 2)` or `max(2, auto)`.
    fn parse_auto(text: &str) -> Option<Buffer> {
        let text = text.trim();
        if text == "auto" {
            return Some(Buffer::auto(0));
        }
        let inner = text.strip_prefix("max(")?.strip_suffix(')')?;
        let (a, b) = inner.split_once(',')?;
        let floor = match (a.trim(), b.trim()) {
            ("auto", n) | (n, "auto") => n.parse().ok()?,
            _ => return None,
        };
        Some(Buffer::auto(floor))
    }
}

impl Serialize for Buffer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match *self {
            // As `usize` serialises: resolved specs keep their bytes.
            Buffer::Tiles(n) => s.serialize_u64(n as u64),
            Buffer::Auto {
                floor: 0,
                detrend: Detrend::None,
            } => s.serialize_str("auto"),
            Buffer::Auto {
                floor,
                detrend: Detrend::None,
            } => s.serialize_str(&format!("max(auto, {floor})")),
            Buffer::Auto { floor, detrend } => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("auto", &AutoOptions { detrend, floor })?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Buffer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Buffer;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a number of tiles or `auto` (or `{auto: {detrend: none | linear | quadratic}}`)",
                )
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<Buffer, E> {
                match usize::try_from(v) {
                    Ok(n) => Ok(Buffer::Tiles(n)),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Unsigned(v), &self)),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<Buffer, E> {
                match u64::try_from(v) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::invalid_value(serde::de::Unexpected::Signed(v), &self)),
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Buffer, E> {
                Buffer::parse_auto(v)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Buffer, A::Error> {
                use serde::de::Error;
                let Some(key) = map.next_key::<String>()? else {
                    return Err(A::Error::invalid_length(0, &self));
                };
                if key != "auto" {
                    return Err(A::Error::unknown_field(&key, &["auto"]));
                }
                let options: Option<AutoOptions> = map.next_value()?;
                // The map holds the one key `auto`.
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(A::Error::unknown_field(&extra, &["auto"]));
                }
                let AutoOptions { detrend, floor } = options.unwrap_or_default();
                Ok(Buffer::Auto { floor, detrend })
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// What `buffer: auto` resolved to for one split: `split_buffer.json` in its run directory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AutoBuffer {
    /// The buffer used, in tiles: the range rounded up, at least `floor`.
    pub buffer: usize,
    pub rule: String,
    /// The trend taken out of ln emission before the variogram (`none`: the values themselves).
    pub detrend: Detrend,
    /// The fitted trend surface (absent without one): its origin, coefficients and R².
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trend: Option<super::variogram::Trend>,
    /// The fitted spherical range, in tiles.
    pub range_tiles: f64,
    /// The fitted partial sill (above the nugget) and nugget, in (ln emission)².
    pub sill: f64,
    pub nugget: f64,
    /// The window-radius floor.
    pub floor: usize,
    /// The candidate training tiles the variogram was computed over.
    pub samples: usize,
    /// The last lag edge: half the largest distance between two of those tiles.
    pub maxlag: f64,
    /// Upper edges of the lag classes (tiles), their semivariances and pair counts.
    pub bins: Vec<f64>,
    pub semivariance: Vec<f64>,
    pub pairs: Vec<u64>,
}

impl AutoBuffer {
    pub const RULE: &'static str = "auto: spherical variogram range";

    /// The autocorrelation range of `city`'s target over `candidates` (tile keys as
    /// coordinates), at least `floor`; with `detrend`, of its residuals from an OLS trend surface
    /// fitted over the same tiles.
    pub fn resolve(
        city: &City,
        candidates: &[usize],
        floor: usize,
        detrend: Detrend,
    ) -> Result<AutoBuffer> {
        let coords: Vec<(f64, f64)> = candidates
            .iter()
            .map(|&i| (city.keys[i].x as f64, city.keys[i].y as f64))
            .collect();
        let values: Vec<f64> = candidates.iter().map(|&i| city.target(i)).collect();
        let Some(trend) = super::variogram::detrend(&coords, &values, detrend) else {
            bail!(
                "split.buffer: auto with detrend: {} needs more candidate training tiles than the trend's {} terms, not all on one line ({} in city `{}`)",
                detrend.name(),
                detrend.terms().len(),
                candidates.len(),
                city.name
            );
        };
        let Some(fit) = super::variogram::fit_default(&coords, &trend.residuals) else {
            bail!(
                "split.buffer: auto needs at least two candidate training tiles apart to fit a variogram ({} in city `{}`)",
                candidates.len(),
                city.name
            );
        };
        let range = fit.model.range;
        Ok(AutoBuffer {
            buffer: (range.ceil() as usize).max(floor),
            rule: Self::RULE.into(),
            detrend,
            trend: (!detrend.is_none()).then_some(trend),
            range_tiles: range,
            sill: fit.model.sill,
            nugget: fit.model.nugget,
            floor,
            samples: candidates.len(),
            maxlag: fit.maxlag,
            bins: fit.empirical.bins,
            semivariance: fit.empirical.semivariance,
            pairs: fit.empirical.counts,
        })
    }

    /// What the variogram was computed on, in words.
    pub fn values(&self) -> String {
        match self.detrend {
            Detrend::None => "ln emission".into(),
            d => format!("ln emission's residuals from a {} trend", d.name()),
        }
    }
}

/// A region of a city: set exactly one of `bbox` or `districts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// Inclusive tile-key ranges: `{x: [x0, x1], y: [y0, y1]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<BoundingBox>,
    /// District names (tiles.csv `district` column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub districts: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoundingBox {
    pub x: [i64; 2],
    pub y: [i64; 2],
}

fn default_block() -> usize {
    4
}

impl Region {
    fn contains(&self, city: &City, i: usize) -> bool {
        let k = city.keys[i];
        if let Some(b) = &self.bbox {
            return (b.x[0]..=b.x[1]).contains(&k.x) && (b.y[0]..=b.y[1]).contains(&k.y);
        }
        match (&self.districts, &city.district) {
            (Some(names), Some(d)) => names.contains(&d[i]),
            _ => false,
        }
    }
}

/// `samples` grouped into `block`×`block` spatial blocks, the blocks in a seeded random order.
fn shuffled_blocks(city: &City, samples: &[usize], block: usize, seed: u64) -> Vec<Vec<usize>> {
    let b = block.max(1) as i64;
    let mut blocks: BTreeMap<(i64, i64), Vec<usize>> = BTreeMap::new();
    for &i in samples {
        let k = city.keys[i];
        blocks
            .entry((k.x.div_euclid(b), k.y.div_euclid(b)))
            .or_default()
            .push(i);
    }
    let mut order: Vec<Vec<usize>> = blocks.into_values().collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    order
}

/// Assigns whole blocks (shuffled) to a first group until it holds `fraction` of `samples`.
fn blocks_until(
    city: &City,
    samples: &[usize],
    block: usize,
    fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let want = fraction * samples.len() as f64;
    let (mut first, mut rest) = (Vec::new(), Vec::new());
    for tiles in shuffled_blocks(city, samples, block, seed) {
        if (first.len() as f64) < want {
            first.extend(tiles);
        } else {
            rest.extend(tiles);
        }
    }
    (first, rest)
}

/// Nested sets of `samples` drawn as whole `block`×`block` blocks in one seeded order, one set per
/// fraction (so a smaller fraction's set lies inside a larger one's), and the samples outside the
/// largest set. Used for few-shot fine-tuning on a target city.
pub fn nested_blocks(
    city: &City,
    samples: &[usize],
    block: usize,
    fractions: &[f64],
    seed: u64,
) -> (Vec<Vec<usize>>, Vec<usize>) {
    let order = shuffled_blocks(city, samples, block, seed);
    let total = samples.len() as f64;
    let sets: Vec<Vec<usize>> = fractions
        .iter()
        .map(|&f| {
            let mut set = Vec::new();
            for tiles in &order {
                if (set.len() as f64) >= f * total {
                    break;
                }
                set.extend_from_slice(tiles);
            }
            set
        })
        .collect();
    let largest = sets.iter().map(Vec::len).max().unwrap_or(0);
    let held_out = order.concat()[largest..].to_vec();
    (sets, held_out)
}

fn default_test() -> f64 {
    0.2
}
fn default_valid() -> f64 {
    0.25
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig::Random {
            test: 0.2,
            valid: 0.25,
            seed: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub valid: Vec<usize>,
    pub test: Vec<usize>,
}

impl SplitConfig {
    /// Sets an unset buffer (spatial CV, holdout) to `radius`: the widest neighbourhood window
    /// (network) or spatial lag (baselines) the experiment's variants read. A buffer narrower
    /// than that lets a training tile's window see test tiles: the leak the project measured
    /// (docs/conclusions.md).
    ///
    /// `auto` keeps its variogram rule and gets `radius` as its floor (the larger of the two if
    /// it has one already): the range may be narrower than the window, the buffer never is.
    pub fn default_buffer(&mut self, radius: usize) {
        if let SplitConfig::SpatialCv { buffer, .. } | SplitConfig::Holdout { buffer, .. } = self {
            match *buffer {
                None => *buffer = Some(Buffer::Tiles(radius)),
                Some(Buffer::Auto { floor, detrend }) => {
                    *buffer = Some(Buffer::Auto {
                        floor: floor.max(radius),
                        detrend,
                    })
                }
                Some(Buffer::Tiles(_)) => {}
            }
        }
    }

    /// Sets an unset `valid_buffer` of a `spatial_cv` split to its test buffer (call after
    /// [`SplitConfig::default_buffer`]), and lifts an `auto` one's floor to that buffer's floor.
    /// Not part of resolving a spec by default: runs recorded without a valid buffer would train
    /// on fewer tiles under the same id. Searches (issue 31) call it.
    pub fn default_valid_buffer(&mut self) {
        if let SplitConfig::SpatialCv {
            buffer,
            valid_buffer,
            ..
        } = self
        {
            let floor = match *buffer {
                None => 0,
                Some(Buffer::Tiles(n)) => n,
                Some(Buffer::Auto { floor, .. }) => floor,
            };
            match *valid_buffer {
                None => *valid_buffer = Some(buffer.unwrap_or(Buffer::Tiles(0))),
                Some(Buffer::Auto {
                    floor: own,
                    detrend,
                }) => {
                    *valid_buffer = Some(Buffer::Auto {
                        floor: own.max(floor),
                        detrend,
                    })
                }
                Some(Buffer::Tiles(_)) => {}
            }
        }
    }

    /// The buffer around validation blocks of a `spatial_cv` split (None: unset, or another
    /// kind).
    pub fn valid_buffer(&self) -> Option<Buffer> {
        match self {
            SplitConfig::SpatialCv { valid_buffer, .. } => *valid_buffer,
            _ => None,
        }
    }

    /// The buffer of a `spatial_cv` or `holdout` split (None: unset, or another kind).
    pub fn buffer(&self) -> Option<Buffer> {
        match self {
            SplitConfig::SpatialCv { buffer, .. } | SplitConfig::Holdout { buffer, .. } => *buffer,
            _ => None,
        }
    }

    /// The spec's `kind:` of this split.
    pub fn kind_name(&self) -> &'static str {
        match self {
            SplitConfig::Random { .. } => "random",
            SplitConfig::Blocks { .. } => "blocks",
            SplitConfig::Holdout { .. } => "holdout",
            SplitConfig::File { .. } => "file",
            SplitConfig::SpatialCv { .. } => "spatial_cv",
            SplitConfig::RandomCv { .. } => "random_cv",
        }
    }

    /// The tiles between a test tile and the nearest training tile, when the split guarantees
    /// any: None for splits that can put a test tile's neighbour in training (random, random
    /// CV, blocks, a file). For `auto`, its floor: the range is only known once the data are.
    pub fn guaranteed_buffer(&self) -> Option<usize> {
        match self {
            SplitConfig::SpatialCv { .. } | SplitConfig::Holdout { .. } => {
                Some(match self.buffer() {
                    None => 0,
                    Some(Buffer::Tiles(n)) => n,
                    Some(Buffer::Auto { floor, .. }) => floor,
                })
            }
            _ => None,
        }
    }

    pub fn check(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let fractions = match self {
            SplitConfig::Random { test, valid, .. } => Some((test, valid)),
            SplitConfig::Blocks {
                block, test, valid, ..
            } => {
                if *block == 0 {
                    errors.push("split.block: must be at least 1".into());
                }
                Some((test, valid))
            }
            SplitConfig::Holdout {
                test, valid, block, ..
            } => {
                if test.bbox.is_some() == test.districts.is_some() {
                    errors.push("split.test: set exactly one of bbox or districts".into());
                }
                if let Some(b) = &test.bbox {
                    if b.x[0] > b.x[1] || b.y[0] > b.y[1] {
                        errors.push(format!(
                            "split.test.bbox: x {:?} and y {:?} must be [low, high]",
                            b.x, b.y
                        ));
                    }
                }
                if *block == 0 {
                    errors.push("split.block: must be at least 1".into());
                }
                if !(*valid > 0.0 && *valid < 1.0) {
                    errors.push(format!(
                        "split.valid: {valid} must lie strictly between 0 and 1"
                    ));
                }
                None
            }
            SplitConfig::File { .. } => None,
            SplitConfig::SpatialCv {
                folds,
                block,
                valid,
                fold,
                inner,
                ..
            } => {
                if *block == 0 {
                    errors.push("split.block: must be at least 1".into());
                }
                cv_errors(&mut errors, *folds, *fold, *valid);
                if let Some(i) = inner {
                    if i.folds < 2 || i.fold >= i.folds {
                        errors.push(format!(
                            "split.inner: fold {} of {} folds; needs at least 2 folds and a fold below their count",
                            i.fold, i.folds
                        ));
                    }
                }
                None
            }
            SplitConfig::RandomCv {
                folds, valid, fold, ..
            } => {
                cv_errors(&mut errors, *folds, *fold, *valid);
                None
            }
        };
        if let Some((test, valid)) = fractions {
            if !(*test > 0.0 && *test < 1.0) {
                errors.push(format!(
                    "split.test: {test} must lie strictly between 0 and 1"
                ));
            }
            if !(*valid > 0.0 && *valid < 1.0) {
                errors.push(format!(
                    "split.valid: {valid} must lie strictly between 0 and 1"
                ));
            }
        }
        errors
    }

    /// The number of folds of a cross-validation split.
    pub fn folds(&self) -> Option<usize> {
        match self {
            SplitConfig::SpatialCv { folds, .. } | SplitConfig::RandomCv { folds, .. } => {
                Some(*folds)
            }
            _ => None,
        }
    }

    /// The fold a cross-validation split tests on (None: not set yet, or not cross-validation).
    pub fn fold(&self) -> Option<usize> {
        match self {
            SplitConfig::SpatialCv { fold, .. } | SplitConfig::RandomCv { fold, .. } => *fold,
            _ => None,
        }
    }

    /// This `spatial_cv` fold's inner fold `fold` of `folds` (a search's trial split); None for
    /// any other split, which cannot be nested.
    pub fn with_inner(&self, folds: usize, fold: usize) -> Option<Self> {
        let mut out = self.clone();
        match &mut out {
            SplitConfig::SpatialCv {
                inner,
                fold: Some(_),
                ..
            } => {
                *inner = Some(InnerFold { folds, fold });
                Some(out)
            }
            _ => None,
        }
    }

    /// The inner fold of a search's trial split.
    pub fn inner(&self) -> Option<InnerFold> {
        match self {
            SplitConfig::SpatialCv { inner, .. } => *inner,
            _ => None,
        }
    }

    /// The same cross-validation split testing on fold `f`; other splits unchanged.
    pub fn with_fold(&self, f: usize) -> Self {
        let mut out = self.clone();
        if let SplitConfig::SpatialCv { fold, .. } | SplitConfig::RandomCv { fold, .. } = &mut out {
            *fold = Some(f);
        }
        out
    }

    /// Splits the samples of `city`; `run_seed` is used when the split names no seed.
    pub fn split(&self, city: &City, run_seed: u64) -> Result<Split> {
        self.split_recorded(city, run_seed).map(|(split, _)| split)
    }

    /// As [`SplitConfig::split`], with what `buffer: auto` resolved to (None for any other
    /// buffer), for the run directory's `split_buffer.json`.
    pub fn split_recorded(
        &self,
        city: &City,
        run_seed: u64,
    ) -> Result<(Split, Option<AutoBuffer>)> {
        let samples = city.samples();
        let mut auto = None;
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
                Split {
                    train: train_set.to_vec(),
                    valid: valid_set.to_vec(),
                    test: test_set,
                }
            }
            SplitConfig::Blocks {
                block,
                test,
                valid,
                seed,
            } => {
                let seed = seed.unwrap_or(run_seed);
                let (test_set, rest) = blocks_until(city, &samples, *block, *test, seed);
                let (valid_set, train_set) =
                    blocks_until(city, &rest, *block, *valid, seed.wrapping_add(1));
                Split {
                    train: train_set,
                    valid: valid_set,
                    test: test_set,
                }
            }
            SplitConfig::Holdout {
                test,
                valid,
                block,
                seed,
                buffer,
            } => {
                if test.districts.is_some() && city.district.is_none() {
                    bail!(
                        "split.test.districts: city `{}` has no `district` column in tiles.csv",
                        city.name
                    );
                }
                let (test_set, rest): (Vec<usize>, Vec<usize>) =
                    samples.iter().partition(|&&i| test.contains(city, i));
                let width = buffer_width(city, &rest, *buffer, &mut auto)?;
                let rest = outside_buffer(city, &rest, &test_set, width);
                let (valid_set, train_set) =
                    blocks_until(city, &rest, *block, *valid, seed.unwrap_or(run_seed));
                Split {
                    train: train_set,
                    valid: valid_set,
                    test: test_set,
                }
            }
            SplitConfig::File { path } => read_split_file(path, city)?,
            SplitConfig::SpatialCv {
                folds,
                block,
                buffer,
                valid_buffer,
                valid,
                seed,
                fold,
                inner,
            } => {
                let f = fold_to_test(*fold, *folds)?;
                let seed = seed.unwrap_or(run_seed);
                let mut dealt = deal_blocks(city, &samples, *block, *folds, seed);
                let test_set = std::mem::take(&mut dealt[f]);
                let candidates: Vec<usize> = dealt.concat();
                let width = buffer_width(city, &candidates, *buffer, &mut auto)?;
                let rest = outside_buffer(city, &candidates, &test_set, width);
                let valid_width = valid_buffer_width(*valid_buffer, auto.as_ref())?;
                // Nested: the outer fold's training pool is split again, the same way, and
                // the outer test tiles are left out altogether.
                let (test_set, rest) = match inner {
                    None => (test_set, rest),
                    Some(i) => {
                        let inner_seed = seed.wrapping_add(2);
                        let mut dealt = deal_blocks(city, &rest, *block, i.folds, inner_seed);
                        let inner_test = std::mem::take(&mut dealt[i.fold.min(i.folds - 1)]);
                        let pool = outside_buffer(city, &dealt.concat(), &inner_test, valid_width);
                        (inner_test, pool)
                    }
                };
                let (valid_set, train_set) =
                    blocks_until(city, &rest, *block, *valid, seed.wrapping_add(1));
                let train_set = outside_buffer(city, &train_set, &valid_set, valid_width);
                Split {
                    train: train_set,
                    valid: valid_set,
                    test: test_set,
                }
            }
            SplitConfig::RandomCv {
                folds,
                valid,
                seed,
                fold,
            } => {
                let f = fold_to_test(*fold, *folds)?;
                let seed = seed.unwrap_or(run_seed);
                let mut order = samples.clone();
                order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
                let (test_set, mut rest): (Vec<(usize, usize)>, Vec<(usize, usize)>) = order
                    .into_iter()
                    .enumerate()
                    .partition(|(j, _)| j % folds == f);
                let test_set: Vec<usize> = test_set.into_iter().map(|(_, i)| i).collect();
                rest.shuffle(&mut ChaCha8Rng::seed_from_u64(seed.wrapping_add(1)));
                let n_valid = (*valid * rest.len() as f64).ceil() as usize;
                let rest: Vec<usize> = rest.into_iter().map(|(_, i)| i).collect();
                let (valid_set, train_set) = rest.split_at(n_valid.min(rest.len()));
                Split {
                    train: train_set.to_vec(),
                    valid: valid_set.to_vec(),
                    test: test_set,
                }
            }
        };
        for (name, part) in [
            ("train", &split.train),
            ("valid", &split.valid),
            ("test", &split.test),
        ] {
            if part.is_empty() {
                let source = match (self, &auto) {
                    (SplitConfig::File { path }, _) => format!(" (split file {})", path.display()),
                    (_, Some(a)) => format!(
                        " (`buffer: auto` is {} tiles here: the spherical variogram range of {} over the {} candidate training tiles is {:.2} tiles; {})",
                        a.buffer,
                        a.values(),
                        a.samples,
                        a.range_tiles,
                        if a.detrend == Detrend::Quadratic {
                            "set a number of tiles instead"
                        } else {
                            "try `buffer: {auto: {detrend: quadratic}}`, or set a number of tiles instead"
                        }
                    ),
                    _ => String::new(),
                };
                bail!(
                    "the {name} split of city `{}` is empty ({} samples in all){source}; change `split`",
                    city.name,
                    samples.len()
                );
            }
        }
        Ok((split, auto))
    }
}

/// The buffer in tiles around the test set: the raw field's [`Buffer`] (unset: 0); for `auto`,
/// resolved over `candidates` (every sample outside the test set) and recorded in `auto`.
fn buffer_width(
    city: &City,
    candidates: &[usize],
    raw: Option<Buffer>,
    auto: &mut Option<AutoBuffer>,
) -> Result<usize> {
    Ok(match raw {
        None => 0,
        Some(Buffer::Tiles(n)) => n,
        Some(Buffer::Auto { floor, detrend }) => {
            let resolved = AutoBuffer::resolve(city, candidates, floor, detrend)?;
            let width = resolved.buffer;
            *auto = Some(resolved);
            width
        }
    })
}

/// The buffer in tiles around the validation blocks (unset: 0). `auto` takes the test buffer's
/// variogram (fitted over the same candidate tiles, recorded in `split_buffer.json`) with its
/// own floor, so it needs `buffer: auto` with the same trend: one record describes both.
fn valid_buffer_width(raw: Option<Buffer>, auto: Option<&AutoBuffer>) -> Result<usize> {
    Ok(match (raw, auto) {
        (None, _) => 0,
        (Some(Buffer::Tiles(n)), _) => n,
        (Some(Buffer::Auto { floor, detrend }), Some(test)) if detrend == test.detrend => {
            (test.range_tiles.ceil() as usize).max(floor)
        }
        (Some(Buffer::Auto { detrend, .. }), _) => bail!(
            "split.valid_buffer: auto (detrend {}) needs split.buffer: auto with the same trend (one variogram, recorded in split_buffer.json, serves both); or set a number of tiles",
            detrend.name()
        ),
    })
}

/// More folds than this is a typo: a spec expands into one run per fold (and `usize::MAX` of
/// them would not fit in memory).
const MAX_FOLDS: usize = 1000;

fn cv_errors(errors: &mut Vec<String>, folds: usize, fold: Option<usize>, valid: f64) {
    if folds < 2 {
        errors.push(format!(
            "split.folds: {folds}; cross-validation needs at least 2"
        ));
    }
    if folds > MAX_FOLDS {
        errors.push(format!(
            "split.folds: {folds}; at most {MAX_FOLDS} (each fold is a run)"
        ));
    }
    if let Some(f) = fold {
        if f >= folds {
            errors.push(format!(
                "split.fold: {f}; folds are numbered 0 to {}",
                folds.saturating_sub(1)
            ));
        }
    }
    if !(valid > 0.0 && valid < 1.0) {
        errors.push(format!(
            "split.valid: {valid} must lie strictly between 0 and 1"
        ));
    }
}

fn fold_to_test(fold: Option<usize>, folds: usize) -> Result<usize> {
    match fold {
        Some(f) if f < folds => Ok(f),
        Some(f) => bail!("split.fold: {f}; folds are numbered 0 to {}", folds - 1),
        None => bail!(
            "split.fold is not set: a cross-validation split is one run per fold (`opencarbon run` expands a spec into its folds; a single run sets split.fold)"
        ),
    }
}

/// `samples` as `block`×`block` blocks dealt into `folds` folds balanced by sample count: blocks
/// in a seeded order, the larger first, each to the fold holding the fewest samples so far.
pub fn deal_blocks(
    city: &City,
    samples: &[usize],
    block: usize,
    folds: usize,
    seed: u64,
) -> Vec<Vec<usize>> {
    let mut blocks = shuffled_blocks(city, samples, block, seed);
    // Stable: equal sizes keep the seeded order.
    blocks.sort_by_key(|b| std::cmp::Reverse(b.len()));
    let mut dealt = vec![Vec::new(); folds.max(1)];
    for tiles in blocks {
        let smallest = (0..dealt.len())
            .min_by_key(|&f| dealt[f].len())
            .expect("at least one fold");
        dealt[smallest].extend(tiles);
    }
    dealt
}

/// The tiles of `rest` farther than `buffer` tiles (Chebyshev) from every tile of `test`.
fn outside_buffer(city: &City, rest: &[usize], test: &[usize], buffer: usize) -> Vec<usize> {
    if buffer == 0 {
        return rest.to_vec();
    }
    let r = buffer as i64;
    // A wide buffer (`auto` can give tens of tiles): fewer test tiles than window cells.
    if (2 * buffer + 1).saturating_mul(2 * buffer + 1) > test.len() {
        let test_keys: Vec<TileKey> = test.iter().map(|&i| city.keys[i]).collect();
        return rest
            .iter()
            .copied()
            .filter(|&i| {
                let k = city.keys[i];
                !test_keys
                    .iter()
                    .any(|t| (t.x - k.x).abs() <= r && (t.y - k.y).abs() <= r)
            })
            .collect();
    }
    let test_keys: std::collections::HashSet<TileKey> =
        test.iter().map(|&i| city.keys[i]).collect();
    rest.iter()
        .copied()
        .filter(|&i| {
            let k = city.keys[i];
            !(-r..=r).any(|dy| {
                (-r..=r).any(|dx| {
                    test_keys.contains(&TileKey {
                        x: k.x + dx,
                        y: k.y + dy,
                    })
                })
            })
        })
        .collect()
}

/// `split.csv` of a run: each of `samples` with its split (`unused`: in none, e.g. inside a
/// cross-validation buffer), in that order. `kind: file` reads it back.
pub fn to_csv(city: &City, split: &Split, samples: &[usize]) -> String {
    let mut label = vec![None; city.len()];
    for (name, part) in [
        ("train", &split.train),
        ("valid", &split.valid),
        ("test", &split.test),
    ] {
        for &i in part {
            label[i] = Some(name);
        }
    }
    let mut out = String::from("x,y,split\n");
    for &i in samples {
        let k = city.keys[i];
        out.push_str(&format!(
            "{},{},{}\n",
            k.x,
            k.y,
            label[i].unwrap_or("unused")
        ));
    }
    out
}

fn read_split_file(path: &PathBuf, city: &City) -> Result<Split> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading split file {}", path.display()))?;
    let index: HashMap<TileKey, usize> = city.index();
    let mut split = Split {
        train: vec![],
        valid: vec![],
        test: vec![],
    };
    let mut listed: HashMap<usize, usize> = HashMap::new();
    let mut lines = text.lines().enumerate();
    let header = lines
        .next()
        .map(|(_, h)| h.trim().to_string())
        .unwrap_or_default();
    if header.replace(' ', "") != "x,y,split" {
        bail!(
            "{}: line 1 must be the header `x,y,split`, found `{header}`",
            path.display()
        );
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
        let x = fields[0]
            .parse::<i64>()
            .with_context(|| format!("{}: x `{}` is not an integer", at(), fields[0]))?;
        let y = fields[1]
            .parse::<i64>()
            .with_context(|| format!("{}: y `{}` is not an integer", at(), fields[1]))?;
        let key = TileKey { x, y };
        let &i = index.get(&key).with_context(|| {
            format!("{}: tile {key} is not a tile of city `{}`", at(), city.name)
        })?;
        if city.emission[i] <= 0.0 {
            bail!("{}: tile {key} has emission 0, so it is not a sample", at());
        }
        if let Some(first) = listed.insert(i, no + 1) {
            bail!("{}: tile {key} is already listed on line {first}", at());
        }
        match fields[2] {
            "train" => split.train.push(i),
            "valid" => split.valid.push(i),
            "test" => split.test.push(i),
            "unused" => {}
            other => bail!(
                "{}: split `{other}` must be train, valid, test or unused",
                at()
            ),
        }
    }
    Ok(split)
}
