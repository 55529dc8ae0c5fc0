//! The real ODIAC tile tables of the UrbanCLIP dataset toolkit (`labels/<City>.csv`) as a city:
//! tile key from the BD09 `(x, y)`, target = carbon (the model learns its log), covariates
//! ln(1+population) and ln(1+gdp), and a flag for the 10000.0 GDP fill value.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::canonical::{CityManifest, GridInfo};
use super::city::{City, Tabular, TileKey};
use super::csv::CsvTable;

/// GDP value that 12–20 % of rows carry, which looks like a cap or fill (see the data README).
pub const GDP_FILL: f64 = 10000.0;

const KEY: &str = "BD09 coordinate";
const LATLON: &str = "WGS84 coordinate";
const CARBON: &str = "carbon_emissions (ton)";
const POPULATION: &str = "population (unit)";
const GDP: &str = "gdp (million yuan)";

fn pair<T: std::str::FromStr>(raw: &str) -> Option<(T, T)> {
    let inner = raw.trim().strip_prefix('(')?.strip_suffix(')')?;
    let (a, b) = inner.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// Reads a labels CSV into a tabular-only city named after the file (e.g. `beijing-odiac`).
pub fn import(labels: &Path) -> Result<(City, CityManifest)> {
    let table = CsvTable::read(labels)?;
    let cols = [KEY, LATLON, CARBON, POPULATION, GDP].map(|c| table.require(c));
    let [ck, cl, cc, cp, cg] =
        [&cols[0], &cols[1], &cols[2], &cols[3], &cols[4]].map(|c| *c.as_ref().unwrap_or(&0));
    if let Some(Err(e)) = cols.into_iter().find(|c| c.is_err()) {
        return Err(e);
    }
    let mut keys = Vec::new();
    let mut emission = Vec::new();
    let mut values = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (line, f) in &table.rows {
        let at = || format!("{}: line {line}", table.path);
        let (x, y): (i64, i64) = pair(&f[ck]).with_context(|| {
            format!(
                "{}: `{KEY}` `{}` is not an (x,y) pair of integers",
                at(),
                f[ck]
            )
        })?;
        let key = TileKey { x, y };
        if let Some(first) = seen.insert(key, *line) {
            bail!("{}: tile {key} already appears on line {first}", at());
        }
        pair::<f64>(&f[cl]).with_context(|| {
            format!(
                "{}: tile {key}: `{LATLON}` `{}` is not a (lat, lon) pair",
                at(),
                f[cl]
            )
        })?;
        let carbon: f64 = table.parse_field(*line, f, cc)?;
        let population: f64 = table.parse_field(*line, f, cp)?;
        let gdp: f64 = table.parse_field(*line, f, cg)?;
        for (name, v) in [(CARBON, carbon), (POPULATION, population), (GDP, gdp)] {
            if !v.is_finite() || v < 0.0 {
                bail!(
                    "{}: tile {key}: `{name}` = {v}; it must be finite and ≥ 0",
                    at()
                );
            }
        }
        keys.push(key);
        emission.push(carbon);
        values.extend([
            (1.0 + population).ln() as f32,
            (1.0 + gdp).ln() as f32,
            f32::from(u8::from(gdp == GDP_FILL)),
        ]);
    }
    let stem = labels
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("city")
        .to_lowercase();
    let city = City {
        name: format!("{stem}-odiac"),
        keys,
        emission,
        images: None,
        poi: None,
        tabular: Some(Tabular {
            columns: vec!["ln_population".into(), "ln_gdp".into(), "gdp_filled".into()],
            values,
        }),
        district: None,
    };
    city.validate()
        .with_context(|| format!("importing {}", labels.display()))?;
    let manifest = CityManifest {
        name: city.name.clone(),
        description: Some(format!(
            "ODIAC carbon (tonnes C per 30\" cell, Dec 2021, point sample at the tile's SW corner) with WorldPop 2020 \
             population and the 2010 China GDP grid, per Baidu zoom-16 tile; imported from {}. gdp_filled = 1 where \
             gdp == {GDP_FILL} (a cap or fill value).",
            labels.file_name().and_then(|s| s.to_str()).unwrap_or("labels")
        )),
        grid: GridInfo { zoom: Some(16), tile_size_m: Some(850.0), scheme: Some("baidu-bd09".into()) },
        images: None,
        poi: None,
        tabular: vec![],
        target: "emission".into(),
        provenance: Some("siruzhong/UrbanCLIP-Dataset-Toolkit @ 1b2541d1 (integrate/output/<City>/<City>.csv)".into()),
        licence: Some("no licence file: internal test fixture only; ODIAC and WorldPop are CC BY 4.0 (cite them)".into()),
    };
    Ok((city, manifest))
}

/// Each tile's `WGS84 coordinate` (lat, lon): the south-west corner of the tile, i.e. its
/// key-space point (x, y).
pub fn corners(labels: &Path) -> Result<Vec<(TileKey, (f64, f64))>> {
    let table = CsvTable::read(labels)?;
    let (ck, cl) = (table.require(KEY)?, table.require(LATLON)?);
    table
        .rows
        .iter()
        .map(|(line, f)| {
            let at = || format!("{}: line {line}", table.path);
            let (x, y) = pair::<i64>(&f[ck])
                .with_context(|| format!("{}: `{KEY}` `{}` is not an (x,y) pair", at(), f[ck]))?;
            let latlon = pair::<f64>(&f[cl]).with_context(|| {
                format!("{}: `{LATLON}` `{}` is not a (lat, lon) pair", at(), f[cl])
            })?;
            Ok((TileKey { x, y }, latlon))
        })
        .collect()
}
