//! A canonical city read a few tiles at a time. `tiles.csv` is read whole (keys, targets and
//! covariates: a few bytes a tile); the images and POI rasters of a tile are read only when it is
//! asked for, so mapping a large area holds one chunk's rasters in memory, not the area's.
//!
//! What a chunk reads is exactly what [`super::canonical::load`] reads for those tiles (a test
//! pins it): the same image decoding, and for an f32 `poi.npy` the same per-channel scale (the
//! channel maximum over the whole file, found in one streaming pass at open).

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::canonical::{self, quantise_poi, ImagesManifest, PoiScales};
use super::city::{City, ImageStack, PoiStack};

/// The rasters of a canonical city directory, read by tile.
#[derive(Debug, Clone)]
pub struct TileReader {
    dir: PathBuf,
    images: Option<ImagesManifest>,
    poi: Option<NpyRows>,
}

/// The rows of a 4-D `poi.npy` ([N, C, H, H], u8 or little-endian f32, C order).
#[derive(Debug, Clone)]
struct NpyRows {
    path: PathBuf,
    /// Byte offset of the first element.
    offset: u64,
    f32: bool,
    categories: Vec<String>,
    side: usize,
    /// The value of channel c is `u8 · scale[c]`.
    scale: Vec<f32>,
}

impl NpyRows {
    fn row_bytes(&self) -> usize {
        self.categories.len() * self.side * self.side * if self.f32 { 4 } else { 1 }
    }
}

/// Opens a canonical city directory: the city without its rasters (its `images` and `poi` give
/// their sizes, categories and scales but hold no data, so it can be checked with
/// `union::conform` but not validated) and the reader of its rasters. Sizes are checked here.
pub fn open(dir: &Path) -> Result<(City, TileReader)> {
    let manifest = canonical::read_manifest(dir)?;
    let mut city = canonical::read_tiles(dir, &manifest)?;
    let poi = manifest
        .poi
        .as_ref()
        .map(|m| {
            let path = dir.join(&m.file);
            open_npy(&path, &m.categories, m.scale.as_deref(), &city)
                .with_context(|| format!("poi.file `{}` of city.yaml", m.file.display()))
        })
        .transpose()?;
    city.images = manifest.images.as_ref().map(|m| ImageStack {
        side: m.size,
        data: vec![],
    });
    city.poi = poi.as_ref().map(|p| PoiStack {
        categories: p.categories.clone(),
        side: p.side,
        data: vec![],
        scale: p.scale.clone(),
    });
    let reader = TileReader {
        dir: dir.to_path_buf(),
        images: manifest.images,
        poi,
    };
    Ok((city, reader))
}

impl TileReader {
    /// Tiles `rows` of `bare` (the city [`open`] returned, possibly with modalities dropped)
    /// with their rasters, as a city of their own. POI channels come in the file's order.
    pub fn read(&self, bare: &City, rows: &[usize]) -> Result<City> {
        let mut sub = bare.rows_without_rasters(rows);
        if let (Some(_), Some(m)) = (&bare.images, &self.images) {
            sub.images = Some(
                canonical::load_images(&self.dir, m, &sub.keys)
                    .with_context(|| format!("images.dir `{}` of city.yaml", m.dir.display()))?,
            );
        }
        if let (Some(_), Some(p)) = (&bare.poi, &self.poi) {
            sub.poi =
                Some(read_rows(p, rows).with_context(|| format!("reading {}", p.path.display()))?);
        }
        Ok(sub)
    }
}

/// Reads the header of `path` and checks its shape against the city; for an f32 file, finds each
/// channel's scale in one streaming pass (checking every value).
fn open_npy(
    path: &Path,
    categories: &[String],
    scale: Option<&[f32]>,
    city: &City,
) -> Result<NpyRows> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata()?.len();
    let mut reader = BufReader::new(file);
    let header = read_header(&mut reader)
        .with_context(|| format!("{}: not a 4-D u8 or f32 .npy array", path.display()))?;
    let (n, c) = (city.len(), categories.len());
    let shape = &header.shape;
    if shape.len() != 4
        || shape[0] != n
        || shape[1] != c
        || shape[2] != shape[3]
        || shape[2] > 1 << 14
    {
        bail!(
            "{}: shape {shape:?}; expected [{n} tiles, {c} categories (city.yaml poi.categories), H, H] in tiles.csv order",
            path.display()
        );
    }
    let mut rows = NpyRows {
        path: path.to_path_buf(),
        offset: header.offset,
        f32: header.f32,
        categories: categories.to_vec(),
        side: shape[2],
        scale: vec![],
    };
    let expected = header.offset + (n * rows.row_bytes()) as u64;
    if len != expected {
        bail!(
            "{}: {len} bytes; a {shape:?} array needs {expected}",
            path.display()
        );
    }
    rows.scale = if rows.f32 {
        f32_scales(&mut reader, &rows, city)?
    } else {
        let scale = scale.with_context(|| {
            format!(
                "{}: a u8 POI file needs `poi.scale` in city.yaml",
                path.display()
            )
        })?;
        if scale.len() != c || scale.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            bail!("city.yaml: poi.scale needs {c} positive values, one per category");
        }
        scale.to_vec()
    };
    Ok(rows)
}

