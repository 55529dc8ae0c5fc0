//! The transfer matrix as a heat map, one panel per variant: rows the city trained on, columns
//! the city tested on; the diagonal is the training city's own test split, off-diagonal cells
//! zero-shot on every target tile. Mean test R² over seeds, written in each cell.

use std::collections::BTreeMap;

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::figure::{text, viridis, Drawn, Figure};
use super::inputs::Inputs;

pub struct Matrix {
    pub variant: String,
    /// Mean R² per (source, target).
    pub cells: BTreeMap<(String, String), f64>,
}

pub struct TransferHeatmap {
    pub cities: Vec<String>,
    pub matrices: Vec<Matrix>,
    /// The colour scale: R² from `lo` (clipped at −1) to 1.
    pub lo: f64,
}

impl TransferHeatmap {
    /// None when no run holds zero-shot transfer rows.
    pub fn of(inputs: &Inputs) -> Option<Self> {
        let mut cities: Vec<String> = inputs.datasets.clone();
        let mut matrices = Vec::new();
        for variant in &inputs.variants {
            let mut sums: BTreeMap<(String, String), (f64, usize)> = BTreeMap::new();
            let mut add = |s: &str, t: &str, v: f64| {
                let e = sums
                    .entry((s.to_string(), t.to_string()))
                    .or_insert((0.0, 0));
                e.0 += v;
                e.1 += 1;
            };
            let runs = inputs
                .runs
                .iter()
                .filter(|r| &r.row.variant == variant && !r.row.transfer.is_empty());
            for r in runs {
                if let Some(m) = &r.row.metrics {
                    add(&r.row.dataset, &r.row.dataset, m.r2);
                }
                for t in r
                    .row
                    .transfer
                    .iter()
                    .filter(|t| t.fraction == 0.0 && t.tiles == "all")
                {
                    add(&r.row.dataset, &t.target, t.metrics.r2);
                    if !cities.contains(&t.target) {
                        cities.push(t.target.clone());
                    }
                }
            }
            if sums.len() > 1 {
                matrices.push(Matrix {
                    variant: variant.clone(),
                    cells: sums
                        .into_iter()
                        .map(|(k, (s, n))| (k, s / n as f64))
                        .collect(),
                });
            }
        }
        let lo = matrices
            .iter()
            .flat_map(|m| m.cells.values().copied())
            .fold(0.0f64, f64::min)
            .max(-1.0);
        (!matrices.is_empty()).then_some(Self {
            cities,
            matrices,
            lo,
        })
    }

    fn grid(&self) -> (usize, usize) {
        let cols = self.matrices.len().min(4);
        (self.matrices.len().div_ceil(cols), cols)
    }

    pub fn colour(&self, r2: f64) -> RGBColor {
        viridis((r2.max(self.lo) - self.lo) / (1.0 - self.lo))
    }
}

const CELL: i32 = 96;
const LABEL: i32 = 130;
const TITLE: i32 = 40;
const HEAD: i32 = 48;
const BAR: i32 = 80;

impl TransferHeatmap {
    fn panel_size(&self) -> (i32, i32) {
        let side = self.cities.len() as i32 * CELL;
        (LABEL + side + 30, HEAD + side + 30)
    }

    fn cell_origin(&self, matrix: usize, row: usize, col: usize) -> (i32, i32) {
        let (_, cols) = self.grid();
        let (w, h) = self.panel_size();
        (
            (matrix % cols) as i32 * w + LABEL + col as i32 * CELL,
            TITLE + (matrix / cols) as i32 * h + HEAD + row as i32 * CELL,
        )
    }

    /// A pixel inside cell (row: source, col: target) of a matrix, clear of its label.
    pub fn cell_pixel(&self, matrix: usize, row: usize, col: usize) -> (u32, u32) {
        let (x, y) = self.cell_origin(matrix, row, col);
        ((x + 5) as u32, (y + 5) as u32)
    }
}

