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
    let span = if hi > lo { hi - lo } else { 1.0 };
    let k = tile_pixels(grid);
    let (w, h) = (grid.cols * k, grid.rows * k);
    let mut image = image::RgbImage::new(w as u32, h as u32);
    for (px, py, pixel) in image.enumerate_pixels_mut() {
        let cell = (py as usize / k) * grid.cols + px as usize / k;
        let v = values[cell];
        pixel.0 = if v.is_finite() && outside[cell] {
            grey(viridis((v - lo) / span))
        } else if v.is_finite() {
            viridis((v - lo) / span)
        } else {
            NO_TILE
        };
    }
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, image::ImageFormat::Png)?;
    Ok(bytes.into_inner())
}
