//! A picture of a city: its images as a mosaic beside a map of ln(emission), so a person can see
//! whether it looks like a city.

use std::path::Path;

use anyhow::{bail, Context, Result};
use image::{Rgb, RgbImage};

use super::city::City;

/// Writes a PNG: left, the satellite mosaic (each tile shrunk to `cell` px); right, ln(emission)
/// on a blue→yellow→red scale (black: no tile; grey: emission 0).
pub fn write_png(city: &City, path: &Path, cell: usize) -> Result<()> {
    let (min_x, max_x) = (
        city.keys.iter().map(|k| k.x).min().unwrap_or(0),
        city.keys.iter().map(|k| k.x).max().unwrap_or(0),
    );
    let (min_y, max_y) = (
        city.keys.iter().map(|k| k.y).min().unwrap_or(0),
        city.keys.iter().map(|k| k.y).max().unwrap_or(0),
    );
    let (w, h) = ((max_x - min_x + 1) as usize, (max_y - min_y + 1) as usize);
    if w * h > 4_000_000 || cell == 0 {
        bail!("preview: a {w}×{h} grid with {cell} px cells is too large to draw");
    }
    let panels = if city.images.is_some() { 2 } else { 1 };
    let mut img = RgbImage::new(
        (w * cell * panels + (panels - 1) * 8) as u32,
        (h * cell) as u32,
    );
    let logs: Vec<f64> = city
        .emission
        .iter()
        .filter(|e| **e > 0.0)
        .map(|e| e.ln())
        .collect();
    let (lo, hi) = logs
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let map_x0 = if panels == 2 { w * cell + 8 } else { 0 };
    for (i, key) in city.keys.iter().enumerate() {
        let (tx, ty) = ((key.x - min_x) as usize, (key.y - min_y) as usize);
        if let Some(s) = &city.images {
            let n = s.side * s.side;
            let chw = &s.data[i * 3 * n..(i + 1) * 3 * n];
            for py in 0..cell {
                for px in 0..cell {
                    let (sx, sy) = (px * s.side / cell, py * s.side / cell);
                    let p = sy * s.side + sx;
                    img.put_pixel(
                        (tx * cell + px) as u32,
                        (ty * cell + py) as u32,
                        Rgb([chw[p], chw[n + p], chw[2 * n + p]]),
                    );
                }
            }
        }
        let colour = if city.emission[i] > 0.0 {
            heat(((city.emission[i].ln() - lo) / (hi - lo).max(1e-9)) as f32)
        } else {
            Rgb([128, 128, 128])
        };
        for py in 0..cell {
            for px in 0..cell {
                img.put_pixel(
                    (map_x0 + tx * cell + px) as u32,
                    (ty * cell + py) as u32,
                    colour,
                );
            }
        }
    }
    img.save(path)
        .with_context(|| format!("writing {}", path.display()))
}

fn heat(t: f32) -> Rgb<u8> {
    let t = t.clamp(0.0, 1.0);
    let (r, g, b) = if t < 0.5 {
        (2.0 * t, 2.0 * t, 1.0 - 2.0 * t)
    } else {
        (1.0, 2.0 - 2.0 * t, 0.0)
    };
    Rgb([(r * 255.0) as u8, (g * 255.0) as u8, (b * 255.0) as u8])
}
