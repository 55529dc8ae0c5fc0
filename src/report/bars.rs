//! Ablation bars of one dataset: per metric, each variant's mean test value over its runs with a
//! 95 % t interval of the mean, and the paired comparison against the reference variant
//! (`comparison.rs`: Holm-adjusted t-test) written beside each bar: ▲ better, ▼ worse at
//! α = 0.05, `n.s.` when not significant. Bars run horizontally so variant names stay legible.

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::figure::{padded_range, series_colour, text, Drawn, Figure};
use super::inputs::Inputs;
use crate::results::comparison::ALPHA;
use crate::stats::special::t_critical;

pub struct Bar {
    pub variant: String,
    pub colour: usize,
    pub mean: f64,
    /// Half-width of the 95 % interval (0 with one run).
    pub half_width: f64,
    pub runs: usize,
    /// `ref`, `▲ p=…`, `▼ p=…`, `n.s. p=…`, or empty (no pairs).
    pub mark: String,
}

pub struct MetricBars {
    pub metric: &'static str,
    pub label: &'static str,
    pub bars: Vec<Bar>,
}

pub struct AblationBars {
    pub dataset: String,
    pub reference: String,
    pub metrics: Vec<MetricBars>,
}

const METRICS: [(&str, &str); 4] = [
    ("r2", "test R² (higher is better)"),
    ("rmse", "test RMSE, ln emission (lower is better)"),
    ("mae", "test MAE, ln emission (lower is better)"),
    ("mape", "test MAPE, as a fraction (lower is better)"),
];

/// Mean and the half-width of its two-sided 95 % t interval.
pub fn mean_interval(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n.max(1) as f64;
    if n < 2 {
        return (mean, 0.0);
    }
    let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    (
        mean,
        t_critical(0.05, (n - 1) as f64) * sd / (n as f64).sqrt(),
    )
}

impl AblationBars {
    /// None with a single variant.
    pub fn of(inputs: &Inputs, dataset: &str) -> Option<Self> {
        let variants = inputs.variants_on(dataset);
        let reference = inputs.reference.clone()?;
        if variants.len() < 2 {
            return None;
        }
        let compared = inputs.comparison();
        let metrics = METRICS
            .iter()
            .map(|&(metric, label)| MetricBars {
                metric,
                label,
                bars: variants
                    .iter()
                    .map(|&variant| {
                        let values: Vec<f64> = inputs
                            .runs_of(dataset, variant)
                            .iter()
                            .map(|r| crate::results::metric_value(&r.row, metric))
                            .collect();
                        let (mean, half_width) = mean_interval(&values);
                        let mark = if variant == reference {
                            "ref".to_string()
                        } else {
                            compared
                                .iter()
                                .find(|c| {
                                    c.dataset == dataset
                                        && c.variant == variant
                                        && c.metric == metric
                                })
                                .map(|c| match c.verdict.as_str() {
                                    "better" => format!("▲ p={:.3}", c.p_t_holm),
                                    "worse" => format!("▼ p={:.3}", c.p_t_holm),
                                    "n.s." => format!("n.s. p={:.2}", c.p_t_holm),
                                    other => other.to_string(),
                                })
                                .unwrap_or_default()
                        };
                        Bar {
                            variant: variant.to_string(),
                            colour: inputs
                                .variants
                                .iter()
                                .position(|v| v == variant)
                                .unwrap_or(0),
                            mean,
                            half_width,
                            runs: values.len(),
                            mark,
                        }
                    })
                    .collect(),
            })
            .collect();
        Some(Self {
            dataset: dataset.into(),
            reference,
            metrics,
        })
    }
}

const ROW: u32 = 30;

impl Figure for AblationBars {
    fn size(&self) -> (u32, u32) {
        let n = self.metrics.first().map_or(1, |m| m.bars.len()) as u32;
        (1400, 2 * (n * ROW + 110) + 50)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        root.fill(&WHITE).drawn()?;
        let root = root
            .titled(
                &format!(
                    "Ablations — {}: mean ± 95 % CI over runs; vs {} (Holm-adjusted paired t, α = {ALPHA})",
                    self.dataset, self.reference
                ),
                text(20),
            )
            .drawn()?;
        for (m, area) in self.metrics.iter().zip(root.split_evenly((2, 2)).iter()) {
            panel(area, m)?;
        }
        Ok(())
    }
}

fn panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, m: &MetricBars) -> Result<()> {
    let n = m.bars.len();
    let (lo, hi) = padded_range(
        m.bars
            .iter()
            .flat_map(|b| [b.mean - b.half_width, b.mean + b.half_width])
            .chain([0.0]),
    );
    // Room on the right for the marks.
    let hi = hi + (hi - lo) * 0.45;
    let names: Vec<String> = m.bars.iter().map(|b| b.variant.clone()).collect();
    // Room for the longest variant name at 14 px (about 7.5 px a character), at least 150 px.
    let longest = names.iter().map(|n| n.chars().count()).max().unwrap_or(0) as f64;
    let label_width = ((longest * 7.5) as u32 + 24).max(150);
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(44)
        .y_label_area_size(label_width)
        .build_cartesian_2d(lo..hi, (0..n).into_segmented())
        .drawn()?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(m.label)
        .label_style(text(14))
        .axis_desc_style(text(16))
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) if *i < n => names[n - 1 - i].clone(),
            _ => String::new(),
        })
        .draw()
        .drawn()?;
    for (i, b) in m.bars.iter().enumerate() {
        let row = n - 1 - i;
        let colour = series_colour(b.colour);
        let mut bar = Rectangle::new(
            [
                (0.0, SegmentValue::Exact(row)),
                (b.mean, SegmentValue::Exact(row + 1)),
            ],
            colour.mix(0.75).filled(),
        );
        bar.set_margin(5, 5, 0, 0);
        chart.draw_series(std::iter::once(bar)).drawn()?;
        if b.half_width > 0.0 {
            chart
                .draw_series(std::iter::once(ErrorBar::new_horizontal(
                    SegmentValue::CenterOf(row),
                    b.mean - b.half_width,
                    b.mean,
                    b.mean + b.half_width,
                    BLACK.stroke_width(2),
                    10,
                )))
                .drawn()?;
        }
        let right = (b.mean + b.half_width).max(0.0);
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{}  {:.3} (n={})", b.mark, b.mean, b.runs),
                (right + (hi - lo) * 0.01, SegmentValue::CenterOf(row)),
                text(14).pos(Pos::new(HPos::Left, VPos::Center)),
            )))
            .drawn()?;
    }
    Ok(())
}
