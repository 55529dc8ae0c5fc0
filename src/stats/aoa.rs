//! Area of applicability (Meyer & Pebesma 2021): which tiles of a new area have inputs like the
//! training tiles'.
//!
//! Each tile is described by a few input statistics: per image channel the pixel mean and
//! standard deviation, per POI channel ln(1 + mean density), and the covariates. They are
//! standardised with the training tiles' mean and std (all weights 1: no variable importance is
//! estimated). A tile's dissimilarity index (DI) is its distance to the nearest training tile over
//! the mean distance between training tiles. The threshold comes from the training tiles' own DIs,
//! each against the training tiles more than [`EXCLUDE`] tiles away (a spatial leave-out: the
//! immediate neighbours share ODIAC pixels and look alike), as the largest of them not above
//! Q3 + 1.5·IQR.

use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::City;
use crate::model::Modality;

/// Training tiles within this Chebyshev distance are left out of a training tile's DI.
pub const EXCLUDE: i64 = 2;
/// At most this many training tiles are kept as the reference set (seeded sample).
pub const MAX_REFERENCE: usize = 3000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applicability {
    pub features: Vec<String>,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    /// Standardised descriptors of the reference training tiles, with their keys.
    pub reference: Vec<Vec<f32>>,
    pub reference_keys: Vec<(i64, i64)>,
    pub mean_distance: f64,
    pub threshold: f64,
}

/// The descriptors of `tiles` of `city`, over the modalities the model reads, and their names.
pub fn descriptors(
    city: &City,
    tiles: &[usize],
    modalities: &[Modality],
) -> (Vec<String>, Vec<Vec<f64>>) {
    let images = city
        .images
        .as_ref()
        .filter(|_| modalities.contains(&Modality::Image));
    let poi = city
        .poi
        .as_ref()
        .filter(|_| modalities.contains(&Modality::Poi));
    let tabular = city
        .tabular
        .as_ref()
        .filter(|_| modalities.contains(&Modality::Tabular));
    let mut names = Vec::new();
    if images.is_some() {
        for c in ["red", "green", "blue"] {
            names.push(format!("image:{c}:mean"));
            names.push(format!("image:{c}:std"));
        }
    }
    if let Some(p) = poi {
        names.extend(p.categories.iter().map(|c| format!("poi:{c}")));
    }
    if let Some(t) = tabular {
        names.extend(t.columns.iter().cloned());
    }
    let rows = tiles
        .iter()
        .map(|&i| {
            let mut row = Vec::with_capacity(names.len());
            if let Some(s) = images {
                let plane = s.side * s.side;
                for c in 0..3 {
                    let px = &s.data[(i * 3 + c) * plane..(i * 3 + c + 1) * plane];
                    let m = px.iter().map(|&v| v as f64).sum::<f64>() / plane as f64;
                    let v = px.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / plane as f64;
                    row.extend([m, v.sqrt()]);
                }
            }
            if let Some(p) = poi {
                let (c, plane) = (p.categories.len(), p.side * p.side);
                for ch in 0..c {
                    let cells = &p.data[(i * c + ch) * plane..(i * c + ch + 1) * plane];
                    let sum = cells.iter().map(|&v| v as f64).sum::<f64>() * p.scale[ch] as f64;
                    row.push((sum / plane as f64).ln_1p());
                }
            }
            if let Some(t) = tabular {
                let f = t.columns.len();
                row.extend(t.values[i * f..(i + 1) * f].iter().map(|&v| v as f64));
            }
            row
        })
        .collect();
    (names, rows)
}

fn distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

