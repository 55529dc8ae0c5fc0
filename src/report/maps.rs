//! Maps on the tile grid (x to the right, y down, as `datasets preview` draws them): the target,
//! the reference variant's prediction and its residual for one seed (its folds' test tiles
//! together: out-of-fold predictions under cross-validation), and the split itself.
//! The layout is fixed arithmetic ([`MapFigure::tile_centre`]), so a test can find a tile's pixel.

use std::collections::BTreeMap;

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::figure::{diverging, series_colour, text, viridis, Drawn, Figure};
use super::inputs::{Inputs, SplitTile};

/// How a panel's values become colours.
#[derive(Debug, Clone, PartialEq)]
pub enum Scale {
    /// Viridis from `lo` to `hi`.
    Magnitude { lo: f64, hi: f64 },
    /// Blue–white–red, white at 0, saturated at ± `max`.
    Diverging { max: f64 },
    /// Value i is category i (Okabe–Ito colours), with these labels.
    Categorical(Vec<String>),
}

impl Scale {
    pub fn colour(&self, v: f64) -> RGBColor {
        match self {
            Scale::Magnitude { lo, hi } => viridis((v - lo) / (hi - lo).max(1e-12)),
            Scale::Diverging { max } => diverging(0.5 + v / (2.0 * max.max(1e-12))),
            Scale::Categorical(labels) => {
                let i = v.max(0.0) as usize;
                if i + 1 == labels.len() && labels[i] == UNUSED {
                    RGBColor(190, 190, 190)
                } else {
                    series_colour(i)
                }
            }
        }
    }
}

const UNUSED: &str = "unused";

pub struct MapPanel {
    pub title: String,
    /// (x, y, value) per tile.
    pub tiles: Vec<(i64, i64, f64)>,
    pub scale: Scale,
    /// Colour-bar caption (units).
    pub units: String,
}

pub struct MapFigure {
    pub title: String,
    pub panels: Vec<MapPanel>,
    pub min: (i64, i64),
    pub max: (i64, i64),
}

const TITLE: u32 = 40;
const PANEL_TITLE: u32 = 30;
const PAD: u32 = 16;
const BAR: u32 = 70;

impl MapFigure {
    pub fn new(title: String, panels: Vec<MapPanel>) -> Option<Self> {
        let tiles = panels.iter().flat_map(|p| p.tiles.iter());
        let (mut min, mut max) = ((i64::MAX, i64::MAX), (i64::MIN, i64::MIN));
        for &(x, y, _) in tiles {
            min = (min.0.min(x), min.1.min(y));
            max = (max.0.max(x), max.1.max(y));
        }
        (min.0 <= max.0).then_some(Self {
            title,
            panels,
            min,
            max,
        })
    }

    fn tiles_wide(&self) -> (u32, u32) {
        (
            (self.max.0 - self.min.0 + 1) as u32,
            (self.max.1 - self.min.1 + 1) as u32,
        )
    }

    /// Pixels per tile: the larger side about 360 px, between 2 and 24.
    pub fn cell(&self) -> u32 {
        let (w, h) = self.tiles_wide();
        (360 / w.max(h)).clamp(2, 24)
    }

    fn panel_width(&self) -> u32 {
        (self.tiles_wide().0 * self.cell()).max(220) + 2 * PAD
    }

    /// The pixel at the centre of tile (x, y) in panel `panel`.
    pub fn tile_centre(&self, panel: usize, x: i64, y: i64) -> (u32, u32) {
        let c = self.cell();
        (
            panel as u32 * self.panel_width() + PAD + (x - self.min.0) as u32 * c + c / 2,
            TITLE + PANEL_TITLE + (y - self.min.1) as u32 * c + c / 2,
        )
    }
}

