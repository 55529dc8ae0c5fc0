//! `map.png`: predicted ln-emission per tile on viridis (colour-blind safe), north up as in the
//! GeoTIFF, white where there is no tile, grey outside the area of applicability.

use super::geo::Grid;

/// Viridis at 9 evenly spaced stops (matplotlib's values).
const VIRIDIS: [[u8; 3]; 9] = [
    [68, 1, 84],
    [71, 44, 122],
    [59, 81, 139],
    [44, 113, 142],
    [33, 144, 141],
    [39, 173, 129],
    [92, 200, 99],
    [170, 220, 50],
    [253, 231, 37],
];
pub const NO_TILE: [u8; 3] = [255, 255, 255];

/// The colour of `t` in [0, 1].
pub fn viridis(t: f64) -> [u8; 3] {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    } * (VIRIDIS.len() - 1) as f64;
    let (i, f) = (t.floor() as usize, t.fract());
    let (a, b) = (VIRIDIS[i], VIRIDIS[(i + 1).min(VIRIDIS.len() - 1)]);
    std::array::from_fn(|c| (a[c] as f64 + (b[c] as f64 - a[c] as f64) * f).round() as u8)
}

/// A colour's luminance as a light grey (so a greyed tile still shows its level, faintly).
pub fn grey(c: [u8; 3]) -> [u8; 3] {
    let l = 0.2126 * c[0] as f64 + 0.7152 * c[1] as f64 + 0.0722 * c[2] as f64;
    let g = (110.0 + 0.45 * l).round() as u8;
    [g, g, g]
}

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
