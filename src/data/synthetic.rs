//! Synthetic cities with a known ground truth.
//!
//! A city is a grid of tiles, each `tile_side` pixels wide. Land use is decided per pixel from
//! smooth random fields (value noise) pulled towards urban centres: residential, commercial,
//! industrial, vegetation, and water (a river and lakes). Images are rendered from land use
//! (built-up greys and browns with roof texture, green vegetation, blue water, dark roads); POI
//! rasters are points of each category scattered where that category's land use is, as density
//! bumps.
//!
//! Two tile-level hidden fields make the modalities complementary:
//! - `activity` raises POI counts (every category) but is invisible in the image;
//! - `density` darkens roofs in the image but does not change POI counts.
//!
//! Ground truth, with f_* the land-use fractions of the tile and ρ its road fraction:
//!
//! ```text
//! local(t) = 2.0 f_ind + 1.2 f_com + 0.8 f_res − 1.0 f_veg
//!          + 4.0 f_com f_res            (mixed use: an interaction of categories)
//!          + 3.0 f_ind ρ                (industry on roads)
//!          + a (activity − ½)           (POI only; a = 1.0 by default)
//!          + d (density − ½) f_built    (image only; d = 1.5 by default)
//! ln E(t)  = offset + local(t) + s · mean of local over the 8 neighbours (agglomeration; s = 0.5)
//!          + N(0, 0.1²)
//! ```
//! `signal: {activity: a, density: d, spill: s}` plants stronger (or weaker) effects: an
//! ablation test sized for a CI budget needs each modality's share to be large.
//! and E(t) = 0 (not a sample, still a neighbour) where water covers more than 85 % of the tile.

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::canonical::{CityManifest, GridInfo};
use super::city::{City, ImageStack, PoiStack, Tabular, TileKey};

/// Layouts that differ in structure and emission level, for transfer tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// One centre, a river; the quickstart city.
    Monocentric,
    /// Three centres of different strength, a river, finer patches.
    Polycentric,
    /// Weak centre, large patches, more vegetation, lower emissions.
    Sprawl,
    /// No centre and no river: the urban pull is itself smooth noise, so every part of the city
    /// is drawn from the same law and no spatial fold is an extrapolation (the CI sweep's city:
    /// spatial cross-validation has power on it at a small size).
    Patchwork,
}

