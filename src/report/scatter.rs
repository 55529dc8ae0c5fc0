//! Predicted against true ln-emission on the test tiles, one panel per variant, pooled over its
//! runs (every seed and fold), with the 1:1 line; the legend gives the mean test R² over runs.

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::figure::{padded_range, series_colour, text, Drawn, Figure};
use super::inputs::Inputs;

pub struct Panel {
    pub variant: String,
    pub colour: usize,
    /// (true, predicted) ln-emission.
    pub points: Vec<(f64, f64)>,
    pub mean_r2: f64,
    pub runs: usize,
}

pub struct PredictedVsTrue {
    pub dataset: String,
    pub panels: Vec<Panel>,
}

const COLUMNS: usize = 4;
const PANEL: u32 = 340;

impl PredictedVsTrue {
    pub fn of(inputs: &Inputs, dataset: &str) -> Option<Self> {
        let panels: Vec<Panel> = inputs
            .variants
            .iter()
            .enumerate()
            .filter_map(|(colour, variant)| {
                let runs = inputs.runs_of(dataset, variant);
                let points: Vec<(f64, f64)> = runs
                    .iter()
                    .flat_map(|r| r.predictions.iter().map(|p| (p.target, p.prediction)))
                    .filter(|(t, p)| t.is_finite() && p.is_finite())
                    .collect();
                let r2: Vec<f64> = runs
                    .iter()
                    .filter_map(|r| r.row.metrics.as_ref().map(|m| m.r2))
                    .collect();
                (!points.is_empty()).then(|| Panel {
                    variant: variant.clone(),
                    colour,
                    points,
                    mean_r2: r2.iter().sum::<f64>() / r2.len().max(1) as f64,
                    runs: runs.len(),
                })
            })
            .collect();
        (!panels.is_empty()).then(|| Self {
            dataset: dataset.into(),
            panels,
        })
    }

    fn grid(&self) -> (usize, usize) {
        let cols = self.panels.len().clamp(1, COLUMNS);
        (self.panels.len().div_ceil(cols), cols)
    }

    fn title(&self) -> String {
        format!(
            "Predicted vs true ln-emission, test tiles — {}",
            self.dataset
        )
    }

    /// Width of the panels side by side; the figure is at least as wide as its title (at 22 px,
    /// ~12 px a character), which one 340 px panel cut off at both ends.
    fn panels_width(&self) -> u32 {
        self.grid().1 as u32 * PANEL
    }
}

impl Figure for PredictedVsTrue {
    fn size(&self) -> (u32, u32) {
        let title_width = self.title().chars().count() as u32 * 12 + 40;
        (
            self.panels_width().max(title_width),
            self.grid().0 as u32 * PANEL + 40,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        root.fill(&WHITE).drawn()?;
        let root = root.titled(&self.title(), text(22)).drawn()?;
        // Square panels, centred under a title wider than them.
        let spare = (self.size().0 - self.panels_width()) / 2;
        let root = root.margin(0, 0, spare, spare);
        // One scale for every panel, so that panels compare.
        let (lo, hi) = padded_range(
            self.panels
                .iter()
                .flat_map(|p| p.points.iter().flat_map(|&(t, y)| [t, y])),
        );
        let areas = root.split_evenly(self.grid());
        for (panel, area) in self.panels.iter().zip(&areas) {
            let colour = series_colour(panel.colour);
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.variant, text(18))
                .margin(8)
                .x_label_area_size(40)
                .y_label_area_size(48)
                .build_cartesian_2d(lo..hi, lo..hi)
                .drawn()?;
            chart
                .configure_mesh()
                .x_desc("true ln emission")
                .y_desc("predicted ln emission")
                .label_style(text(14))
                .axis_desc_style(text(14))
                .x_labels(5)
                .y_labels(5)
                .draw()
                .drawn()?;
            chart
                .draw_series(LineSeries::new(
                    [(lo, lo), (hi, hi)],
                    BLACK.mix(0.6).stroke_width(1),
                ))
                .drawn()?;
            chart
                .draw_series(
                    panel
                        .points
                        .iter()
                        .map(|&(t, y)| Circle::new((t, y), 2, colour.mix(0.55).filled())),
                )
                .drawn()?
                .label(format!(
                    "R² {:.3} (mean of {} runs)",
                    panel.mean_r2, panel.runs
                ))
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
            chart
                .configure_series_labels()
                .label_font(text(14))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.4))
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
                .drawn()?;
        }
        Ok(())
    }
}
