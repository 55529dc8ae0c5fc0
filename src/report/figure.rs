//! One figure, two files: every figure draws itself once on a generic plotters backend, and
//! [`save`] renders it to PNG (bitmap buffer, encoded with `image`) and to SVG.
//! Text uses the bundled DejaVu Sans through plotters' `ab_glyph` feature: no system fonts.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::track::atomic;

/// DejaVu Sans (Bitstream Vera licence, `assets/fonts/LICENSE-DejaVu.txt`).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
pub const FONT_FAMILY: &str = "sans-serif";

/// Registers the bundled font under [`FONT_FAMILY`] for every style, once per process.
pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for style in [
            FontStyle::Normal,
            FontStyle::Bold,
            FontStyle::Italic,
            FontStyle::Oblique,
        ] {
            if plotters::style::register_font(FONT_FAMILY, style, FONT).is_err() {
                // A compile-time asset: a failure here is a broken build, not bad input.
                panic!("assets/fonts/DejaVuSans.ttf is not a readable font");
            }
        }
    });
}

/// A figure: its pixel size and how to draw it on any backend.
pub trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>;
}

/// plotters' errors carry the backend's error type; this turns any of them into anyhow.
pub trait Drawn<T> {
    fn drawn(self) -> Result<T>;
}

impl<T, E: std::fmt::Debug> Drawn<T> for std::result::Result<T, E> {
    fn drawn(self) -> Result<T> {
        self.map_err(|e| anyhow!("drawing failed: {e:?}"))
    }
}

/// The files one figure became.
#[derive(Debug, Clone)]
pub struct Saved {
    /// File stem: `<stem>.png` and `<stem>.svg` in the report directory.
    pub stem: String,
    pub caption: String,
}

/// Renders `figure` to `<dir>/<stem>.png` and `<dir>/<stem>.svg` (each written atomically).
pub fn save(figure: &impl Figure, dir: &Path, stem: &str, caption: &str) -> Result<Saved> {
    register_font();
    let (w, h) = figure.size();
    let mut pixels = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        figure.draw(&root)?;
        root.present().drawn()?;
    }
    let image =
        image::RgbImage::from_raw(w, h, pixels).ok_or_else(|| anyhow!("{stem}: bad buffer"))?;
    let mut png = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    atomic::write(&dir.join(format!("{stem}.png")), &png)?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        figure.draw(&root)?;
        root.present().drawn()?;
    }
    atomic::write(&dir.join(format!("{stem}.svg")), svg.as_bytes())?;
    Ok(Saved {
        stem: stem.into(),
        caption: caption.into(),
    })
}

/// Series colours told apart with the common colour-vision deficiencies: Okabe–Ito's seven
/// (its yellow, faint on white, left out), then Paul Tol's muted scheme; sixteen before repeating.
pub const PALETTE: [RGBColor; 16] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(230, 159, 0),
    RGBColor(0, 0, 0),
    RGBColor(51, 34, 136),
    RGBColor(136, 204, 238),
    RGBColor(68, 170, 153),
    RGBColor(17, 119, 51),
    RGBColor(153, 153, 51),
    RGBColor(221, 204, 119),
    RGBColor(204, 102, 119),
    RGBColor(136, 34, 85),
    RGBColor(170, 68, 153),
];

/// The i-th series colour.
pub fn series_colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Viridis for magnitudes (t in [0, 1]).
pub fn viridis(t: f64) -> RGBColor {
    let [r, g, b] = super::colormap::viridis(t);
    RGBColor(r, g, b)
}

/// A diverging scale centred on 0 for residuals: blue (t = 0) through white (0.5) to red (1),
/// ColorBrewer's RdBu endpoints, readable with red–green colour blindness.
pub fn diverging(t: f64) -> RGBColor {
    const BLUE: [f64; 3] = [33.0, 102.0, 172.0];
    const WHITE: [f64; 3] = [247.0, 247.0, 247.0];
    const RED: [f64; 3] = [178.0, 24.0, 43.0];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let (a, b, f) = if t < 0.5 {
        (BLUE, WHITE, t * 2.0)
    } else {
        (WHITE, RED, (t - 0.5) * 2.0)
    };
    let c = |i: usize| (a[i] + (b[i] - a[i]) * f).round() as u8;
    RGBColor(c(0), c(1), c(2))
}

/// Text of `size` px in the bundled font. Sizes are even: plotters' ab_glyph path places each
/// glyph at size/2 + its top, truncated, so at odd sizes a period sits a pixel high.
pub fn text(size: u32) -> TextStyle<'static> {
    debug_assert!(size.is_multiple_of(2), "odd text size {size}");
    (FONT_FAMILY, size).into_font().color(&BLACK)
}

/// Lower and upper bounds of finite values, widened a little (and made non-empty).
pub fn padded_range(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-6);
    (lo - pad, hi + pad)
}