impl std::str::FromStr for Preset {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "monocentric" => Preset::Monocentric,
            "polycentric" => Preset::Polycentric,
            "sprawl" => Preset::Sprawl,
            "patchwork" => Preset::Patchwork,
            _ => {
                bail!("unknown synthetic preset `{s}`: expected monocentric, polycentric, sprawl or patchwork")
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynthConfig {
    pub preset: Preset,
    /// Tiles across and down.
    pub width: usize,
    pub height: usize,
    /// Pixels per tile side (images and POI rasters).
    #[serde(default = "default_side")]
    pub tile_side: usize,
    /// POI categories (1..=15).
    #[serde(default = "default_categories")]
    pub poi_categories: usize,
    #[serde(default)]
    pub seed: u64,
    /// How strongly the modality-specific fields and the neighbours drive the emission.
    #[serde(default, skip_serializing_if = "Signal::is_default")]
    pub signal: Signal,
}

/// Weights of the ground truth's modality-specific terms and its spill-over (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Signal {
    /// POI-only: the hidden `activity` field.
    pub activity: f64,
    /// Image-only: roof `density`, per unit of built-up fraction.
    pub density: f64,
    /// Neighbourhood: the weight of the 8 neighbours' mean local emission.
    pub spill: f64,
}

impl Default for Signal {
    fn default() -> Self {
        Self {
            activity: 1.0,
            density: 1.5,
            spill: 0.5,
        }
    }
}

impl Signal {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    fn check(&self) -> Result<()> {
        for (name, v) in [
            ("activity", self.activity),
            ("density", self.density),
            ("spill", self.spill),
        ] {
            if !v.is_finite() || !(0.0..=10.0).contains(&v) {
                bail!("synthetic city: signal.{name} must be a number in 0..=10, got {v}");
            }
        }
        Ok(())
    }
}

fn default_side() -> usize {
    64
}
fn default_categories() -> usize {
    15
}

const RES: usize = 0;
const COM: usize = 1;
const IND: usize = 2;
const VEG: usize = 3;
const WAT: usize = 4;

/// POI categories and their affinity to residential, commercial, industrial, vegetation, water.
const CATEGORIES: [(&str, [f32; 5]); 15] = [
    ("catering", [0.6, 1.0, 0.2, 0.1, 0.0]),
    ("shopping", [0.5, 1.0, 0.1, 0.0, 0.0]),
    ("company", [0.2, 0.9, 0.7, 0.0, 0.0]),
    ("industry", [0.0, 0.1, 1.0, 0.0, 0.0]),
    ("residence", [1.0, 0.2, 0.0, 0.0, 0.0]),
    ("transport", [0.4, 0.6, 0.6, 0.1, 0.0]),
    ("education", [0.7, 0.3, 0.0, 0.2, 0.0]),
    ("health", [0.6, 0.4, 0.0, 0.0, 0.0]),
    ("leisure", [0.3, 0.5, 0.0, 0.8, 0.2]),
    ("hotel", [0.2, 1.0, 0.0, 0.1, 0.0]),
    ("finance", [0.1, 1.0, 0.0, 0.0, 0.0]),
    ("government", [0.3, 0.6, 0.1, 0.0, 0.0]),
    ("auto_service", [0.3, 0.3, 0.8, 0.0, 0.0]),
    ("tourism", [0.1, 0.4, 0.0, 0.9, 0.5]),
    ("sports", [0.5, 0.2, 0.0, 0.6, 0.1]),
];

struct Layout {
    /// (x, y) as fractions of the city, strength, spread as a fraction of the city's diagonal.
    centres: Vec<(f32, f32, f32, f32)>,
    /// Land-use patch size in tiles.
    patch: f32,
    river: bool,
    vegetation_bias: f32,
    /// An urban pull from smooth noise with cells of this many tiles, in 0.1..0.9, wherever it
    /// exceeds the centres' (the patchwork has none, so it is the whole pull: a stationary city);
    /// 0: none.
    urban_noise_cell: f32,
    offset: f64,
}

fn layout(preset: Preset) -> Layout {
    match preset {
        Preset::Monocentric => Layout {
            centres: vec![(0.5, 0.5, 1.0, 0.28)],
            patch: 2.0,
            river: true,
            vegetation_bias: 0.0,
            urban_noise_cell: 0.0,
            offset: 6.0,
        },
        Preset::Polycentric => Layout {
            centres: vec![
                (0.3, 0.35, 1.0, 0.16),
                (0.72, 0.3, 0.8, 0.14),
                (0.55, 0.75, 0.7, 0.15),
            ],
            patch: 1.3,
            river: true,
            vegetation_bias: 0.1,
            urban_noise_cell: 0.0,
            offset: 5.5,
        },
        Preset::Sprawl => Layout {
            centres: vec![(0.45, 0.55, 0.6, 0.4)],
            patch: 3.0,
            river: false,
            vegetation_bias: 0.35,
            urban_noise_cell: 0.0,
            offset: 4.5,
        },
        Preset::Patchwork => Layout {
            centres: vec![],
            patch: 1.5,
            river: false,
            vegetation_bias: 0.0,
            urban_noise_cell: 3.0,
            offset: 5.5,
        },
    }
}

/// Smooth noise in [0, 1]: random values on a lattice, interpolated with smoothstep.
struct ValueNoise {
    cols: usize,
    cell: f32,
    values: Vec<f32>,
}

impl ValueNoise {
    fn new(rng: &mut ChaCha8Rng, extent_x: f32, extent_y: f32, cell: f32) -> Self {
        let cols = (extent_x / cell) as usize + 3;
        let rows = (extent_y / cell) as usize + 3;
        Self {
            cols,
            cell,
            values: (0..cols * rows).map(|_| rng.random::<f32>()).collect(),
        }
    }