impl Applicability {
    /// From the training tiles of `city`.
    pub fn fit(city: &City, train: &[usize], modalities: &[Modality], seed: u64) -> Self {
        let mut train: Vec<usize> = train.to_vec();
        if train.len() > MAX_REFERENCE {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xa0a);
            let mut keep: Vec<usize> = sample(&mut rng, train.len(), MAX_REFERENCE).into_vec();
            keep.sort_unstable();
            train = keep.into_iter().map(|j| train[j]).collect();
        }
        let (features, rows) = descriptors(city, &train, modalities);
        let keys: Vec<(i64, i64)> = train
            .iter()
            .map(|&i| (city.keys[i].x, city.keys[i].y))
            .collect();
        Self::from_rows(features, rows, keys)
    }

    /// The area of applicability of an ensemble: its members' reference tiles pooled (each tile
    /// once, by key) and fitted again as one training set, so the ensemble's DI and threshold are
    /// its own, not averages of its members'. Members that saw different tiles (the folds of a
    /// cross-validated variant) pool into the whole of what the ensemble saw. The raw descriptors
    /// come back from each member's standardised f32 reference (to about 1e-7 relative).
    pub fn pooled(members: &[&Applicability], seed: u64) -> Result<Self, String> {
        let Some(first) = members.first() else {
            return Err("no member to pool".into());
        };
        if let Some(other) = members.iter().find(|m| m.features != first.features) {
            return Err(format!(
                "members describe tiles by different inputs ({} against {})",
                first.features.join(", "),
                other.features.join(", ")
            ));
        }
        let mut seen = std::collections::HashSet::new();
        let (mut keys, mut rows) = (Vec::new(), Vec::new());
        for m in members {
            for (key, r) in m.reference_keys.iter().zip(&m.reference) {
                if seen.insert(*key) {
                    keys.push(*key);
                    rows.push(
                        r.iter()
                            .enumerate()
                            .map(|(c, &v)| v as f64 * m.std[c] + m.mean[c])
                            .collect::<Vec<f64>>(),
                    );
                }
            }
        }
        // The same order whatever order the members come in, then the same seeded sample as fit.
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by_key(|&i| keys[i]);
        if order.len() > MAX_REFERENCE {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xa0a);
            let mut keep: Vec<usize> = sample(&mut rng, order.len(), MAX_REFERENCE).into_vec();
            keep.sort_unstable();
            order = keep.into_iter().map(|j| order[j]).collect();
        }
        Ok(Self::from_rows(
            first.features.clone(),
            order.iter().map(|&i| rows[i].clone()).collect(),
            order.iter().map(|&i| keys[i]).collect(),
        ))
    }

    /// Standardisation, mean distance and threshold of raw reference descriptors.
    fn from_rows(
        features: Vec<String>,
        rows: Vec<Vec<f64>>,
        reference_keys: Vec<(i64, i64)>,
    ) -> Self {
        let d = features.len();
        let n = reference_keys.len().max(1) as f64;
        let mean: Vec<f64> = (0..d)
            .map(|c| rows.iter().map(|r| r[c]).sum::<f64>() / n)
            .collect();
        let std: Vec<f64> = (0..d)
            .map(|c| {
                let v = rows.iter().map(|r| (r[c] - mean[c]).powi(2)).sum::<f64>() / n;
                if v > 1e-12 {
                    v.sqrt()
                } else {
                    1.0
                }
            })
            .collect();
        let scale = |row: &[f64]| -> Vec<f32> {
            row.iter()
                .enumerate()
                .map(|(c, v)| ((v - mean[c]) / std[c]) as f32)
                .collect()
        };
        let reference: Vec<Vec<f32>> = rows.iter().map(|r| scale(r)).collect();
        let mut sum = 0.0;
        let mut pairs = 0usize;
        for a in 0..reference.len() {
            for b in a + 1..reference.len() {
                sum += distance(&reference[a], &reference[b]);
                pairs += 1;
            }
        }
        let mean_distance = if pairs > 0 && sum > 0.0 {
            sum / pairs as f64
        } else {
            1.0
        };
        let mut own: Vec<f64> = (0..reference.len())
            .filter_map(|a| {
                let (ax, ay) = reference_keys[a];
                (0..reference.len())
                    .filter(|&b| {
                        let (bx, by) = reference_keys[b];
                        (ax - bx).abs().max((ay - by).abs()) > EXCLUDE
                    })
                    .map(|b| distance(&reference[a], &reference[b]))
                    .min_by(f64::total_cmp)
            })
            .map(|dist| dist / mean_distance)
            .collect();
        own.sort_by(f64::total_cmp);
        let threshold = if own.is_empty() {
            f64::INFINITY
        } else {
            let q = |p: f64| own[((own.len() - 1) as f64 * p).round() as usize];
            let fence = q(0.75) + 1.5 * (q(0.75) - q(0.25));
            own.iter()
                .copied()
                .filter(|&v| v <= fence)
                .fold(0.0, f64::max)
        };
        Self {
            features,
            mean,
            std,
            reference,
            reference_keys,
            mean_distance,
            threshold,
        }
    }

    /// The DI of `tiles` of `city` (which must carry the training inputs), in that order.
    pub fn index(&self, city: &City, tiles: &[usize], modalities: &[Modality]) -> Vec<f64> {
        let (_, rows) = descriptors(city, tiles, modalities);
        rows.iter()
            .map(|row| {
                let x: Vec<f32> = row
                    .iter()
                    .enumerate()
                    .map(|(c, v)| ((v - self.mean[c]) / self.std[c]) as f32)
                    .collect();
                self.reference
                    .iter()
                    .map(|r| distance(&x, r))
                    .fold(f64::INFINITY, f64::min)
                    / self.mean_distance
            })
            .collect()
    }
}
