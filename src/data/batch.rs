//! From sample indices to the tensors a forward pass needs.
//!
//! The tile store is uploaded to the device once ([`DeviceTiles`], u8 where the data is u8); a
//! batch then selects the rows it needs on the device and casts them, so no float32 copies of
//! tiles are gathered on the host per batch.

use std::collections::HashMap;

use burn::tensor::{DType, Device, Int, Tensor, TensorData};

use super::city::City;
use super::neighbourhood::NeighbourIndex;
use crate::model::config::{EncoderBatching, MissingNeighbour};
use crate::model::{BatchLayout, TileBatch};

/// The city's tiles on the device.
#[derive(Debug, Clone)]
pub struct DeviceTiles {
    images: Option<Tensor<4, Int>>,
    poi: Option<Tensor<4, Int>>,
    poi_scale: Option<Tensor<4>>,
    tabular: Option<Tensor<2>>,
    device: Device,
}

/// Per-column mean and standard deviation for the covariates (from the training tiles), and,
/// with `model.clip_covariates`, their range there.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Standardizer {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Per column (min, max) over the training tiles: values outside are clamped to it before
    /// standardising, so a tile unlike any the model saw (another city, zero-shot) meets the
    /// edge of what it learned, as a tree does, instead of a ReLU network's linear extrapolation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip: Option<Vec<(f32, f32)>>,
}

impl Standardizer {
    pub fn fit(city: &City, tiles: &[usize], clip: bool) -> Option<Self> {
        let t = city.tabular.as_ref()?;
        let f = t.columns.len();
        let range = |c: usize| {
            tiles
                .iter()
                .map(|&i| t.values[i * f + c])
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
                    (lo.min(v), hi.max(v))
                })
        };
        let n = tiles.len().max(1) as f64;
        let mut mean = vec![0f64; f];
        let mut var = vec![0f64; f];
        for &i in tiles {
            for c in 0..f {
                mean[c] += t.values[i * f + c] as f64 / n;
            }
        }
        for &i in tiles {
            for c in 0..f {
                var[c] += (t.values[i * f + c] as f64 - mean[c]).powi(2) / n;
            }
        }
        Some(Self {
            mean: mean.iter().map(|&m| m as f32).collect(),
            // A constant column stays constant (0) rather than dividing by zero.
            std: var
                .iter()
                .map(|&v| if v > 1e-12 { v.sqrt() as f32 } else { 1.0 })
                .collect(),
            clip: (clip && !tiles.is_empty()).then(|| (0..f).map(range).collect()),
        })
    }

    /// Column `c`'s value `v` as the network sees it.
    pub fn apply(&self, c: usize, v: f32) -> f32 {
        let v = match &self.clip {
            Some(range) => v.clamp(range[c].0, range[c].1),
            None => v,
        };
        (v - self.mean[c]) / self.std[c]
    }
}

impl DeviceTiles {
    /// Uploads every tile of `city`; covariates are standardised with `standardizer`.
    pub fn upload(city: &City, standardizer: Option<&Standardizer>, device: &Device) -> Self {
        let n = city.len();
        let u8_tensor = |data: &[u8], shape: [usize; 4]| {
            Tensor::<4, Int>::from_data(TensorData::new(data.to_vec(), shape), (device, DType::U8))
        };
        let images = city
            .images
            .as_ref()
            .map(|s| u8_tensor(&s.data, [n, 3, s.side, s.side]));
        let poi = city
            .poi
            .as_ref()
            .map(|p| u8_tensor(&p.data, [n, p.categories.len(), p.side, p.side]));
        let poi_scale = city.poi.as_ref().map(|p| {
            Tensor::<1>::from_floats(p.scale.as_slice(), device).reshape([1, p.scale.len(), 1, 1])
        });
        let tabular = city.tabular.as_ref().map(|t| {
            let f = t.columns.len();
            let values: Vec<f32> = match standardizer {
                Some(s) => t
                    .values
                    .iter()
                    .enumerate()
                    .map(|(j, &v)| s.apply(j % f, v))
                    .collect(),
                None => t.values.clone(),
            };
            Tensor::<2>::from_data(TensorData::new(values, [n, f]), device)
        });
        Self {
            images,
            poi,
            poi_scale,
            tabular,
            device: device.clone(),
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The inputs of the given tiles as float tensors; with `autodiff` they join the autodiff
    /// graph as constants (the store itself stays a plain tensor).
    pub fn gather(&self, tiles: &[usize], autodiff: bool) -> TileBatch {
        let ids: Vec<i64> = tiles.iter().map(|&t| t as i64).collect();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [tiles.len()]), &self.device);
        let attach = |t: Tensor<4>| if autodiff { t.autodiff() } else { t };
        TileBatch {
            image: self
                .images
                .as_ref()
                .map(|t| attach(t.clone().select(0, ids.clone()).float())),
            poi: match (&self.poi, &self.poi_scale) {
                (Some(t), Some(scale)) => Some(attach(
                    t.clone().select(0, ids.clone()).float() * scale.clone(),
                )),
                _ => None,
            },
            tabular: self.tabular.as_ref().map(|t| {
                let rows = t.clone().select(0, ids.clone());
                if autodiff {
                    rows.autodiff()
                } else {
                    rows
                }
            }),
        }
    }
}

