//! Learning curves of one dataset: train L1 loss and validation R² against epoch, per variant,
//! the mean over its runs (seeds × folds) with a band of ± one standard deviation.

use std::collections::BTreeMap;

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::figure::{padded_range, series_colour, text, Drawn, Figure};
use super::inputs::{Inputs, Series};

/// One variant's curve: (epoch, mean, std over runs, runs).
pub struct Curve {
    pub variant: String,
    pub colour: usize,
    pub points: Vec<(usize, f64, f64, usize)>,
}

pub struct LearningCurves {
    pub dataset: String,
    pub loss: Vec<Curve>,
    pub valid_r2: Vec<Curve>,
}

impl LearningCurves {
    /// None when no variant on `dataset` trained for more than one epoch (baselines only).
    pub fn of(inputs: &Inputs, dataset: &str) -> Option<Self> {
        let (mut loss, mut valid_r2) = (Vec::new(), Vec::new());
        for (colour, variant) in inputs.variants.iter().enumerate() {
            let runs = inputs.runs_of(dataset, variant);
            let of = |pick: &dyn Fn(&super::inputs::Run) -> &Series| Curve {
                variant: variant.clone(),
                colour,
                points: mean_by_epoch(runs.iter().map(|r| pick(r))),
            };
            let l = of(&|r| &r.train_loss);
            if l.points.len() > 1 {
                loss.push(l);
                valid_r2.push(of(&|r| &r.valid_r2));
            }
        }
        (!loss.is_empty()).then(|| Self {
            dataset: dataset.into(),
            loss,
            valid_r2,
        })
    }
}

/// Mean and sample std (0 for one run) of each epoch's values over the runs that logged it.
pub fn mean_by_epoch<'a>(
    series: impl Iterator<Item = &'a Series>,
) -> Vec<(usize, f64, f64, usize)> {
    let mut by_epoch: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for s in series {
        for &(epoch, v) in s {
            if v.is_finite() {
                by_epoch.entry(epoch).or_default().push(v);
            }
        }
    }
    by_epoch
        .into_iter()
        .map(|(epoch, vs)| {
            let n = vs.len();
            let mean = vs.iter().sum::<f64>() / n as f64;
            let std = if n > 1 {
                (vs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
            } else {
                0.0
            };
            (epoch, mean, std, n)
        })
        .collect()
}

impl Figure for LearningCurves {
    fn size(&self) -> (u32, u32) {
        (1200, 480)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        root.fill(&WHITE).drawn()?;
        let root = root
            .titled(&format!("Learning curves — {}", self.dataset), text(24))
            .drawn()?;
        let panels = root.split_evenly((1, 2));
        panel(
            &panels[0],
            &self.loss,
            "train loss (mean L1)",
            None,
            SeriesLabelPosition::UpperRight,
        )?;
        // Early epochs can score R² of −10: the axis stops at −1 so the end of training shows.
        panel(
            &panels[1],
            &self.valid_r2,
            "validation R² (below −1 drawn at −1)",
            Some(-1.0),
            SeriesLabelPosition::LowerRight,
        )?;
        Ok(())
    }
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    curves: &[Curve],
    y_desc: &str,
    floor: Option<f64>,
    legend_at: SeriesLabelPosition,
) -> Result<()> {
    let clip = |v: f64| floor.map_or(v, |f| v.max(f));
    let max_epoch = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.0))
        .max()
        .unwrap_or(1)
        .max(2);
    let (lo, hi) = padded_range(curves.iter().flat_map(|c| {
        c.points
            .iter()
            .flat_map(|p| [clip(p.1 - p.2), clip(p.1 + p.2)])
    }));
    let mut chart = ChartBuilder::on(area)
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d(1f64..max_epoch as f64, lo..hi)
        .drawn()?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_label_formatter(&|x| format!("{x:.0}"))
        // Not "-0.0": a tick at zero is drawn as 0.
        .y_label_formatter(&|y| format!("{:.2}", if y.abs() < 1e-9 { 0.0 } else { *y }))
        .y_desc(y_desc)
        .label_style(text(16))
        .axis_desc_style(text(18))
        .draw()
        .drawn()?;
    // Bands fade as curves multiply, so that every line stays visible.
    let band_alpha = if curves.len() <= 4 { 0.18 } else { 0.07 };
    for c in curves {
        let colour = series_colour(c.colour);
        if c.points.iter().any(|p| p.2 > 0.0) {
            let mut band: Vec<(f64, f64)> = c
                .points
                .iter()
                .map(|p| (p.0 as f64, clip(p.1 + p.2)))
                .collect();
            band.extend(c.points.iter().rev().map(|p| (p.0 as f64, clip(p.1 - p.2))));
            chart
                .draw_series(std::iter::once(Polygon::new(
                    band,
                    colour.mix(band_alpha).filled(),
                )))
                .drawn()?;
        }
        chart
            .draw_series(LineSeries::new(
                c.points.iter().map(|p| (p.0 as f64, clip(p.1))),
                colour.stroke_width(2),
            ))
            .drawn()?
            .label(format!(
                "{} (n={})",
                c.variant,
                c.points.first().map_or(0, |p| p.3)
            ))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 22, y)], colour.stroke_width(3))
            });
    }
    chart
        .configure_series_labels()
        .label_font(text(16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .position(legend_at)
        .draw()
        .drawn()?;
    Ok(())
}