impl Figure for TransferHeatmap {
    fn size(&self) -> (u32, u32) {
        let (rows, cols) = self.grid();
        let (w, h) = self.panel_size();
        (
            (cols as i32 * w).max(LABEL + 480) as u32,
            (TITLE + rows as i32 * h + BAR) as u32,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        root.fill(&WHITE).drawn()?;
        root.draw(&Text::new(
            "Transfer: test R² (rows: trained on; columns: tested on; zero-shot off the diagonal)"
                .to_string(),
            (10, 10),
            text(20),
        ))
        .drawn()?;
        for (m, matrix) in self.matrices.iter().enumerate() {
            let (x0, y0) = self.cell_origin(m, 0, 0);
            root.draw(&Text::new(
                matrix.variant.clone(),
                (x0, y0 - HEAD + 2),
                text(18),
            ))
            .drawn()?;
            for (j, target) in self.cities.iter().enumerate() {
                root.draw(&Text::new(
                    short(target, 11),
                    (x0 + j as i32 * CELL + 4, y0 - 22),
                    text(14),
                ))
                .drawn()?;
            }
            for (i, source) in self.cities.iter().enumerate() {
                let y = y0 + i as i32 * CELL;
                root.draw(&Text::new(
                    short(source, 14),
                    (x0 - LABEL + 4, y + CELL / 2 - 8),
                    text(14),
                ))
                .drawn()?;
                for (j, target) in self.cities.iter().enumerate() {
                    let (x, y) = self.cell_origin(m, i, j);
                    let Some(&r2) = matrix.cells.get(&(source.clone(), target.clone())) else {
                        root.draw(&Rectangle::new(
                            [(x, y), (x + CELL, y + CELL)],
                            RGBColor(235, 235, 235).filled(),
                        ))
                        .drawn()?;
                        continue;
                    };
                    root.draw(&Rectangle::new(
                        [(x, y), (x + CELL, y + CELL)],
                        self.colour(r2).filled(),
                    ))
                    .drawn()?;
                    // Dark text on the light (yellow-green) end of viridis, white elsewhere.
                    let ink = if (r2.max(self.lo) - self.lo) / (1.0 - self.lo) > 0.6 {
                        BLACK
                    } else {
                        WHITE
                    };
                    root.draw(&Text::new(
                        format!("{r2:.2}"),
                        (x + CELL / 2 - 20, y + CELL / 2 - 8),
                        text(16).color(&ink),
                    ))
                    .drawn()?;
                }
            }
            let side = self.cities.len() as i32 * CELL;
            root.draw(&Rectangle::new(
                [(x0, y0), (x0 + side, y0 + side)],
                BLACK.mix(0.5),
            ))
            .drawn()?;
        }
        // Colour bar.
        let (_, h) = self.size();
        let y = h as i32 - BAR + 20;
        let width = 360;
        for i in 0..width {
            let v = self.lo + (1.0 - self.lo) * i as f64 / (width - 1) as f64;
            root.draw(&Rectangle::new(
                [(LABEL + i, y), (LABEL + i + 1, y + 16)],
                self.colour(v).filled(),
            ))
            .drawn()?;
        }
        // The scale stops at −1: lower R² (a worse fit than the target mean) shares its colour.
        let low = if self.lo <= -1.0 {
            format!("R² ≤ {:.2}", self.lo)
        } else {
            format!("R² {:.2}", self.lo)
        };
        root.draw(&Text::new(low, (LABEL - 100, y), text(14)))
            .drawn()?;
        root.draw(&Text::new(
            "1.00".to_string(),
            (LABEL + width + 6, y),
            text(14),
        ))
        .drawn()?;
        Ok(())
    }
}

/// City names cut to `max` characters (about 8 px each at 14 px) to fit a column or row label.
fn short(name: &str, max: usize) -> String {
    if name.chars().count() <= max {
        return name.to_string();
    }
    let mut s: String = name.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}