    fn at(&self, x: f32, y: f32) -> f32 {
        let (gx, gy) = (x / self.cell, y / self.cell);
        let (ix, iy) = (gx as usize, gy as usize);
        let (fx, fy) = (gx - ix as f32, gy - iy as f32);
        let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
        let v = |c: usize, r: usize| self.values[r * self.cols + c];
        let top = v(ix, iy) * (1.0 - sx) + v(ix + 1, iy) * sx;
        let bottom = v(ix, iy + 1) * (1.0 - sx) + v(ix + 1, iy + 1) * sx;
        top * (1.0 - sy) + bottom * sy
    }
}

/// A cheap, deterministic per-pixel hash in [0, 1).
fn hash01(a: u64, b: u64, c: u64) -> f32 {
    let mut h = a.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ c.wrapping_mul(0x1656_67B1_9E37_79F9);
    h ^= h >> 31;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 29;
    (h >> 40) as f32 / (1u64 << 24) as f32
}

struct Fields {
    land: [ValueNoise; 4],
    detail: [ValueNoise; 4],
    lakes: ValueNoise,
    activity: ValueNoise,
    density: ValueNoise,
    /// The stationary urban pull (`Layout::urban_noise_cell`), drawn after everything else so
    /// that the other presets' cities stay as they were.
    urban: Option<ValueNoise>,
}

/// What a tile's pixels add up to.
struct TileFacts {
    fractions: [f32; 5],
    roads: f32,
    activity: f32,
    density: f32,
}

/// `WIDTHxHEIGHT` in tiles, e.g. `40x40`.
pub fn parse_size(size: &str) -> Result<(usize, usize)> {
    size.split_once('x')
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
        .with_context(|| format!("`{size}`: expected WIDTHxHEIGHT in tiles, e.g. 40x40"))
}

/// Writes a generated city as a canonical directory, its manifest saying how it was made.
pub fn write_canonical(city: &City, config: &SynthConfig, out: &std::path::Path) -> Result<()> {
    let manifest = CityManifest {
        name: city.name.clone(),
        description: Some(format!(
            "synthetic city, {config:?}; ground truth in src/data/synthetic.rs"
        )),
        grid: GridInfo {
            zoom: None,
            tile_size_m: None,
            scheme: Some("synthetic".into()),
        },
        images: None,
        poi: None,
        tabular: vec![],
        target: "emission".into(),
        provenance: Some(format!(
            "opencarbon {} datasets synth",
            env!("CARGO_PKG_VERSION")
        )),
        licence: Some("generated: no restrictions".into()),
    };
    super::canonical::write(city, out, &manifest)
}

/// Generates a synthetic city, deterministic per `config`: the latent landscape from the seed's
/// stream, each tile rendered from it (image and POIs), then the emission and the covariates.
pub fn generate(config: &SynthConfig) -> Result<City> {
    check_config(config)?;
    let land = Landscape::draw(config);
    let tiles: Vec<Tile> = (0..config.width * config.height)
        .into_par_iter()
        .map(|t| render_tile(&land, config, t))
        .collect();
    let normals = tile_normals(config.seed, tiles.len());
    let emission = emissions(config, &land.layout, &tiles, &normals);
    let tabular = covariates(&tiles, &normals);
    let city = assemble(config, tiles, emission, tabular);
    city.validate()?;
    Ok(city)
}

/// Rejects a config the generator cannot honour, before anything is drawn.
fn check_config(config: &SynthConfig) -> Result<()> {
    let SynthConfig {
        width,
        height,
        tile_side: side,
        poi_categories,
        signal,
        ..
    } = config;
    signal.check()?;
    if *width == 0 || *height == 0 || *side < 8 {
        bail!("synthetic city: size {width}x{height} with tile side {side} is too small (need ≥ 1×1 tiles of ≥ 8 px)");
    }
    if *poi_categories == 0 || *poi_categories > CATEGORIES.len() {
        bail!(
            "synthetic city: poi_categories must be 1..={}, got {poi_categories}",
            CATEGORIES.len()
        );
    }
    Ok(())
}

/// The latent fields of a city and where its river runs: all that the seed's own stream draws.
struct Landscape {
    layout: Layout,
    fields: Fields,
    river_phase: f32,
    river_y: f32,
    /// Pixels per tile side, and the city's extent and diagonal in pixels.
    side: f32,
    ext_x: f32,
    ext_y: f32,
    diagonal: f32,
}

impl Landscape {
    /// Draws the noise fields (land use, detail, lakes, activity, density) and then the river,
    /// in this order from the seed's stream: the order fixes every city of a seed.
    fn draw(config: &SynthConfig) -> Self {
        let layout = layout(config.preset);
        let s = config.tile_side as f32;
        let (ext_x, ext_y) = (config.width as f32 * s, config.height as f32 * s);
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let mk = |rng: &mut ChaCha8Rng, cell: f32| ValueNoise::new(rng, ext_x, ext_y, cell);
        let mut fields = Fields {
            land: std::array::from_fn(|_| mk(&mut rng, layout.patch * s)),
            detail: std::array::from_fn(|_| mk(&mut rng, layout.patch * s / 3.0)),
            lakes: mk(&mut rng, 2.5 * s),
            activity: mk(&mut rng, 2.0 * s),
            density: mk(&mut rng, 1.5 * s),
            urban: None,
        };
        let river_phase = rng.random::<f32>() * std::f32::consts::TAU;
        let river_y = 0.3 + 0.4 * rng.random::<f32>();
        if layout.urban_noise_cell > 0.0 {
            fields.urban = Some(mk(&mut rng, layout.urban_noise_cell * s));
        }
        Self {
            layout,
            fields,
            river_phase,
            river_y,
            side: s,
            ext_x,
            ext_y,
            diagonal: (ext_x * ext_x + ext_y * ext_y).sqrt(),
        }
    }

