//! The `dataset:` section of a run: where its city comes from. `load::load_city` reads it.

use serde::{Deserialize, Serialize};

use super::synthetic::{self, SynthConfig};

/// Where a run's city comes from: `dataset: {kind: synthetic, preset: …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DatasetSpec {
    /// A synthetic city generated on the fly (deterministic per its seed).
    Synthetic(SynthConfig),
    /// A canonical city directory (datasets/README.md).
    Dir { path: std::path::PathBuf },
    /// A real ODIAC labels table (`odiac-tiles/labels/<City>.csv`), imported in memory.
    OdiacTiles { labels: std::path::PathBuf },
    /// Several cities as one (training on more than one city); see `data::union`.
    Union { parts: Vec<NamedDataset> },
}

/// A city with its name in the experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedDataset {
    pub name: String,
    pub dataset: DatasetSpec,
}

impl DatasetSpec {
    /// A display name derived from the source, for a dataset without a key in an experiment.
    pub fn default_label(&self) -> String {
        match self {
            DatasetSpec::Synthetic(s) => format!("synthetic-{}", synthetic::preset_name(s.preset)),
            DatasetSpec::Dir { path } => path
                .file_name()
                .map_or("dir".into(), |n| n.to_string_lossy().into_owned()),
            DatasetSpec::OdiacTiles { labels } => labels
                .file_stem()
                .map_or("odiac".into(), |n| n.to_string_lossy().to_lowercase()),
            DatasetSpec::Union { parts } => parts
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join("+"),
        }
    }

    /// Values serde cannot check, each problem naming its key under `dataset`.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self {
            DatasetSpec::Dir { .. } | DatasetSpec::OdiacTiles { .. } => {}
            DatasetSpec::Union { parts } => {
                if parts.len() < 2 {
                    problems.push("dataset.parts: a union needs at least two cities".into());
                }
            }
            DatasetSpec::Synthetic(s) => {
                if s.width == 0 || s.height == 0 {
                    problems.push("dataset.width/height: must be at least 1".into());
                }
                if s.tile_side < 8 {
                    problems.push(format!(
                        "dataset.tile_side: {} is below the minimum of 8",
                        s.tile_side
                    ));
                }
                if s.poi_categories == 0 || s.poi_categories > 15 {
                    problems.push(format!(
                        "dataset.poi_categories: {} must be 1..=15",
                        s.poi_categories
                    ));
                }
            }
        }
        problems
    }
}