impl Figure for MapFigure {
    fn size(&self) -> (u32, u32) {
        let (_, h) = self.tiles_wide();
        // Categories that need more than one row of swatches make the figure taller.
        let legend_width = self.panel_width() as i32 - 2 * PAD as i32;
        let extra_rows = self
            .panels
            .iter()
            .filter_map(|p| match &p.scale {
                Scale::Categorical(labels) => swatch_positions(labels, legend_width)
                    .last()
                    .map(|&(_, row)| row),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        (
            self.panels.len() as u32 * self.panel_width(),
            TITLE + PANEL_TITLE + h * self.cell() + BAR + extra_rows as u32 * SWATCH_ROW as u32,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        root.fill(&WHITE).drawn()?;
        root.draw(&Text::new(self.title.clone(), (PAD as i32, 10), text(22)))
            .drawn()?;
        let c = self.cell() as i32;
        let grid_h = self.tiles_wide().1 as i32 * c;
        for (p, panel) in self.panels.iter().enumerate() {
            let x0 = (p as u32 * self.panel_width() + PAD) as i32;
            let y0 = (TITLE + PANEL_TITLE) as i32;
            root.draw(&Text::new(
                panel.title.clone(),
                (x0, TITLE as i32),
                text(18),
            ))
            .drawn()?;
            for &(x, y, v) in &panel.tiles {
                let (px, py) = (
                    x0 + (x - self.min.0) as i32 * c,
                    y0 + (y - self.min.1) as i32 * c,
                );
                root.draw(&Rectangle::new(
                    [(px, py), (px + c, py + c)],
                    panel.scale.colour(v).filled(),
                ))
                .drawn()?;
            }
            let w = self.tiles_wide().0 as i32 * c;
            root.draw(&Rectangle::new(
                [(x0, y0), (x0 + w, y0 + grid_h)],
                BLACK.mix(0.5),
            ))
            .drawn()?;
            legend(
                root,
                &panel.scale,
                &panel.units,
                x0,
                y0 + grid_h + 10,
                self.panel_width() as i32 - 2 * PAD as i32,
            )?;
        }
        Ok(())
    }
}

/// Height of one row of category swatches.
const SWATCH_ROW: i32 = 22;

/// Each category swatch's x offset and row: as many per row as fit in `width`, so that every
/// category (ten folds, say) gets its label.
fn swatch_positions(labels: &[String], width: i32) -> Vec<(i32, i32)> {
    let (mut x, mut row) = (0, 0);
    labels
        .iter()
        .map(|label| {
            let step = 26 + 8 * label.chars().count() as i32;
            if x > 0 && x + step > width {
                (x, row) = (0, row + 1);
            }
            let at = (x, row);
            x += step;
            at
        })
        .collect()
}

/// A colour bar (continuous scales) or rows of swatches (categories) under a panel.
fn legend<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    scale: &Scale,
    units: &str,
    x0: i32,
    y0: i32,
    width: i32,
) -> Result<()> {
    let (lo, hi) = match scale {
        Scale::Magnitude { lo, hi } => (*lo, *hi),
        Scale::Diverging { max } => (-max, *max),
        Scale::Categorical(labels) => {
            for (i, (label, (dx, row))) in labels
                .iter()
                .zip(swatch_positions(labels, width))
                .enumerate()
            {
                let (x, y) = (x0 + dx, y0 + row * SWATCH_ROW);
                root.draw(&Rectangle::new(
                    [(x, y), (x + 14, y + 14)],
                    scale.colour(i as f64).filled(),
                ))
                .drawn()?;
                root.draw(&Text::new(label.clone(), (x + 18, y), text(14)))
                    .drawn()?;
            }
            return Ok(());
        }
    };
    let steps = width.max(1);
    for i in 0..steps {
        let v = lo + (hi - lo) * i as f64 / (steps - 1).max(1) as f64;
        root.draw(&Rectangle::new(
            [(x0 + i, y0), (x0 + i + 1, y0 + 14)],
            scale.colour(v).filled(),
        ))
        .drawn()?;
    }
    root.draw(&Text::new(format!("{lo:.2}"), (x0, y0 + 18), text(14)))
        .drawn()?;
    let hi_label = format!("{hi:.2}");
    root.draw(&Text::new(
        hi_label.clone(),
        (x0 + width - 8 * hi_label.len() as i32, y0 + 18),
        text(14),
    ))
    .drawn()?;
    root.draw(&Text::new(
        units.to_string(),
        (x0 + width / 2 - 4 * units.len() as i32, y0 + 36),
        text(14),
    ))
    .drawn()?;
    Ok(())
}

/// A tile's (x, y, target, prediction).
type Predicted = (i64, i64, f64, f64);

/// Target, prediction and residual of the reference variant's first seed on `dataset`.
pub fn predictions(inputs: &Inputs, dataset: &str) -> Option<MapFigure> {
    let reference = inputs.reference.as_deref()?;
    let runs = inputs.runs_of(dataset, reference);
    let seed = runs.first()?.row.seed;
    let mut tiles: BTreeMap<(i64, i64), (f64, f64, usize)> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.row.seed == seed) {
        for p in &r.predictions {
            let e = tiles.entry((p.x, p.y)).or_insert((p.target, 0.0, 0));
            e.1 += p.prediction;
            e.2 += 1;
        }
    }
    let tiles: Vec<Predicted> = tiles
        .into_iter()
        .map(|((x, y), (t, p, n))| (x, y, t, p / n as f64))
        .collect();
    let values = tiles
        .iter()
        .flat_map(|t| [t.2, t.3])
        .filter(|v| v.is_finite());
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let max_residual = tiles.iter().map(|t| (t.3 - t.2).abs()).fold(0.0, f64::max);
    let magnitude = Scale::Magnitude { lo, hi };
    let panel = |title: &str, scale: &Scale, units: &str, f: &dyn Fn(&Predicted) -> f64| MapPanel {
        title: title.into(),
        tiles: tiles.iter().map(|t| (t.0, t.1, f(t))).collect(),
        scale: scale.clone(),
        units: units.into(),
    };
    let cv = runs.iter().any(|r| r.row.fold.is_some());
    MapFigure::new(
        format!(
            "{dataset}: {reference}, seed {seed}, {}",
            if cv {
                "out-of-fold test predictions"
            } else {
                "test tiles"
            }
        ),
        vec![
            panel("target", &magnitude, "ln emission", &|t| t.2),
            panel("prediction", &magnitude, "ln emission", &|t| t.3),
            panel(
                "residual (prediction − target)",
                &Scale::Diverging { max: max_residual },
                "ln emission",
                &|t| t.3 - t.2,
            ),
        ],
    )
}

/// The split of the first seed on `dataset`: each tile's test fold under cross-validation,
/// else train / valid / test.
pub fn split(inputs: &Inputs, dataset: &str) -> Option<MapFigure> {
    let runs = inputs.split_runs(dataset);
    let seed = runs.first()?.row.seed;
    // A run read from the records whose split could not be rebuilt: no map (the page says why).
    let splits: Vec<&[SplitTile]> = runs
        .iter()
        .map(|r| r.split.as_deref())
        .collect::<Option<_>>()?;
    let cv = runs.iter().all(|r| r.row.fold.is_some()) && runs.len() > 1;
    let (labels, tiles) = if cv {
        let mut labels: Vec<String> = runs
            .iter()
            .map(|r| format!("fold {}", r.row.fold.unwrap_or(0)))
            .collect();
        labels.push(UNUSED.into());
        let mut fold_of: BTreeMap<(i64, i64), f64> = BTreeMap::new();
        for split in &splits {
            for (x, y, _) in split.iter() {
                fold_of.entry((*x, *y)).or_insert((labels.len() - 1) as f64);
            }
        }
        for (i, split) in splits.iter().enumerate() {
            for (x, y, s) in split.iter() {
                if s == "test" {
                    fold_of.insert((*x, *y), i as f64);
                }
            }
        }
        (
            labels,
            fold_of
                .into_iter()
                .map(|((x, y), v)| (x, y, v))
                .collect::<Vec<_>>(),
        )
    } else {
        let labels: Vec<String> = ["train", "valid", "test", UNUSED]
            .map(String::from)
            .to_vec();
        let tiles = splits[0]
            .iter()
            .map(|(x, y, s)| {
                (
                    *x,
                    *y,
                    labels.iter().position(|l| l == s).unwrap_or(3) as f64,
                )
            })
            .collect();
        (labels, tiles)
    };
    MapFigure::new(
        format!("{dataset}: split of seed {seed}"),
        vec![MapPanel {
            title: if cv {
                "test fold of each tile"
            } else {
                "role of each tile"
            }
            .into(),
            tiles,
            scale: Scale::Categorical(labels),
            units: String::new(),
        }],
    )
}
