//! The colours of every map and figure: viridis (colour-blind safe) for values, a grey that
//! keeps a value's level faintly for what is out of the area of applicability.

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
/// Where a map has no tile.
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
