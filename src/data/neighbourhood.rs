//! The (2k+1)² window of every tile, with `None` where the neighbour is not a tile of the city.

use super::city::{City, TileKey};
use crate::model::config::WindowOrder;

#[derive(Debug, Clone, PartialEq)]
pub struct NeighbourIndex {
    /// Radius k.
    pub radius: usize,
    /// Per tile, w² entries in row-major order (by default row = y offset −k..k, column = x
    /// offset −k..k; [`WindowOrder::Xy`] swaps them).
    pub windows: Vec<Vec<Option<usize>>>,
}

impl NeighbourIndex {
    pub fn new(city: &City, radius: usize) -> Self {
        Self::with_order(city, radius, WindowOrder::Yx)
    }

    /// Windows listed in `order` (`Xy`: row = x offset, as the script's neighbour matrix).
    pub fn with_order(city: &City, radius: usize, order: WindowOrder) -> Self {
        let index = city.index();
        let k = radius as i64;
        let windows = city
            .keys
            .iter()
            .map(|key| {
                let mut window = Vec::with_capacity((2 * radius + 1).pow(2));
                for row in -k..=k {
                    for col in -k..=k {
                        let (dx, dy) = match order {
                            WindowOrder::Yx => (col, row),
                            WindowOrder::Xy => (row, col),
                        };
                        window.push(
                            index
                                .get(&TileKey {
                                    x: key.x + dx,
                                    y: key.y + dy,
                                })
                                .copied(),
                        );
                    }
                }
                window
            })
            .collect();
        Self { radius, windows }
    }

    pub fn window_len(&self) -> usize {
        (2 * self.radius + 1).pow(2)
    }

    /// Position of the centre in a window.
    pub fn centre_position(&self) -> usize {
        self.window_len() / 2
    }
}
