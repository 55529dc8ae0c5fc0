//! Spatial chunks: an area is predicted `side`×`side` tiles at a time, each chunk with a halo of
//! the neighbourhood radius, so the device holds one chunk's tiles and activations, not the area's.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::data::{City, ImageStack, PoiStack, TileKey};

/// One chunk: the tiles it predicts (`core`, indices into the area) and the tiles it must load
/// (`tiles`: the core and its halo, sorted).
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub core: Vec<usize>,
    pub tiles: Vec<usize>,
}

/// The chunks of `city`, in (y, x) block order.
pub fn plan(city: &City, side: usize, halo: usize) -> Vec<Chunk> {
    let side = side.max(1) as i64;
    let index: HashMap<TileKey, usize> = city.index();
    let mut blocks: BTreeMap<(i64, i64), Vec<usize>> = BTreeMap::new();
    for (i, k) in city.keys.iter().enumerate() {
        blocks
            .entry((k.y.div_euclid(side), k.x.div_euclid(side)))
            .or_default()
            .push(i);
    }
    let h = halo as i64;
    blocks
        .into_values()
        .map(|core| {
            let mut tiles: BTreeSet<usize> = core.iter().copied().collect();
            for &i in &core {
                let k = city.keys[i];
                for dy in -h..=h {
                    for dx in -h..=h {
                        if let Some(&j) = index.get(&TileKey {
                            x: k.x + dx,
                            y: k.y + dy,
                        }) {
                            tiles.insert(j);
                        }
                    }
                }
            }
            Chunk {
                core,
                tiles: tiles.into_iter().collect(),
            }
        })
        .collect()
}

/// The tiles `rows` of `city` (in that order) as a city of their own.
pub fn subset(city: &City, rows: &[usize]) -> City {
    let pick = |data: &[u8], per: usize| -> Vec<u8> {
        rows.iter()
            .flat_map(|&i| data[i * per..(i + 1) * per].iter().copied())
            .collect()
    };
    let mut sub = city.rows_without_rasters(rows);
    sub.images = city.images.as_ref().map(|s| ImageStack {
        side: s.side,
        data: pick(&s.data, 3 * s.side * s.side),
    });
    sub.poi = city.poi.as_ref().map(|p| PoiStack {
        categories: p.categories.clone(),
        side: p.side,
        data: pick(&p.data, p.categories.len() * p.side * p.side),
        scale: p.scale.clone(),
    });
    sub
}