    /// The land use of the pixel at (px, py): water on the river or a lake, else the best score
    /// of noise plus each class's pull towards (or away from) the urban centres.
    fn classify(&self, px: f32, py: f32) -> usize {
        let (lay, fields) = (&self.layout, &self.fields);
        let (ext_x, ext_y) = (self.ext_x, self.ext_y);
        if lay.river {
            let centre_y =
                ext_y * self.river_y + 0.08 * ext_y * (px / ext_x * 6.0 + self.river_phase).sin();
            if (py - centre_y).abs() < 0.25 * self.side {
                return WAT;
            }
        }
        if fields.lakes.at(px, py) > 0.86 {
            return WAT;
        }
        let urban = lay
            .centres
            .iter()
            .map(|&(cx, cy, strength, spread)| {
                let (dx, dy) = (px - cx * ext_x, py - cy * ext_y);
                let sigma = spread * self.diagonal;
                strength * (-(dx * dx + dy * dy) / (2.0 * sigma * sigma)).exp()
            })
            .fold(0.0f32, f32::max)
            .max(
                fields
                    .urban
                    .as_ref()
                    .map_or(0.0, |u| 0.1 + 0.8 * u.at(px, py)),
            );
        let n = |c: usize| 0.7 * fields.land[c].at(px, py) + 0.3 * fields.detail[c].at(px, py);
        let scores = [
            n(RES) + 1.1 * urban,
            n(COM) + 1.8 * urban * urban - 0.25,
            n(IND) + 1.6 * urban * (1.0 - urban) - 0.05,
            n(VEG) + 0.75 + lay.vegetation_bias - 1.7 * urban,
        ];
        (0..4)
            .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
            .unwrap_or(VEG)
    }
}

/// One rendered tile: its image, its POI raster, and what its pixels add up to.
struct Tile {
    image: Vec<u8>,
    poi: Vec<u8>,
    facts: TileFacts,
}

/// Renders tile `t` (row-major): its pixels from the landscape, then its POIs, with the hidden
/// activity and density read at its centre.
fn render_tile(land: &Landscape, config: &SynthConfig, t: usize) -> Tile {
    let s = land.side;
    let (tx, ty) = ((t % config.width) as f32, (t / config.width) as f32);
    let centre = (tx * s + s / 2.0, ty * s + s / 2.0);
    let activity = land.fields.activity.at(centre.0, centre.1);
    let density = land.fields.density.at(centre.0, centre.1);
    let painted = paint_tile(land, config, (tx, ty), density);
    let poi = scatter_pois(config, t, &painted, activity);
    Tile {
        image: painted.image,
        poi,
        facts: TileFacts {
            fractions: painted.fractions,
            roads: painted.roads,
            activity,
            density,
        },
    }
}

/// A tile's pixels: the image, each pixel's land use, and the land-use and road fractions.
struct Painted {
    image: Vec<u8>,
    class_map: Vec<u8>,
    fractions: [f32; 5],
    roads: f32,
}

/// Paints a tile pixel by pixel: land use, roads, and colour, with roofs darkened by `density`
/// (the image-only signal).
fn paint_tile(
    land: &Landscape,
    config: &SynthConfig,
    (tx, ty): (f32, f32),
    density: f32,
) -> Painted {
    let (side, s) = (config.tile_side, land.side);
    let road_width = (side / 64).max(1);
    let mut image = vec![0u8; 3 * side * side];
    let mut class_map = vec![0u8; side * side];
    let mut counts = [0usize; 5];
    let mut road_pixels = 0usize;
    for py in 0..side {
        for px in 0..side {
            let (gx, gy) = (tx * s + px as f32, ty * s + py as f32);
            let class = land.classify(gx, gy);
            counts[class] += 1;
            class_map[py * side + px] = class as u8;
            let (ux, uy) = (gx as usize, gy as usize);
            let road = on_road(class, ux, uy, side, road_width);
            road_pixels += road as usize;
            let jitter = hash01(config.seed, ux as u64, uy as u64);
            for (c, v) in pixel_colour(class, road, jitter, density)
                .into_iter()
                .enumerate()
            {
                image[c * side * side + py * side + px] = v;
            }
        }
    }
    let total = (side * side) as f32;
    Painted {
        image,
        class_map,
        fractions: counts.map(|c| c as f32 / total),
        roads: road_pixels as f32 / total,
    }
}

/// Whether the pixel at (ux, uy) is road: a major grid every two tiles (not over water), and a
/// minor grid, densest on commercial land, then residential, then industrial.
fn on_road(class: usize, ux: usize, uy: usize, side: usize, road_width: usize) -> bool {
    let spacing = match class {
        COM => side / 4,
        RES => side / 3,
        IND => side / 2,
        _ => usize::MAX,
    };
    let major =
        class != WAT && ((ux % (2 * side)) < 2 * road_width || (uy % (2 * side)) < 2 * road_width);
    let minor = spacing != usize::MAX && (ux % spacing < road_width || uy % spacing < road_width);
    major || minor
}

/// A pixel's colour: road grey, or its land use's colour with built roofs darkened where the
/// hashed `jitter` falls under 0.45·density; then ±12 of that jitter as texture.
fn pixel_colour(class: usize, road: bool, jitter: f32, density: f32) -> [u8; 3] {
    let mut rgb: [f32; 3] = match class {
        RES => [182.0, 168.0, 152.0],
        COM => [204.0, 204.0, 214.0],
        IND => [150.0, 128.0, 104.0],
        VEG => [62.0, 118.0, 52.0],
        _ => [38.0, 68.0, 128.0],
    };
    if road {
        rgb = [88.0, 88.0, 92.0];
    } else if class <= IND && jitter < 0.45 * density {
        // Roofs: denser built form darkens more pixels (visible only in images).
        rgb = rgb.map(|v| v * 0.62);
    }
    let noise = (jitter - 0.5) * 24.0;
    rgb.map(|v| (v + noise).clamp(0.0, 255.0) as u8)
}

/// A tile's POI raster: per category a Poisson count from its land use and `activity` (the
/// POI-only signal), each point a bump placed where that category's land use is; drawn from the
/// tile's own stream, so tiles render in any order.
fn scatter_pois(config: &SynthConfig, t: usize, painted: &Painted, activity: f32) -> Vec<u8> {
    let side = config.tile_side;
    let categories = &CATEGORIES[..config.poi_categories];
    let bump = (side / 32).max(1) as i64;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ (0xA5A5_0000_0000 + t as u64));
    let mut raster = vec![0f32; categories.len() * side * side];
    for (c, (_, affinity)) in categories.iter().enumerate() {
        let expected: f32 = (0..5)
            .map(|k| painted.fractions[k] * affinity[k])
            .sum::<f32>()
            * 12.0
            * (1.6 * (activity - 0.5)).exp();
        let channel = &mut raster[c * side * side..(c + 1) * side * side];
        for _ in 0..poisson(&mut rng, expected) {
            if let Some((px, py)) = place_poi(&mut rng, &painted.class_map, side, affinity) {
                splat(channel, side, px as i64, py as i64, bump);
            }
        }
    }
    raster
        .iter()
        .map(|v| (v * POI_STEPS).round().min(255.0) as u8)
        .collect()
}