/// Per channel, max / 255 (1 for an all-zero channel), as `canonical::load` quantises; every
/// value must be finite and ≥ 0.
fn f32_scales(
    reader: &mut BufReader<std::fs::File>,
    rows: &NpyRows,
    city: &City,
) -> Result<Vec<f32>> {
    let (c, plane) = (rows.categories.len(), rows.side * rows.side);
    let mut scales = PoiScales::new(c);
    let mut buf = vec![0u8; rows.row_bytes()];
    reader.seek(SeekFrom::Start(rows.offset))?;
    for t in 0..city.len() {
        reader.read_exact(&mut buf)?;
        for (k, bytes) in buf.chunks_exact(4).enumerate() {
            let v = f32::from_le_bytes(bytes.try_into().expect("4 bytes"));
            let ch = k / plane;
            scales.observe(&rows.path, city.keys[t], &rows.categories[ch], ch, v)?;
        }
    }
    Ok(scales.finish())
}

/// The POI rasters of tiles `rows`, one read per run of consecutive rows.
fn read_rows(p: &NpyRows, rows: &[usize]) -> Result<PoiStack> {
    let mut file = std::fs::File::open(&p.path)?;
    let (per, plane) = (p.row_bytes(), p.side * p.side);
    let mut data = Vec::with_capacity(rows.len() * p.categories.len() * plane);
    let mut buf = Vec::new();
    let mut start = 0;
    while start < rows.len() {
        let mut end = start + 1;
        while end < rows.len() && rows[end] == rows[end - 1] + 1 {
            end += 1;
        }
        buf.resize((end - start) * per, 0);
        file.seek(SeekFrom::Start(p.offset + (rows[start] * per) as u64))?;
        file.read_exact(&mut buf)?;
        if p.f32 {
            data.extend(buf.chunks_exact(4).enumerate().map(|(k, bytes)| {
                let v = f32::from_le_bytes(bytes.try_into().expect("4 bytes"));
                let ch = (k / plane) % p.categories.len();
                quantise_poi(v, p.scale[ch])
            }));
        } else {
            data.extend_from_slice(&buf);
        }
        start = end;
    }
    Ok(PoiStack {
        categories: p.categories.clone(),
        side: p.side,
        data,
        scale: p.scale.clone(),
    })
}

struct NpyHeader {
    offset: u64,
    f32: bool,
    shape: Vec<usize>,
}

/// The .npy header (format versions 1–3): element type, C order, shape.
fn read_header(reader: &mut impl Read) -> Result<NpyHeader> {
    let mut magic = [0u8; 8];
    reader.read_exact(&mut magic)?;
    if &magic[..6] != b"\x93NUMPY" {
        bail!("no .npy magic");
    }
    let (len, prefix) = match magic[6] {
        1 => {
            let mut b = [0u8; 2];
            reader.read_exact(&mut b)?;
            (u16::from_le_bytes(b) as usize, 10)
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            reader.read_exact(&mut b)?;
            (u32::from_le_bytes(b) as usize, 12)
        }
        v => bail!("unknown .npy version {v}"),
    };
    if len > 1 << 20 {
        bail!("a .npy header of {len} bytes");
    }
    let mut text = vec![0u8; len];
    reader.read_exact(&mut text)?;
    let text = String::from_utf8_lossy(&text);
    let value = |key: &str| -> Result<&str> {
        let at = text
            .find(&format!("'{key}'"))
            .with_context(|| format!("no `{key}` in the header"))?;
        let rest = &text[at + key.len() + 2..];
        Ok(rest.trim_start().trim_start_matches(':').trim_start())
    };
    let descr = value("descr")?;
    let f32 =
        if descr.starts_with("'|u1'") || descr.starts_with("'u1'") || descr.starts_with("'<u1'") {
            false
        } else if descr.starts_with("'<f4'") || descr.starts_with("'f4'") {
            true
        } else {
            bail!(
                "element type {}; expected u8 or little-endian f32",
                descr.split(',').next().unwrap_or("")
            );
        };
    if !value("fortran_order")?.starts_with("False") {
        bail!("Fortran order; expected C order");
    }
    let shape = value("shape")?;
    let inner = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .context("a shape that is not a tuple")?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .with_context(|| format!("shape entry `{s}`"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(NpyHeader {
        offset: (prefix + len) as u64,
        f32,
        shape,
    })
}
