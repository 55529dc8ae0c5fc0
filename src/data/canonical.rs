//! The canonical city directory (datasets/README.md):
//!
//! ```text
//! <city>/city.yaml   manifest: name, grid, modalities, POI categories and scales, tabular columns,
//!                    target column, provenance, licence
//! <city>/tiles.csv   x, y, <target> (raw emission ≥ 0), optional lat, lon, district, covariates
//! <city>/images/     <x>_<y>.png or .jpg, RGB, size × size (optional)
//! <city>/poi.npy     [N, C, H, W] u8 (with `poi.scale`) or f32, in tiles.csv order (optional)
//! ```
//! Loading checks everything and names the file, line, column or tile that is wrong.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ndarray::{Array4, ArrayView4};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use serde::{Deserialize, Serialize};

use super::city::{City, ImageStack, PoiStack, Tabular, TileKey};
use super::csv::{quote, CsvTable};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct GridInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zoom: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tile_size_m: Option<f64>,
    /// Which tiling the keys come from (e.g. "baidu-bd09", "synthetic").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagesManifest {
    #[serde(default = "default_images_dir")]
    pub dir: PathBuf,
    /// Side of every image in pixels.
    pub size: usize,
}

fn default_images_dir() -> PathBuf {
    "images".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoiManifest {
    #[serde(default = "default_poi_file")]
    pub file: PathBuf,
    pub categories: Vec<String>,
    /// For a u8 file: the value of channel c is `u8 · scale[c]`. Absent for f32 files, which are
    /// quantised to u8 per channel at load (scale = channel max / 255).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<Vec<f32>>,
}

fn default_poi_file() -> PathBuf {
    "poi.npy".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CityManifest {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub grid: GridInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<ImagesManifest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poi: Option<PoiManifest>,
    /// Columns of tiles.csv used as tabular covariates, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tabular: Vec<String>,
    /// Column of tiles.csv with the raw emission (the model learns its natural log).
    #[serde(default = "default_target")]
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licence: Option<String>,
}

fn default_target() -> String {
    "emission".into()
}

/// Reads and parses `<dir>/city.yaml`; errors name the file (and the line of a bad key).
pub fn read_manifest(dir: &Path) -> Result<CityManifest> {
    let manifest_path = dir.join("city.yaml");
    let text = std::fs::read_to_string(&manifest_path).with_context(|| {
        format!(
            "reading {} (is {} a canonical city directory?)",
            manifest_path.display(),
            dir.display()
        )
    })?;
    crate::yaml::deserialize_located(&text, &manifest_path.display().to_string())
}

/// `tiles.csv` of a canonical city: keys, targets, covariates and districts, without the images
/// and POI rasters (`images` and `poi` are `None`). Errors name the file, line and column.
pub fn read_tiles(dir: &Path, manifest: &CityManifest) -> Result<City> {
    let table = CsvTable::read(&dir.join("tiles.csv"))?;
    let (cx, cy, ce) = (
        table.require("x")?,
        table.require("y")?,
        table
            .require(&manifest.target)
            .context("the target column city.yaml names")?,
    );
    let district_col = table.column("district");
    let tab_cols: Vec<usize> = manifest
        .tabular
        .iter()
        .map(|c| table.require(c))
        .collect::<Result<_>>()
        .context("a tabular column city.yaml lists")?;
    let mut keys = Vec::with_capacity(table.rows.len());
    let mut emission = Vec::with_capacity(table.rows.len());
    let mut values = Vec::with_capacity(table.rows.len() * tab_cols.len());
    let mut districts = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (line, fields) in &table.rows {
        let key = TileKey {
            x: table.parse_field(*line, fields, cx)?,
            y: table.parse_field(*line, fields, cy)?,
        };
        if let Some(first) = seen.insert(key, *line) {
            bail!(
                "{}: line {line}: tile {key} already appears on line {first}",
                table.path
            );
        }
        let raw = fields[ce].trim();
        if raw.is_empty() {
            bail!("{}: line {line}: tile {key} has no `{}` (every tile needs a target; use 0 for none)", table.path, manifest.target);
        }
        let e: f64 = table.parse_field(*line, fields, ce)?;
        if !e.is_finite() || e < 0.0 {
            bail!(
                "{}: line {line}: tile {key} has `{}` = {raw}; emissions must be finite and ≥ 0",
                table.path,
                manifest.target
            );
        }
        for &c in &tab_cols {
            let v: f32 = table.parse_field(*line, fields, c)?;
            if !v.is_finite() {
                bail!(
                    "{}: line {line}: tile {key} has `{}` = {}; covariates must be finite",
                    table.path,
                    table.header[c],
                    fields[c]
                );
            }
            values.push(v);
        }
        if let Some(d) = district_col {
            districts.push(fields[d].trim().to_string());
        }
        keys.push(key);
        emission.push(e);
    }
    if keys.is_empty() {
        bail!("{}: no tiles", table.path);
    }

    Ok(City {
        name: manifest.name.clone(),
        keys,
        emission,
        images: None,
        poi: None,
        tabular: (!tab_cols.is_empty()).then(|| Tabular {
            columns: manifest.tabular.clone(),
            values,
        }),
        district: district_col.map(|_| districts),
    })
}

/// Loads and validates a canonical city directory.
pub fn load(dir: &Path) -> Result<City> {
    let manifest = read_manifest(dir)?;
    let mut city = read_tiles(dir, &manifest)?;
    let keys = &city.keys;
    let images = manifest
        .images
        .as_ref()
        .map(|m| {
            load_images(dir, m, keys)
                .with_context(|| format!("images.dir `{}` of city.yaml", m.dir.display()))
        })
        .transpose()?;
    let poi = manifest
        .poi
        .as_ref()
        .map(|m| {
            load_poi(dir, m, keys)
                .with_context(|| format!("poi.file `{}` of city.yaml", m.file.display()))
        })
        .transpose()?;
    city.images = images;
    city.poi = poi;
    city.validate()
        .with_context(|| format!("validating {}", dir.display()))?;
    Ok(city)
}

fn image_path(dir: &Path, m: &ImagesManifest, key: TileKey) -> Option<PathBuf> {
    ["png", "jpg", "jpeg"]
        .iter()
        .map(|ext| dir.join(&m.dir).join(format!("{}_{}.{ext}", key.x, key.y)))
        .find(|p| p.exists())
}

pub(crate) fn load_images(dir: &Path, m: &ImagesManifest, keys: &[TileKey]) -> Result<ImageStack> {
    let s = m.size;
    let mut data = Vec::with_capacity(keys.len() * 3 * s * s);
    for &key in keys {
        let path = image_path(dir, m, key).with_context(|| {
            format!(
                "tile {key} of tiles.csv: no image {}/{}_{}.png (or .jpg)",
                dir.join(&m.dir).display(),
                key.x,
                key.y
            )
        })?;
        let img = image::open(&path)
            .with_context(|| format!("tile {key}: cannot read image {}", path.display()))?;
        let channels = img.color().channel_count();
        if channels != 3 {
            bail!(
                "tile {key}: image {} has {channels} channel(s); expected 3 (RGB)",
                path.display()
            );
        }
        let rgb = img.to_rgb8();
        if rgb.width() as usize != s || rgb.height() as usize != s {
            bail!(
                "tile {key}: image {} is {}×{}; city.yaml says images.size = {s}",
                path.display(),
                rgb.width(),
                rgb.height()
            );
        }
        // HWC → CHW
        let raw = rgb.as_raw();
        for c in 0..3 {
            data.extend((0..s * s).map(|p| raw[p * 3 + c]));
        }
    }
    Ok(ImageStack { side: s, data })
}

fn load_poi(dir: &Path, m: &PoiManifest, keys: &[TileKey]) -> Result<PoiStack> {
    let path = dir.join(&m.file);
    let read = || std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()));
    let c = m.categories.len();
    let check_shape = |shape: &[usize]| -> Result<usize> {
        if shape.len() != 4 || shape[0] != keys.len() || shape[1] != c || shape[2] != shape[3] {
            bail!(
                "{}: shape {shape:?}; expected [{} tiles, {c} categories (city.yaml poi.categories), H, H] in tiles.csv order",
                path.display(),
                keys.len()
            );
        }
        Ok(shape[2])
    };
    if let Ok(array) = Array4::<u8>::read_npy(read()?) {
        let side = check_shape(array.shape())?;
        let scale = m.scale.clone().with_context(|| {
            format!(
                "{}: a u8 POI file needs `poi.scale` in city.yaml",
                path.display()
            )
        })?;
        if scale.len() != c || scale.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            bail!("city.yaml: poi.scale needs {c} positive values, one per category");
        }
        return Ok(PoiStack {
            categories: m.categories.clone(),
            side,
            data: array.as_standard_layout().iter().copied().collect(),
            scale,
        });
    }
    let array = Array4::<f32>::read_npy(read()?)
        .with_context(|| format!("{}: not a 4-D u8 or f32 .npy array", path.display()))?;
    let side = check_shape(array.shape())?;
    let mut scales = PoiScales::new(c);
    for ((t, ch, _, _), &v) in array.indexed_iter() {
        scales.observe(&path, keys[t], &m.categories[ch], ch, v)?;
    }
    let scale = scales.finish();
    let data = array
        .indexed_iter()
        .map(|((_, ch, _, _), &v)| quantise_poi(v, scale[ch]))
        .collect();
    Ok(PoiStack {
        categories: m.categories.clone(),
        side,
        data,
        scale,
    })
}