/// A pixel for one POI by rejection (at most 64 tries): uniform, kept with probability its land
/// use's affinity over the category's largest.
fn place_poi(
    rng: &mut ChaCha8Rng,
    class_map: &[u8],
    side: usize,
    affinity: &[f32; 5],
) -> Option<(usize, usize)> {
    let max_aff = affinity.iter().cloned().fold(0.0f32, f32::max).max(1e-6);
    for _try in 0..64 {
        let (px, py) = (rng.random_range(0..side), rng.random_range(0..side));
        let k = class_map[py * side + px] as usize;
        if rng.random::<f32>() * max_aff <= affinity[k] {
            return Some((px, py));
        }
    }
    None
}

/// Three standard normals per tile, in tile order, from one stream: the emission's noise, then
/// the population's and the economy's (drawn interleaved: this order fixes every city of a seed).
fn tile_normals(seed: u64, n_tiles: usize) -> Vec<[f64; 3]> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_0FE1_5510);
    (0..n_tiles)
        .map(|_| {
            [
                standard_normal(&mut rng),
                standard_normal(&mut rng),
                standard_normal(&mut rng),
            ]
        })
        .collect()
}

/// The law's local term of a tile (see the module doc): land use, mixed use, industry on roads,
/// and the planted activity (POI-only) and density (image-only) effects.
fn local_emission(facts: &TileFacts, signal: &Signal) -> f64 {
    let [res, com, ind, veg, _] = facts.fractions.map(|v| v as f64);
    let built = res + com + ind;
    2.0 * ind + 1.2 * com + 0.8 * res - 1.0 * veg
        + 4.0 * com * res
        + 3.0 * ind * facts.roads as f64
        + signal.activity * (facts.activity as f64 - 0.5)
        + signal.density * (facts.density as f64 - 0.5) * built
}