/// Which tiles a batch encodes and where each sample finds its centre and neighbours.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchPlan {
    /// Tiles to encode, in row order.
    pub tiles: Vec<usize>,
    /// Row of each sample's centre.
    pub centre_rows: Vec<i64>,
    /// Rows of each sample's window (B·w²), `tiles.len()` for a masked neighbour; empty without
    /// neighbourhood.
    pub window_rows: Vec<i64>,
    pub encode_chunks: usize,
}

impl BatchPlan {
    /// Plans a batch of `samples` (tile indices). `neighbours` is `None` without neighbourhood.
    pub fn new(
        samples: &[usize],
        neighbours: Option<&NeighbourIndex>,
        batching: EncoderBatching,
        missing: MissingNeighbour,
    ) -> Self {
        let Some(index) = neighbours else {
            return Self {
                tiles: samples.to_vec(),
                centre_rows: (0..samples.len() as i64).collect(),
                window_rows: vec![],
                encode_chunks: 1,
            };
        };
        // The script points a missing neighbour at tile 0; masking uses a zero row instead.
        let resolve = |n: Option<usize>| match (n, missing) {
            (Some(t), _) => Some(t),
            (None, MissingNeighbour::Tile0) => Some(0),
            (None, MissingNeighbour::Mask) => None,
        };
        let w2 = index.window_len();
        let centre = index.centre_position();
        match batching {
            EncoderBatching::Distinct => {
                let mut rows: HashMap<usize, i64> = HashMap::new();
                let mut tiles = Vec::new();
                let mut row_of = |t: usize, tiles: &mut Vec<usize>| {
                    *rows.entry(t).or_insert_with(|| {
                        tiles.push(t);
                        tiles.len() as i64 - 1
                    })
                };
                let centre_rows: Vec<i64> =
                    samples.iter().map(|&s| row_of(s, &mut tiles)).collect();
                let mut slots = Vec::with_capacity(samples.len() * w2);
                for &s in samples {
                    for &n in &index.windows[s] {
                        slots.push(resolve(n).map(|t| row_of(t, &mut tiles)));
                    }
                }
                let zero_row = tiles.len() as i64;
                let window_rows = slots.into_iter().map(|r| r.unwrap_or(zero_row)).collect();
                Self {
                    tiles,
                    centre_rows,
                    window_rows,
                    encode_chunks: 1,
                }
            }
            EncoderBatching::PerPosition => {
                // Chunk j holds position j of every sample: tile (b, j) is row j·B + b. A masked
                // position still encodes a placeholder (the centre) so chunks stay equal.
                let b = samples.len();
                let mut tiles = Vec::with_capacity(b * w2);
                let mut masked = vec![false; b * w2];
                for j in 0..w2 {
                    for (bi, &s) in samples.iter().enumerate() {
                        match resolve(index.windows[s][j]) {
                            Some(t) => tiles.push(t),
                            None => {
                                tiles.push(s);
                                masked[j * b + bi] = true;
                            }
                        }
                    }
                }
                let zero_row = tiles.len() as i64;
                let centre_rows = (0..b).map(|bi| (centre * b + bi) as i64).collect();
                let mut window_rows = Vec::with_capacity(b * w2);
                for bi in 0..b {
                    for j in 0..w2 {
                        let row = j * b + bi;
                        window_rows.push(if masked[row] { zero_row } else { row as i64 });
                    }
                }
                Self {
                    tiles,
                    centre_rows,
                    window_rows,
                    encode_chunks: w2,
                }
            }
            EncoderBatching::Script => {
                // Tile (b, j) is row b·w² + j; the model encodes w² consecutive chunks of B rows.
                // A masked position encodes a placeholder (the centre), as in PerPosition.
                let b = samples.len();
                let mut tiles = Vec::with_capacity(b * w2);
                let mut masked = Vec::with_capacity(b * w2);
                for &s in samples {
                    for &n in &index.windows[s] {
                        tiles.push(resolve(n).unwrap_or(s));
                        masked.push(resolve(n).is_none());
                    }
                }
                let zero_row = tiles.len() as i64;
                let centre_rows = (0..b).map(|bi| (bi * w2 + centre) as i64).collect();
                let window_rows = masked
                    .iter()
                    .enumerate()
                    .map(|(row, &m)| if m { zero_row } else { row as i64 })
                    .collect();
                Self {
                    tiles,
                    centre_rows,
                    window_rows,
                    encode_chunks: w2,
                }
            }
        }
    }

