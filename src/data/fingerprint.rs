//! Content hashes of the data a run reads (`meta.json`'s `data`). The run id hashes the spec, which
//! names a dataset's path but not its content: without these, a run whose labels were edited since
//! would still count as done, with the old metrics.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use super::{canonical, root, synthetic, City};
use super::{DatasetSpec, NamedDataset};

/// Prefix of the entry of a generated city: `synthetic:<dataset name>` → hash of its labels.
pub const SYNTHETIC: &str = "synthetic:";

/// Image files a canonical city's loader reads (`canonical::load_images`).
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Every dataset a run reads (its own, named `label`, and its transfer targets'): each file read
/// → its SHA-256 (hex); an image folder → one hash over its images; a synthetic city → the hash
/// of the labels it generates (content-derived too, though no file holds them), taken from
/// `loaded` (the run's own city) when given instead of generating it a second time. Paths as the
/// spec gives them.
pub fn of_datasets(
    label: &str,
    dataset: &DatasetSpec,
    targets: &[NamedDataset],
    loaded: Option<&City>,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    match (dataset, loaded) {
        (DatasetSpec::Synthetic(_), Some(city)) => {
            out.insert(format!("{SYNTHETIC}{label}"), labels(city));
        }
        (dataset, _) => add(dataset, label, &mut out)?,
    }
    for target in targets {
        add(&target.dataset, &target.name, &mut out)?;
    }
    Ok(out)
}

fn add(dataset: &DatasetSpec, name: &str, out: &mut BTreeMap<String, String>) -> Result<()> {
    match dataset {
        DatasetSpec::Synthetic(config) => {
            // Small cities, generated in well under a second: cheaper than plumbing the loaded one.
            let city = synthetic::generate(config)?;
            out.insert(format!("{SYNTHETIC}{name}"), labels(&city));
        }
        DatasetSpec::OdiacTiles { labels } => add_file(labels, out)?,
        DatasetSpec::Dir { path } => {
            let manifest = canonical::read_manifest(&root::locate(path)?)?;
            add_file(&path.join("city.yaml"), out)?;
            add_file(&path.join("tiles.csv"), out)?;
            if let Some(poi) = &manifest.poi {
                add_file(&path.join(&poi.file), out)?;
            }
            if let Some(images) = &manifest.images {
                add_file(&path.join(&images.dir), out)?;
            }
        }
        DatasetSpec::Union { parts } => {
            for part in parts {
                add(&part.dataset, &part.name, out)?;
            }
        }
    }
    Ok(())
}

/// Records `path` as the spec gives it, hashing the file it names (relocated by OPENCARBON_DATA,
/// `data::root`) so that the record reads the same whichever copy of the data was read.
fn add_file(path: &Path, out: &mut BTreeMap<String, String>) -> Result<()> {
    let hash = hash_path(&root::locate(path)?)?;
    out.insert(path.display().to_string(), hash);
    Ok(())
}

/// SHA-256 (hex) of a city's labels: every tile's key and emission, in tile order.
pub fn labels(city: &City) -> String {
    let mut hasher = Sha256::new();
    for (key, emission) in city.keys.iter().zip(&city.emission) {
        hasher.update(key.x.to_le_bytes());
        hasher.update(key.y.to_le_bytes());
        hasher.update(emission.to_le_bytes());
    }
    hex(hasher)
}

/// SHA-256 (hex) of a file, streamed (rasters can be large); of a folder, over each image file's
/// name and hash, by name.
pub fn hash_path(path: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    if path.is_dir() {
        let mut images: Vec<_> = std::fs::read_dir(path)
            .with_context(|| format!("listing {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&&*e.to_string_lossy()))
            })
            .collect();
        images.sort();
        for image in images {
            hasher.update(image.file_name().unwrap_or_default().as_encoded_bytes());
            hasher.update([0]);
            hasher.update(hash_path(&image)?);
        }
    } else {
        let mut file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        std::io::copy(&mut file, &mut hasher)
            .with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(hex(hasher))
}

pub(crate) fn hex(hasher: Sha256) -> String {
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The first recorded file whose content is not what it was: a done run trained on other data.
/// Synthetic entries are not regenerated (the spec fixes the generator's input, the build commit
/// its code), and a missing file is no change: re-running could only fail, and would discard the
/// run's record first. Recorded paths are read where OPENCARBON_DATA puts them, as when hashed.
pub fn changed(recorded: &BTreeMap<String, String>) -> Option<String> {
    recorded
        .iter()
        .filter(|(key, _)| !key.starts_with(SYNTHETIC))
        .map(|(path, hash)| (path, hash, root::resolve(Path::new(path))))
        .filter(|(_, _, file)| file.exists())
        .find(|(_, hash, file)| hash_path(file).is_ok_and(|now| &now != *hash))
        .map(|(path, ..)| path.clone())
}