/// The mean local term of tile `t`'s neighbours (up to 8, fewer on the edge): the spill-over.
fn neighbour_mean(local: &[f64], width: usize, height: usize, t: usize) -> f64 {
    let (x, y) = ((t % width) as i64, (t / width) as i64);
    let neighbours: Vec<f64> = (-1..=1i64)
        .flat_map(|dy| (-1..=1i64).map(move |dx| (dx, dy)))
        .filter(|&(dx, dy)| (dx, dy) != (0, 0))
        .filter_map(|(dx, dy)| {
            let (nx, ny) = (x + dx, y + dy);
            (nx >= 0 && ny >= 0 && nx < width as i64 && ny < height as i64)
                .then(|| local[(ny as usize) * width + nx as usize])
        })
        .collect();
    if neighbours.is_empty() {
        0.0
    } else {
        neighbours.iter().sum::<f64>() / neighbours.len() as f64
    }
}

/// Each tile's emission: ln E = offset + local + spill · neighbours' mean + 0.1 · its first
/// normal, and E = 0 where water covers more than 85 % of the tile.
fn emissions(config: &SynthConfig, lay: &Layout, tiles: &[Tile], normals: &[[f64; 3]]) -> Vec<f64> {
    let signal = &config.signal;
    let local: Vec<f64> = tiles
        .iter()
        .map(|tile| local_emission(&tile.facts, signal))
        .collect();
    (0..tiles.len())
        .map(|t| {
            let spill = neighbour_mean(&local, config.width, config.height, t);
            let ln_e = lay.offset + local[t] + signal.spill * spill + 0.1 * normals[t][0];
            if tiles[t].facts.fractions[WAT] > 0.85 {
                0.0
            } else {
                ln_e.exp()
            }
        })
        .collect()
}

