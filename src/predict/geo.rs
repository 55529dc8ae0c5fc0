//! Where the tiles are on Earth, and the files GIS tools open: a float32 GeoTIFF (EPSG:4326) and
//! RFC 7946 GeoJSON.
//!
//! Tile (x, y) covers the key-space square [x, x+1] × [y, y+1]. A city that gives WGS84 corners
//! gives, per tile, the (lat, lon) of its key-space point (x, y) (the south-west corner on Baidu's
//! grid, as the ODIAC tables do); an affine map key space → (lon, lat) is fitted to them by least
//! squares and its residual reported. A city without corners is placed nominally (see
//! [`Georef::nominal`]), and the outputs say so.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tiff::encoder::{colortype, TiffEncoder};
use tiff::tags::Tag;

use crate::data::TileKey;

const METRES_PER_DEGREE: f64 = 111_320.0;
pub const NODATA: f32 = -9999.0;

/// lon = lon[0] + lon[1]·u + lon[2]·v, lat likewise, over key-space (u, v).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Georef {
    /// `fitted` (from the city's WGS84 corners) or `nominal` (no corners: not a real place).
    pub kind: String,
    pub epsg: u32,
    pub lon: [f64; 3],
    pub lat: [f64; 3],
    /// Fit residual over the corners, in metres (0 for a nominal placement).
    pub residual_rms_m: f64,
    pub residual_max_m: f64,
    pub corners: usize,
}

impl Georef {
    /// Least squares over the tiles' corners; needs 3 corners not on one line.
    pub fn fit(corners: &[(TileKey, (f64, f64))]) -> Result<Self> {
        if corners.len() < 3 {
            bail!(
                "{} WGS84 corners: at least 3 are needed to place the tiles",
                corners.len()
            );
        }
        let n = corners.len() as f64;
        // Centre the key coordinates so that the normal equations are well conditioned.
        let (cu, cv) = corners.iter().fold((0.0, 0.0), |(a, b), (k, _)| {
            (a + k.x as f64 / n, b + k.y as f64 / n)
        });
        let rows: Vec<[f64; 3]> = corners
            .iter()
            .map(|(k, _)| [1.0, k.x as f64 - cu, k.y as f64 - cv])
            .collect();
        let solve = |values: &dyn Fn(usize) -> f64| -> Result<[f64; 3]> {
            let mut a = [[0.0; 3]; 3];
            let mut b = [0.0; 3];
            for (i, r) in rows.iter().enumerate() {
                for p in 0..3 {
                    b[p] += r[p] * values(i);
                    for q in 0..3 {
                        a[p][q] += r[p] * r[q];
                    }
                }
            }
            solve3(a, b).context("the tiles' corners lie on one line: no 2-D placement")
        };
        let lon_c = solve(&|i| corners[i].1 .1)?;
        let lat_c = solve(&|i| corners[i].1 .0)?;
        // Back from centred to raw key coordinates.
        let uncentre = |c: [f64; 3]| [c[0] - c[1] * cu - c[2] * cv, c[1], c[2]];
        let mut georef = Self {
            kind: "fitted".into(),
            epsg: 4326,
            lon: uncentre(lon_c),
            lat: uncentre(lat_c),
            residual_rms_m: 0.0,
            residual_max_m: 0.0,
            corners: corners.len(),
        };
        let mut sum = 0.0;
        for (key, (lat, lon)) in corners {
            let (flon, flat) = georef.at(key.x as f64, key.y as f64);
            let dy = (flat - lat) * METRES_PER_DEGREE;
            let dx = (flon - lon) * METRES_PER_DEGREE * lat.to_radians().cos();
            let d = dx.hypot(dy);
            sum += d * d;
            georef.residual_max_m = georef.residual_max_m.max(d);
        }
        georef.residual_rms_m = (sum / n).sqrt();
        Ok(georef)
    }

    /// No corners: tiles of `tile_size_m` placed with key (0, 0) at 0°N 0°E, x east and y north.
    /// Shapes and areas are right; the place is not.
    pub fn nominal(tile_size_m: f64) -> Self {
        let step = tile_size_m / METRES_PER_DEGREE;
        Self {
            kind: "nominal".into(),
            epsg: 4326,
            lon: [0.0, step, 0.0],
            lat: [0.0, 0.0, step],
            residual_rms_m: 0.0,
            residual_max_m: 0.0,
            corners: 0,
        }
    }

    /// (lon, lat) of key-space point (u, v).
    pub fn at(&self, u: f64, v: f64) -> (f64, f64) {
        (
            self.lon[0] + self.lon[1] * u + self.lon[2] * v,
            self.lat[0] + self.lat[1] * u + self.lat[2] * v,
        )
    }
}

