//! Builds the city a spec's `dataset:` names: synthetic, a canonical directory, ODIAC tiles or a
//! union of parts. Runner, transfer, predict and report all load cities here.

use std::path::Path;

use anyhow::{Context, Result};

use super::DatasetSpec;
use super::{canonical, normalize, odiac, root, synthetic, union, City};
use crate::model::Modality;

/// How a city is loaded: which inputs to keep, and whether to normalise them per city.
#[derive(Debug, Clone)]
pub struct CityOptions {
    /// See `data::normalize` (a transfer option, off by default).
    pub per_city_inputs: bool,
    /// Inputs not listed are dropped, so that joined cities are compared on what is read.
    pub modalities: Vec<Modality>,
}

impl Default for CityOptions {
    fn default() -> Self {
        Self {
            per_city_inputs: false,
            modalities: Modality::ALL.to_vec(),
        }
    }
}

/// Builds the city a spec names.
pub fn load_city(dataset: &DatasetSpec, options: &CityOptions) -> Result<City> {
    let mut city = match dataset {
        DatasetSpec::Synthetic(config) => synthetic::generate(config)?,
        // Paths as the spec gives them, read where OPENCARBON_DATA puts them (`data::root`).
        DatasetSpec::Dir { path } => {
            let dir = root::locate(path)?;
            relocated(canonical::load(&dir), path, &dir)?
        }
        DatasetSpec::OdiacTiles { labels } => {
            let file = root::locate(labels)?;
            relocated(odiac::import(&file), labels, &file)?.0
        }
        DatasetSpec::Union { parts } => {
            let cities = parts
                .iter()
                .map(|p| {
                    let mut city = load_city(&p.dataset, options)
                        .with_context(|| format!("dataset part `{}`", p.name))?;
                    city.name = p.name.clone();
                    Ok(city)
                })
                .collect::<Result<Vec<_>>>()?;
            // Parts are already normalised and trimmed.
            return Ok(union::join(cities)?.0);
        }
    };
    union::keep_only(&mut city, &options.modalities);
    if options.per_city_inputs {
        normalize::per_city_inputs(&mut city);
    }
    Ok(city)
}

/// An error reading `file`, the spec's `path` relocated, also names the spec's path (as is when
/// not relocated: the loader's error names it).
fn relocated<T>(result: Result<T>, path: &Path, file: &Path) -> Result<T> {
    if path == file {
        return result;
    }
    result.with_context(|| format!("dataset {} (read at {})", path.display(), file.display()))
}