/// Covariates as a census would see them, ln(1 + population) and ln(1 + GDP): people live in
/// residential land, output is commercial and industrial; both noisy (the second and third normals).
fn covariates(tiles: &[Tile], normals: &[[f64; 3]]) -> Tabular {
    let mut values = Vec::with_capacity(2 * tiles.len());
    for (tile, [_, pop_noise, gdp_noise]) in tiles.iter().zip(normals) {
        let facts = &tile.facts;
        let [res, com, ind, _, _] = facts.fractions;
        let pop =
            4000.0 * (res + 0.3 * com) * (0.5 + facts.density) * (0.3 * pop_noise).exp() as f32;
        let gdp = 9000.0
            * (com + 0.6 * ind + 0.1 * res)
            * (0.5 + facts.activity)
            * (0.3 * gdp_noise).exp() as f32;
        values.extend([(1.0 + pop).ln(), (1.0 + gdp).ln()]);
    }
    Tabular {
        columns: vec!["ln_population".into(), "ln_gdp".into()],
        values,
    }
}

/// The city: keys row-major, the tiles' images and POI rasters stacked in tile order.
fn assemble(config: &SynthConfig, tiles: Vec<Tile>, emission: Vec<f64>, tabular: Tabular) -> City {
    let (side, width) = (config.tile_side, config.width);
    let categories = &CATEGORIES[..config.poi_categories];
    let mut images = Vec::with_capacity(tiles.len() * 3 * side * side);
    let mut poi = Vec::with_capacity(tiles.len() * categories.len() * side * side);
    for tile in &tiles {
        images.extend_from_slice(&tile.image);
        poi.extend_from_slice(&tile.poi);
    }
    City {
        name: city_name(config),
        keys: (0..tiles.len())
            .map(|t| TileKey {
                x: (t % width) as i64,
                y: (t / width) as i64,
            })
            .collect(),
        emission,
        images: Some(ImageStack { side, data: images }),
        poi: Some(PoiStack {
            categories: categories.iter().map(|(n, _)| n.to_string()).collect(),
            side,
            data: poi,
            scale: vec![1.0 / POI_STEPS; categories.len()],
        }),
        tabular: Some(tabular),
        district: None,
    }
}

/// `synthetic-<preset>-<W>x<H>-s<seed>`, with `-a<activity>d<density>s<spill>` for a signal
/// other than the default.
fn city_name(config: &SynthConfig) -> String {
    let signal = &config.signal;
    format!(
        "synthetic-{}-{}x{}-s{}{}",
        preset_name(config.preset),
        config.width,
        config.height,
        config.seed,
        if signal.is_default() {
            String::new()
        } else {
            format!("-a{}d{}s{}", signal.activity, signal.density, signal.spill)
        }
    )
}

/// POI densities are stored as u8 steps of 1/32 (saturating at ≈ 8 overlapping points).
const POI_STEPS: f32 = 32.0;

pub fn preset_name(preset: Preset) -> &'static str {
    match preset {
        Preset::Monocentric => "monocentric",
        Preset::Polycentric => "polycentric",
        Preset::Sprawl => "sprawl",
        Preset::Patchwork => "patchwork",
    }
}

/// Adds a cone-shaped bump of radius `r` at (x, y).
fn splat(raster: &mut [f32], side: usize, x: i64, y: i64, r: i64) {
    for dy in -r..=r {
        for dx in -r..=r {
            let (px, py) = (x + dx, y + dy);
            if px < 0 || py < 0 || px >= side as i64 || py >= side as i64 {
                continue;
            }
            let d = ((dx * dx + dy * dy) as f32).sqrt() / (r as f32 + 1.0);
            if d < 1.0 {
                raster[py as usize * side + px as usize] += 1.0 - d;
            }
        }
    }
}

fn poisson(rng: &mut ChaCha8Rng, lambda: f32) -> usize {
    if lambda <= 0.0 {
        return 0;
    }
    if lambda > 30.0 {
        return (lambda + lambda.sqrt() * standard_normal(rng) as f32)
            .round()
            .max(0.0) as usize;
    }
    let limit = (-lambda).exp();
    let (mut k, mut p) = (0usize, 1.0f32);
    loop {
        p *= rng.random::<f32>();
        if p <= limit {
            return k;
        }
        k += 1;
    }
}

fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(signal: &str) -> SynthConfig {
        serde_norway::from_str(&format!(
            "{{preset: monocentric, width: 6, height: 5, tile_side: 8, poi_categories: 3, seed: 2{signal}}}"
        ))
        .unwrap()
    }

    #[test]
    fn the_default_signal_is_the_documented_law_and_stays_out_of_the_spec() {
        let plain = config("");
        assert_eq!(
            plain,
            config(", signal: {activity: 1.0, density: 1.5, spill: 0.5}")
        );
        // Omitted when default, so the run ids of specs without it do not change.
        assert!(!serde_norway::to_string(&plain).unwrap().contains("signal"));
        assert_eq!(
            generate(&plain).unwrap().name,
            "synthetic-monocentric-6x5-s2"
        );
    }

    #[test]
    fn the_signal_changes_the_emissions_and_only_them() {
        let plain = generate(&config("")).unwrap();
        let strong = generate(&config(", signal: {spill: 2.0, density: 4}")).unwrap();
        assert_eq!(plain.images, strong.images);
        assert_eq!(plain.poi, strong.poi);
        assert_ne!(plain.emission, strong.emission);
        assert_eq!(strong.name, "synthetic-monocentric-6x5-s2-a1d4s2");
        // Without the spill-over no tile's emission depends on its neighbours: a tile's ln E is
        // the law's local term, so removing the spill lowers every land tile where the
        // neighbours' local term is positive and raises it where negative; all differ.
        let alone = generate(&config(", signal: {spill: 0}")).unwrap();
        let changed = plain
            .emission
            .iter()
            .zip(&alone.emission)
            .filter(|(a, b)| **a > 0.0 && a != b)
            .count();
        assert_eq!(changed, plain.emission.iter().filter(|e| **e > 0.0).count());
    }

    #[test]
    fn a_bad_signal_is_an_error_naming_its_key() {
        let e = serde_norway::from_str::<SynthConfig>(
            "{preset: monocentric, width: 4, height: 4, signal: {activty: 2}}",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("activty"), "{e}");
        let e = generate(&config(", signal: {density: -1}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("signal.density"), "{e}");
    }

    /// The mean commercial fraction of the tiles within a quarter of the city's side from its
    /// centre, minus that of the tiles on its outer two rings.
    fn commercial_centre_minus_edge(preset: &str, seed: u64) -> f64 {
        let config: SynthConfig = serde_norway::from_str(&format!(
            "{{preset: {preset}, width: 24, height: 24, tile_side: 8, poi_categories: 3, seed: {seed}}}"
        ))
        .unwrap();
        let land = Landscape::draw(&config);
        let (mut centre, mut edge) = (Vec::new(), Vec::new());
        for t in 0..24 * 24 {
            let (x, y) = ((t % 24) as f64, (t / 24) as f64);
            let commercial = render_tile(&land, &config, t).facts.fractions[COM] as f64;
            let d = (x - 11.5).abs().max((y - 11.5).abs());
            if d < 6.0 {
                centre.push(commercial);
            } else if d > 10.0 {
                edge.push(commercial);
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        mean(&centre) - mean(&edge)
    }

    #[test]
    fn a_patchwork_city_has_no_centre_and_mixes_every_land_use() {
        // A monocentric city's commerce is in its centre; a patchwork's is anywhere.
        let mono: Vec<f64> = (0..6)
            .map(|s| commercial_centre_minus_edge("monocentric", s))
            .collect();
        let patch: Vec<f64> = (0..6)
            .map(|s| commercial_centre_minus_edge("patchwork", s))
            .collect();
        assert!(mono.iter().all(|&d| d > 0.4), "{mono:?}");
        assert!(patch.iter().all(|&d| d.abs() < 0.2), "{patch:?} {mono:?}");
        // Every land use occurs: a stationary mix, not one class everywhere.
        let config: SynthConfig = serde_norway::from_str(
            "{preset: patchwork, width: 24, height: 24, tile_side: 8, poi_categories: 3, seed: 3}",
        )
        .unwrap();
        let land = Landscape::draw(&config);
        let mut seen = [0usize; 5];
        for t in 0..24 * 24 {
            let facts = render_tile(&land, &config, t).facts;
            let dominant = (0..5)
                .max_by(|&a, &b| facts.fractions[a].total_cmp(&facts.fractions[b]))
                .unwrap();
            seen[dominant] += 1;
        }
        assert!(seen[..4].iter().all(|&n| n >= 10), "{seen:?}");
        assert_eq!(
            generate(&config).unwrap().name,
            "synthetic-patchwork-24x24-s3"
        );
    }
}