fn solve3(mut a: [[f64; 3]; 3], mut b: [f64; 3]) -> Option<[f64; 3]> {
    let scale = a.iter().flatten().fold(0f64, |m, v| m.max(v.abs()));
    for col in 0..3 {
        let pivot = (col..3).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() <= 1e-12 * scale.max(1e-300) {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in 0..3 {
            if row != col {
                let f = a[row][col] / a[col][col];
                for k in 0..3 {
                    a[row][k] -= f * a[col][k];
                }
                b[row] -= f * b[col];
            }
        }
    }
    Some([b[0] / a[0][0], b[1] / a[1][1], b[2] / a[2][2]])
}

/// The raster over the tiles' bounding box, oriented north up and east right where the placement
/// allows: pixel (col, row) is key-space cell (u0 + su·col, v0 + sv·row).
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub cols: usize,
    pub rows: usize,
    xmin: i64,
    xmax: i64,
    ymin: i64,
    ymax: i64,
    flip_x: bool,
    flip_y: bool,
}

impl Grid {
    pub fn new(keys: &[TileKey], georef: &Georef) -> Result<Self> {
        if keys.is_empty() {
            bail!("no tiles to map");
        }
        let (xmin, xmax) = keys
            .iter()
            .fold((i64::MAX, i64::MIN), |(a, b), k| (a.min(k.x), b.max(k.x)));
        let (ymin, ymax) = keys
            .iter()
            .fold((i64::MAX, i64::MIN), |(a, b), k| (a.min(k.y), b.max(k.y)));
        let (cols, rows) = ((xmax - xmin + 1) as usize, (ymax - ymin + 1) as usize);
        if cols.saturating_mul(rows) > 400_000_000 {
            bail!("the tiles span {cols}×{rows} cells: too sparse an area for one raster");
        }
        Ok(Self {
            cols,
            rows,
            xmin,
            xmax,
            ymin,
            ymax,
            // East right: flip x when lon falls with u; north up: flip y when lat rises with v.
            flip_x: georef.lon[1] < 0.0,
            flip_y: georef.lat[2] > 0.0,
        })
    }

    /// Pixel (col, row) of a tile.
    pub fn pixel(&self, key: TileKey) -> (usize, usize) {
        let col = if self.flip_x {
            self.xmax - key.x
        } else {
            key.x - self.xmin
        };
        let row = if self.flip_y {
            self.ymax - key.y
        } else {
            key.y - self.ymin
        };
        (col as usize, row as usize)
    }

    /// The affine pixel-corner → (lon, lat) map: lon = c[0]·col + c[1]·row + c[2], lat likewise.
    pub fn transform(&self, georef: &Georef) -> ([f64; 3], [f64; 3]) {
        let (u0, su) = if self.flip_x {
            (self.xmax as f64 + 1.0, -1.0)
        } else {
            (self.xmin as f64, 1.0)
        };
        let (v0, sv) = if self.flip_y {
            (self.ymax as f64 + 1.0, -1.0)
        } else {
            (self.ymin as f64, 1.0)
        };
        let map = |c: &[f64; 3]| [c[1] * su, c[2] * sv, c[0] + c[1] * u0 + c[2] * v0];
        (map(&georef.lon), map(&georef.lat))
    }
}

/// A single-band float32 GeoTIFF of `values` (row-major, `grid.cols` × `grid.rows`, [`NODATA`]
/// where there is no tile), in EPSG:4326.
pub fn geotiff(values: &[f32], grid: &Grid, georef: &Georef) -> Result<Vec<u8>> {
    geotiff_bands(&[values], grid, georef)
}

/// Three float32 samples per pixel (bands), "black is zero" with two unspecified extra samples:
/// GDAL reads each sample as a band.
struct ThreeBands;

impl colortype::ColorType for ThreeBands {
    type Inner = f32;
    const TIFF_VALUE: tiff::tags::PhotometricInterpretation =
        tiff::tags::PhotometricInterpretation::BlackIsZero;
    const BITS_PER_SAMPLE: &'static [u16] = &[32, 32, 32];
    const SAMPLE_FORMAT: &'static [tiff::tags::SampleFormat] = &[
        tiff::tags::SampleFormat::IEEEFP,
        tiff::tags::SampleFormat::IEEEFP,
        tiff::tags::SampleFormat::IEEEFP,
    ];

    fn horizontal_predict(_: &[f32], _: &mut Vec<f32>) {
        unreachable!("no predictor is asked for")
    }
}