    pub fn layout(&self, device: &Device) -> BatchLayout {
        let int =
            |v: &[i64]| Tensor::<1, Int>::from_data(TensorData::new(v.to_vec(), [v.len()]), device);
        BatchLayout {
            batch_size: self.centre_rows.len(),
            centre: int(&self.centre_rows),
            window: (!self.window_rows.is_empty()).then(|| int(&self.window_rows)),
            encode_chunks: self.encode_chunks,
        }
    }
}

/// The authors' data path, for benchmarks only: the tiles of a batch gathered on the host as
/// float32 and copied to the device on every call (what `main_contrastive.py` does).
pub fn host_float32_batch(
    city: &City,
    tiles: &[usize],
    device: &Device,
    autodiff: bool,
) -> TileBatch {
    let attach = |t: Tensor<4>| if autodiff { t.autodiff() } else { t };
    let image = city.images.as_ref().map(|s| {
        let n = 3 * s.side * s.side;
        let data: Vec<f32> = tiles
            .iter()
            .flat_map(|&t| s.data[t * n..(t + 1) * n].iter().map(|&v| v as f32))
            .collect();
        attach(Tensor::from_data(
            TensorData::new(data, [tiles.len(), 3, s.side, s.side]),
            device,
        ))
    });
    let poi = city.poi.as_ref().map(|p| {
        let c = p.categories.len();
        let plane = p.side * p.side;
        let data: Vec<f32> = tiles
            .iter()
            .flat_map(|&t| {
                (0..c).flat_map(move |ch| {
                    p.data[(t * c + ch) * plane..(t * c + ch + 1) * plane]
                        .iter()
                        .map(move |&v| v as f32 * p.scale[ch])
                })
            })
            .collect();
        attach(Tensor::from_data(
            TensorData::new(data, [tiles.len(), c, p.side, p.side]),
            device,
        ))
    });
    TileBatch {
        image,
        poi,
        tabular: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::city::{Tabular, TileKey};

    fn city(values: &[f32]) -> City {
        City {
            name: "covariates".into(),
            keys: (0..values.len() as i64)
                .map(|x| TileKey { x, y: 0 })
                .collect(),
            emission: vec![1.0; values.len()],
            images: None,
            poi: None,
            tabular: Some(Tabular {
                columns: vec!["pop".into()],
                values: values.to_vec(),
            }),
            district: None,
        }
    }

    #[test]
    fn clipping_holds_covariates_to_the_training_range() {
        let c = city(&[1.0, 2.0, 3.0, -10.0, 40.0]);
        let train = [0, 1, 2];
        let plain = Standardizer::fit(&c, &train, false).unwrap();
        let clipped = Standardizer::fit(&c, &train, true).unwrap();
        assert_eq!(
            (plain.mean.clone(), plain.std.clone()),
            (clipped.mean.clone(), clipped.std.clone())
        );
        assert_eq!(clipped.clip, Some(vec![(1.0, 3.0)]));
        let std = (2.0f32 / 3.0).sqrt();
        // Inside the range both agree; outside, the clipped one stops at the edge.
        assert_eq!(plain.apply(0, 2.5), clipped.apply(0, 2.5));
        assert!((plain.apply(0, 40.0) - 38.0 / std).abs() < 1e-4);
        assert!((clipped.apply(0, 40.0) - 1.0 / std).abs() < 1e-6);
        assert!((clipped.apply(0, -10.0) + 1.0 / std).abs() < 1e-6);
        // A bundle written before clipping existed reads as unclipped.
        let old: Standardizer = serde_json::from_str(r#"{"mean": [2.0], "std": [0.5]}"#).unwrap();
        assert_eq!(old.clip, None);
        assert_eq!(old.apply(0, 3.0), 2.0);
    }
}