/// The u8 scales of f32 POI channels: each channel's maximum / 255 (1 for an all-zero channel).
/// Every value goes through [`PoiScales::observe`], which also checks it.
pub(crate) struct PoiScales {
    max: Vec<f32>,
}

impl PoiScales {
    pub(crate) fn new(channels: usize) -> Self {
        Self {
            max: vec![0.0; channels],
        }
    }

    /// Value `v` of channel `ch` (named `category`) of tile `key` in the file `path`.
    pub(crate) fn observe(
        &mut self,
        path: &Path,
        key: TileKey,
        category: &str,
        ch: usize,
        v: f32,
    ) -> Result<()> {
        if !v.is_finite() || v < 0.0 {
            bail!(
                "{}: tile {key} category `{category}` has value {v}; POI densities must be finite and ≥ 0",
                path.display()
            );
        }
        self.max[ch] = self.max[ch].max(v / 255.0);
        Ok(())
    }

    pub(crate) fn finish(self) -> Vec<f32> {
        self.max
            .into_iter()
            .map(|s| if s > 0.0 { s } else { 1.0 })
            .collect()
    }
}

/// An f32 POI density as u8 at `scale`.
pub(crate) fn quantise_poi(v: f32, scale: f32) -> u8 {
    (v / scale).round().min(255.0) as u8
}