/// The georeferencing tags: placement, GeoKeys (EPSG:4326, pixel is area) and nodata.
fn geo_tags<W: std::io::Write + std::io::Seek>(
    dir: &mut tiff::encoder::DirectoryEncoder<'_, W, tiff::encoder::TiffKindStandard>,
    lon: &[f64; 3],
    lat: &[f64; 3],
) -> tiff::TiffResult<()> {
    if lon[1].abs() < 1e-15 && lat[0].abs() < 1e-15 {
        // North up: a pixel size and one tie point.
        dir.write_tag(Tag::ModelPixelScaleTag, &[lon[0], -lat[1], 0.0][..])?;
        dir.write_tag(
            Tag::ModelTiepointTag,
            &[0.0, 0.0, 0.0, lon[2], lat[2], 0.0][..],
        )?;
    } else {
        let m = [
            lon[0], lon[1], 0.0, lon[2], lat[0], lat[1], 0.0, lat[2], 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
            0.0, 1.0,
        ];
        dir.write_tag(Tag::ModelTransformationTag, &m[..])?;
    }
    // GeoKeys: version 1.1.0, 3 keys: model type geographic, raster pixel-is-area, EPSG:4326.
    let keys: [u16; 16] = [1, 1, 0, 3, 1024, 0, 1, 2, 1025, 0, 1, 1, 2048, 0, 1, 4326];
    dir.write_tag(Tag::GeoKeyDirectoryTag, &keys[..])?;
    dir.write_tag(Tag::GdalNodata, &*format!("{NODATA}"))
}

/// A GeoTIFF of one band, or three (the map and its prediction interval's lower and upper
/// bounds), each row-major over `grid`.
pub fn geotiff_bands(bands: &[&[f32]], grid: &Grid, georef: &Georef) -> Result<Vec<u8>> {
    let mut bytes = Cursor::new(Vec::new());
    let (lon, lat) = grid.transform(georef);
    let mut write = || -> tiff::TiffResult<()> {
        let mut tiff = TiffEncoder::new(&mut bytes)?;
        match bands {
            [values] => {
                let mut image =
                    tiff.new_image::<colortype::Gray32Float>(grid.cols as u32, grid.rows as u32)?;
                geo_tags(image.encoder(), &lon, &lat)?;
                image.write_data(values)
            }
            [a, b, c] => {
                let mut image = tiff.new_image::<ThreeBands>(grid.cols as u32, grid.rows as u32)?;
                geo_tags(image.encoder(), &lon, &lat)?;
                image
                    .encoder()
                    .write_tag(Tag::ExtraSamples, &[0u16, 0][..])?;
                let chunky: Vec<f32> = (0..a.len()).flat_map(|i| [a[i], b[i], c[i]]).collect();
                image.write_data(&chunky)
            }
            _ => unreachable!("one band or three"),
        }
    };
    write().context("encoding the GeoTIFF")?;
    Ok(bytes.into_inner())
}

/// The tile's polygon, counter-clockwise (RFC 7946's right-hand rule), closed.
pub fn polygon(key: TileKey, georef: &Georef) -> Vec<[f64; 2]> {
    let (x, y) = (key.x as f64, key.y as f64);
    let mut ring: Vec<[f64; 2]> = [(x, y), (x + 1.0, y), (x + 1.0, y + 1.0), (x, y + 1.0)]
        .iter()
        .map(|&(u, v)| {
            let (lon, lat) = georef.at(u, v);
            [lon, lat]
        })
        .collect();
    let area2: f64 = (0..4)
        .map(|i| {
            let (a, b) = (ring[i], ring[(i + 1) % 4]);
            a[0] * b[1] - b[0] * a[1]
        })
        .sum();
    if area2 < 0.0 {
        ring.reverse();
    }
    ring.push(ring[0]);
    ring
}

/// WGS84 corners a city gives: ODIAC tables' `WGS84 coordinate`, a canonical `tiles.csv`'s
/// `lat`, `lon`. `None` when it gives none.
pub fn corners_of(source: &Path) -> Result<Option<HashMap<TileKey, (f64, f64)>>> {
    if source.is_dir() {
        let table = crate::data::csv::CsvTable::read(&source.join("tiles.csv"))?;
        let (Some(clat), Some(clon)) = (table.column("lat"), table.column("lon")) else {
            return Ok(None);
        };
        let (cx, cy) = (table.require("x")?, table.require("y")?);
        let mut out = HashMap::new();
        for (line, f) in &table.rows {
            let key = TileKey {
                x: table.parse_field(*line, f, cx)?,
                y: table.parse_field(*line, f, cy)?,
            };
            let lat: f64 = table.parse_field(*line, f, clat)?;
            let lon: f64 = table.parse_field(*line, f, clon)?;
            if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
                bail!(
                    "{}: line {line}: tile {key} has lat {lat}, lon {lon}: not WGS84 degrees",
                    table.path
                );
            }
            out.insert(key, (lat, lon));
        }
        return Ok(Some(out));
    }
    if source
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        return Ok(Some(
            crate::data::odiac::corners(source)?.into_iter().collect(),
        ));
    }
    Ok(None)
}
