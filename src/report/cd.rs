//! The critical-difference diagram (Demšar 2006) of test R² over datasets: each variant at its
//! mean rank (1 = best), the Nemenyi critical difference at α = 0.05 as a bar, and thick lines
//! joining groups of variants whose mean ranks differ by less than it (not significantly
//! different). Drawn when there are at least 2 datasets and 3 variants.

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::figure::{text, Drawn, Figure};
use super::inputs::Inputs;
use crate::results::comparison::{rank_tests, RankTest};

pub struct CriticalDifference {
    pub test: RankTest,
    /// (variant, mean rank), best first.
    pub sorted: Vec<(String, f64)>,
}

impl CriticalDifference {
    pub fn of(inputs: &Inputs) -> Option<Self> {
        let test = rank_tests(&inputs.rows, &inputs.variants)
            .into_iter()
            .find(|t| t.metric == "r2")?;
        if test.datasets.len() < 2 || test.variants.len() < 3 {
            return None;
        }
        let mut sorted: Vec<(String, f64)> = test
            .variants
            .iter()
            .cloned()
            .zip(test.mean_ranks.iter().copied())
            .collect();
        sorted.sort_by(|a, b| a.1.total_cmp(&b.1));
        Some(Self { test, sorted })
    }

    /// Maximal runs of consecutive (by rank) variants spanning less than the critical difference.
    pub fn cliques(&self) -> Vec<(usize, usize)> {
        let cd = self.test.critical_difference;
        let mut out: Vec<(usize, usize)> = Vec::new();
        for i in 0..self.sorted.len() {
            let mut j = i;
            while j + 1 < self.sorted.len() && self.sorted[j + 1].1 - self.sorted[i].1 < cd {
                j += 1;
            }
            if j > i && out.last().is_none_or(|&(_, end)| j > end) {
                out.push((i, j));
            }
        }
        out
    }
}

const WIDTH: i32 = 1100;
const AXIS_Y: i32 = 110;

impl Figure for CriticalDifference {
    fn size(&self) -> (u32, u32) {
        let half = self.sorted.len().div_ceil(2) as u32;
        (WIDTH as u32, AXIS_Y as u32 + 60 + half * 30 + 20)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        root.fill(&WHITE).drawn()?;
        let k = self.sorted.len();
        // Room for the longest label on either side (about 8.5 px a character at 14 px).
        let longest = self
            .sorted
            .iter()
            .map(|(n, _)| n.chars().count() + 7)
            .max()
            .unwrap_or(10);
        let margin = (longest as i32 * 17 / 2 + 40).min(WIDTH / 3);
        let x_of = |rank: f64| {
            margin + ((rank - 1.0) / (k as f64 - 1.0).max(1.0) * (WIDTH - 2 * margin) as f64) as i32
        };
        let friedman = match self.test.friedman {
            Some((chi2, p)) => format!("Friedman χ² = {chi2:.2}, p = {p:.3}"),
            None => "Friedman test not defined".into(),
        };
        root.draw(&Text::new(
            format!(
                "Mean rank of test R² over {} datasets (1 = best); {friedman}",
                self.test.datasets.len()
            ),
            (20, 8),
            text(18),
        ))
        .drawn()?;
        // Axis with a tick per rank.
        root.draw(&PathElement::new(
            vec![(x_of(1.0), AXIS_Y), (x_of(k as f64), AXIS_Y)],
            BLACK.stroke_width(2),
        ))
        .drawn()?;
        for r in 1..=k {
            let x = x_of(r as f64);
            root.draw(&PathElement::new(vec![(x, AXIS_Y - 6), (x, AXIS_Y)], BLACK))
                .drawn()?;
            root.draw(&Text::new(r.to_string(), (x - 4, AXIS_Y - 26), text(14)))
                .drawn()?;
        }
        // The critical difference as a bar from rank 1.
        let cd = self.test.critical_difference;
        let cd_end = x_of((1.0 + cd).min(k as f64));
        root.draw(&PathElement::new(
            vec![(x_of(1.0), 58), (cd_end, 58)],
            BLACK.stroke_width(3),
        ))
        .drawn()?;
        root.draw(&Text::new(
            format!("CD = {cd:.2} (Nemenyi, α = 0.05)"),
            (x_of(1.0), 36),
            text(14),
        ))
        .drawn()?;
        // Variants: the better half labelled on the left, the rest on the right.
        let half = k.div_ceil(2);
        for (i, (name, rank)) in self.sorted.iter().enumerate() {
            let x = x_of(*rank);
            let row = if i < half { i } else { k - 1 - i };
            let y = AXIS_Y + 50 + row as i32 * 30;
            let label = format!("{name} ({rank:.2})");
            let (end, text_x) = if i < half {
                (margin - 20, 10)
            } else {
                (WIDTH - margin + 20, WIDTH - margin + 26)
            };
            root.draw(&PathElement::new(
                vec![(x, AXIS_Y), (x, y), (end, y)],
                BLACK.stroke_width(1),
            ))
            .drawn()?;
            root.draw(&Text::new(label, (text_x, y - 8), text(14)))
                .drawn()?;
        }
        // Groups not significantly different.
        for (g, (i, j)) in self.cliques().into_iter().enumerate() {
            let y = AXIS_Y + 14 + g as i32 * 8;
            root.draw(&PathElement::new(
                vec![
                    (x_of(self.sorted[i].1) - 3, y),
                    (x_of(self.sorted[j].1) + 3, y),
                ],
                BLACK.stroke_width(4),
            ))
            .drawn()?;
        }
        Ok(())
    }
}