/// Writes `city` as a canonical directory (u8 POI with scales, PNG images); `load` reads it back
/// exactly.
pub fn write(city: &City, dir: &Path, extra: &CityManifest) -> Result<()> {
    city.validate()?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut manifest = extra.clone();
    manifest.name = city.name.clone();
    manifest.target = "emission".into();
    manifest.images = city.images.as_ref().map(|s| ImagesManifest {
        dir: default_images_dir(),
        size: s.side,
    });
    manifest.poi = city.poi.as_ref().map(|p| PoiManifest {
        file: default_poi_file(),
        categories: p.categories.clone(),
        scale: Some(p.scale.clone()),
    });
    manifest.tabular = city
        .tabular
        .as_ref()
        .map(|t| t.columns.clone())
        .unwrap_or_default();
    std::fs::write(dir.join("city.yaml"), serde_norway::to_string(&manifest)?)?;

    let mut csv = String::from("x,y,emission");
    if city.district.is_some() {
        csv.push_str(",district");
    }
    for c in &manifest.tabular {
        write!(csv, ",{}", quote(c))?;
    }
    csv.push('\n');
    let f = manifest.tabular.len();
    for (i, key) in city.keys.iter().enumerate() {
        write!(csv, "{},{},{}", key.x, key.y, city.emission[i])?;
        if let Some(d) = &city.district {
            write!(csv, ",{}", quote(&d[i]))?;
        }
        if let Some(t) = &city.tabular {
            for v in &t.values[i * f..(i + 1) * f] {
                write!(csv, ",{v}")?;
            }
        }
        csv.push('\n');
    }
    std::fs::write(dir.join("tiles.csv"), csv)?;

    if let Some(s) = &city.images {
        let images = dir.join("images");
        std::fs::create_dir_all(&images)?;
        let n = s.side * s.side;
        for (i, key) in city.keys.iter().enumerate() {
            let chw = &s.data[i * 3 * n..(i + 1) * 3 * n];
            let hwc: Vec<u8> = (0..n)
                .flat_map(|p| [chw[p], chw[n + p], chw[2 * n + p]])
                .collect();
            let img = image::RgbImage::from_raw(s.side as u32, s.side as u32, hwc)
                .context("image buffer size")?;
            let path = images.join(format!("{}_{}.png", key.x, key.y));
            img.save(&path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    if let Some(p) = &city.poi {
        let shape = (city.len(), p.categories.len(), p.side, p.side);
        let view = ArrayView4::from_shape(shape, &p.data).context("POI buffer size")?;
        let path = dir.join("poi.npy");
        let file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        view.write_npy(std::io::BufWriter::new(file))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
