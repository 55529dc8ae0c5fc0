//! A city in memory: tile keys, raw emissions and the modalities, stored compactly
//! (images u8, POI rasters u8 with a per-channel scale, covariates f32).

use std::collections::HashMap;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::model::InputShapes;

/// A web-map tile index; neighbours are (x±1, y±1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TileKey {
    pub x: i64,
    pub y: i64,
}

impl std::fmt::Display for TileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({}, {})", self.x, self.y)
    }
}

/// Satellite images, [N, 3, side, side] RGB u8 in tile order.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageStack {
    pub side: usize,
    pub data: Vec<u8>,
}

/// POI rasters, [N, C, side, side] u8; the value of channel c is `u8 · scale[c]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PoiStack {
    pub categories: Vec<String>,
    pub side: usize,
    pub data: Vec<u8>,
    pub scale: Vec<f32>,
}

/// Tabular covariates, [N, F] f32 row-major in tile order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tabular {
    pub columns: Vec<String>,
    pub values: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct City {
    pub name: String,
    pub keys: Vec<TileKey>,
    /// Raw emission per tile (≥ 0). Tiles with 0 are not samples but stay neighbours.
    pub emission: Vec<f64>,
    pub images: Option<ImageStack>,
    pub poi: Option<PoiStack>,
    pub tabular: Option<Tabular>,
    /// Optional district name per tile, for district hold-outs.
    pub district: Option<Vec<String>>,
}

impl City {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Tile indices that are samples: emission > 0.
    pub fn samples(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| self.emission[i] > 0.0)
            .collect()
    }

    /// The model's target for tile `i`: ln(emission).
    pub fn target(&self, i: usize) -> f64 {
        self.emission[i].ln()
    }

    /// The tiles `rows` (in that order) as a city of their own, without images or POI rasters
    /// (`None`): keys, targets, covariates and districts.
    pub fn rows_without_rasters(&self, rows: &[usize]) -> City {
        City {
            name: self.name.clone(),
            keys: rows.iter().map(|&i| self.keys[i]).collect(),
            emission: rows.iter().map(|&i| self.emission[i]).collect(),
            images: None,
            poi: None,
            tabular: self.tabular.as_ref().map(|t| {
                let f = t.columns.len();
                Tabular {
                    columns: t.columns.clone(),
                    values: rows
                        .iter()
                        .flat_map(|&i| t.values[i * f..(i + 1) * f].iter().copied())
                        .collect(),
                }
            }),
            district: self
                .district
                .as_ref()
                .map(|d| rows.iter().map(|&i| d[i].clone()).collect()),
        }
    }

    pub fn index(&self) -> HashMap<TileKey, usize> {
        self.keys.iter().enumerate().map(|(i, k)| (*k, i)).collect()
    }

    pub fn shapes(&self) -> InputShapes {
        InputShapes {
            image_size: self.images.as_ref().map(|s| s.side),
            poi: self.poi.as_ref().map(|p| (p.categories.len(), p.side)),
            tabular: self.tabular.as_ref().map(|t| t.columns.len()),
        }
    }

    /// Bytes the tile store holds.
    pub fn memory_bytes(&self) -> usize {
        self.images.as_ref().map_or(0, |s| s.data.len())
            + self
                .poi
                .as_ref()
                .map_or(0, |p| p.data.len() + 4 * p.scale.len())
            + self.tabular.as_ref().map_or(0, |t| 4 * t.values.len())
            + self.keys.len() * (16 + 8)
    }

    /// Bytes the same tiles take as float32 (what the authors' script holds on the host).
    pub fn float32_bytes(&self) -> usize {
        4 * (self.images.as_ref().map_or(0, |s| s.data.len())
            + self.poi.as_ref().map_or(0, |p| p.data.len())
            + self.tabular.as_ref().map_or(0, |t| t.values.len()))
    }

    /// Checks sizes and values; the error names the tile.
    pub fn validate(&self) -> Result<()> {
        let n = self.len();
        if n == 0 {
            bail!("city `{}` has no tiles", self.name);
        }
        if self.emission.len() != n {
            bail!(
                "city `{}`: {} emissions for {} tiles",
                self.name,
                self.emission.len(),
                n
            );
        }
        let mut seen = HashMap::new();
        for (i, key) in self.keys.iter().enumerate() {
            if let Some(j) = seen.insert(*key, i) {
                bail!(
                    "city `{}`: tile {key} appears twice (rows {j} and {i})",
                    self.name
                );
            }
            let e = self.emission[i];
            if !e.is_finite() || e < 0.0 {
                bail!(
                    "city `{}`: tile {key} has emission {e}; it must be finite and ≥ 0",
                    self.name
                );
            }
        }
        if let Some(s) = &self.images {
            if s.data.len() != n * 3 * s.side * s.side {
                bail!(
                    "city `{}`: image store holds {} bytes, expected {n}×3×{}×{}",
                    self.name,
                    s.data.len(),
                    s.side,
                    s.side
                );
            }
        }
        if let Some(p) = &self.poi {
            let c = p.categories.len();
            if p.data.len() != n * c * p.side * p.side || p.scale.len() != c {
                bail!(
                    "city `{}`: POI store does not hold {n}×{c}×{}×{} values with {c} scales",
                    self.name,
                    p.side,
                    p.side
                );
            }
        }
        if let Some(t) = &self.tabular {
            if t.values.len() != n * t.columns.len() {
                bail!(
                    "city `{}`: tabular store does not hold {n}×{} values",
                    self.name,
                    t.columns.len()
                );
            }
            if let Some(pos) = t.values.iter().position(|v| !v.is_finite()) {
                let (row, col) = (pos / t.columns.len(), pos % t.columns.len());
                bail!(
                    "city `{}`: tile {} has a non-finite `{}`",
                    self.name,
                    self.keys[row],
                    t.columns[col]
                );
            }
        }
        if let Some(d) = &self.district {
            if d.len() != n {
                bail!("city `{}`: {} districts for {n} tiles", self.name, d.len());
            }
        }
        if self.samples().is_empty() {
            bail!(
                "city `{}`: no tile has a positive emission, so there is nothing to learn",
                self.name
            );
        }
        Ok(())
    }
}
