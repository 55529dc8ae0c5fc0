//! `map.png`: predicted ln-emission per tile on viridis (colour-blind safe), north up as in the
//! GeoTIFF, white where there is no tile, grey outside the area of applicability.

use super::geo::Grid;
use crate::report::colormap::{grey, viridis, NO_TILE};

/// Pixels per tile so that the map is about 600 px across (at least 1).
pub fn tile_pixels(grid: &Grid) -> usize {
    (600 / grid.cols.max(grid.rows)).max(1)
}

/// `values` row-major over `grid` (NaN: no tile), scaled over their own range; tiles outside
/// the area of applicability are greyed (their colour's luminance, lightened).
pub fn png(values: &[f64], outside: &[bool], grid: &Grid) -> anyhow::Result<Vec<u8>> {
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    png_over(values, outside, grid, lo, hi)
}

/// As [`png`], scaled over the 2nd–98th percentile of `values` inside the area of applicability
/// (clamped beyond), so that a few extreme tiles do not flatten the rest: for the interval-width
/// map.
pub fn png_robust(values: &[f64], outside: &[bool], grid: &Grid) -> anyhow::Result<Vec<u8>> {
    // The colours span the tiles drawn in colour (inside the area of applicability), so that
    // greyed tiles outside, whose bands may be far wider, do not flatten the rest.
    let inside = values
        .iter()
        .zip(outside)
        .any(|(v, &out)| v.is_finite() && !out);
    let mut finite: Vec<f64> = values
        .iter()
        .zip(outside)
        .filter(|(v, &out)| v.is_finite() && (!out || !inside))
        .map(|(v, _)| *v)
        .collect();
    finite.sort_by(f64::total_cmp);
    let at = |q: f64| {
        finite
            .get(((finite.len().max(1) - 1) as f64 * q) as usize)
            .copied()
    };
    let (lo, hi) = (at(0.02).unwrap_or(0.0), at(0.98).unwrap_or(1.0));
    png_over(values, outside, grid, lo, hi)
}

fn png_over(
    values: &[f64],
    outside: &[bool],
    grid: &Grid,
    lo: f64,
    hi: f64,
) -> anyhow::Result<Vec<u8>> {
    let span = if hi > lo { hi - lo } else { 1.0 };
    let k = tile_pixels(grid);
    let (w, h) = (grid.cols * k, grid.rows * k);
    let mut image = image::RgbImage::new(w as u32, h as u32);
    for (px, py, pixel) in image.enumerate_pixels_mut() {
        let cell = (py as usize / k) * grid.cols + px as usize / k;
        let v = values[cell];
        let t = ((v - lo) / span).clamp(0.0, 1.0);
        pixel.0 = if v.is_finite() && outside[cell] {
            grey(viridis(t))
        } else if v.is_finite() {
            viridis(t)
        } else {
            NO_TILE
        };
    }
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, image::ImageFormat::Png)?;
    Ok(bytes.into_inner())
}
