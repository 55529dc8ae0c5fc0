//! The run spec: YAML → typed, checked spec. Precedence: built-in defaults → spec file →
//! `--set key.path=value` overrides. Unknown keys are errors, with a did-you-mean.

pub(crate) mod errors;
pub mod experiment;
mod overrides;

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::split::SplitConfig;
use crate::data::synthetic::SynthConfig;
use crate::model::ModelConfig;
use crate::train::TrainConfig;

pub use experiment::Experiment;
pub use overrides::apply_override;

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
    Union {
        parts: Vec<crate::transfer::NamedDataset>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// Experiment name; results go to `results/<name>/` unless `--out` says otherwise.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub dataset: DatasetSpec,
    #[serde(default)]
    pub split: SplitConfig,
    #[serde(default)]
    pub model: ModelConfig,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// The variant this run belongs to (set by sweep expansion; `default` for a plain spec).
    #[serde(default = "default_variant")]
    pub variant: String,
    /// The dataset's name within the experiment (the key under `datasets:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_name: Option<String>,
    /// Run a non-neural baseline on the same split instead of the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineSpec>,
    /// After training on `dataset`, test on other cities (zero-shot and few-shot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<crate::transfer::TransferConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineKind {
    Mean,
    Ridge,
    Gbt,
    NeighbourMean,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineSpec {
    pub kind: BaselineKind,
    /// Features for ridge and gbt: covariate names, `poi:<category>` or `poi:*` (POI totals).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// Ridge penalty.
    #[serde(default)]
    pub lambda: f64,
}

impl BaselineSpec {
    pub fn baseline(&self) -> crate::baselines::Baseline {
        use crate::baselines::Baseline;
        match self.kind {
            BaselineKind::Mean => Baseline::Mean,
            BaselineKind::NeighbourMean => Baseline::NeighbourMean,
            BaselineKind::Ridge => Baseline::Ridge {
                columns: self.columns.clone(),
                lambda: self.lambda,
            },
            BaselineKind::Gbt => Baseline::Gbt {
                columns: self.columns.clone(),
                params: Default::default(),
            },
        }
    }
}

fn default_seed() -> u64 {
    42
}

fn default_variant() -> String {
    "default".into()
}

impl RunSpec {
    /// The dataset's display name: its key in the experiment, else derived from the spec.
    pub fn dataset_label(&self) -> String {
        if let Some(name) = &self.dataset_name {
            return name.clone();
        }
        match &self.dataset {
            DatasetSpec::Synthetic(s) => format!(
                "synthetic-{}",
                crate::data::synthetic::preset_name(s.preset)
            ),
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
}

impl RunSpec {
    /// How far around a tile (tiles, Chebyshev) this variant reads: the network's neighbourhood
    /// radius, a baseline's widest spatial lag, 1 for the neighbour mean (its neighbours'
    /// targets), 0 for what reads the tile alone.
    pub fn window_radius(&self) -> usize {
        match &self.baseline {
            None => self.model.neighbourhood,
            Some(b) => match b.kind {
                BaselineKind::Mean => 0,
                BaselineKind::NeighbourMean => 1,
                BaselineKind::Ridge | BaselineKind::Gbt => b
                    .columns
                    .iter()
                    .filter_map(|c| crate::baselines::split_lag(c).ok().and_then(|(k, _)| k))
                    .max()
                    .unwrap_or(0),
            },
        }
    }

    /// Why this run's test score can be inflated by its window: the window reaches tiles that
    /// the split may have put in training next to a test tile (a random split, or a buffer
    /// narrower than the window). None when the split's buffer covers the window.
    pub fn leak(&self) -> Option<String> {
        let r = self.window_radius();
        if r == 0 {
            return None;
        }
        let side = 2 * r + 1;
        match self.split.guaranteed_buffer() {
            Some(b) if b >= r => None,
            Some(b) => Some(format!(
                "`{}` reads a {side}×{side} window (radius {r}) but the split's buffer is {b} tile(s)",
                self.variant
            )),
            None => Some(format!(
                "`{}` reads a {side}×{side} window (radius {r}) and a `{}` split puts test tiles next to training tiles",
                self.variant,
                self.split.kind_name()
            )),
        }
    }
}

impl RunSpec {
    /// Reads `path`, applies `overrides` (`key.path=value`, value in YAML syntax), and checks it.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading spec {}", path.display()))?;
        Self::parse(&text, &path.display().to_string(), overrides)
    }

    /// Parses spec text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str, overrides: &[String]) -> Result<Self> {
        let spec: RunSpec = if overrides.is_empty() {
            errors::deserialize_located(text, origin)?
        } else {
            let mut value: serde_norway::Value = serde_norway::from_str(text)
                .map_err(|e| anyhow::anyhow!("{origin}: {}", errors::describe(&e.to_string())))?;
            for o in overrides {
                apply_override(&mut value, o).with_context(|| format!("--set {o}"))?;
            }
            errors::deserialize_value(value, &format!("{origin} (after --set)"))?
        };
        let mut spec = spec;
        let radius = spec.window_radius();
        spec.split.default_buffer(radius);
        spec.check()
            .with_context(|| format!("{origin}: invalid spec"))?;
        Ok(spec)
    }

    /// Checks values that serde cannot (ranges, combinations), all at once.
    pub fn check(&self) -> Result<()> {
        let mut problems = Vec::new();
        if let Err(why) = check_name(&self.name) {
            problems.push(format!("name: `{}` {why}", self.name.escape_debug()));
        }
        problems.extend(self.model.check());
        problems.extend(self.train.check(&self.model.modalities));
        problems.extend(self.split.check());
        if let Some(b) = &self.baseline {
            if matches!(b.kind, BaselineKind::Ridge | BaselineKind::Gbt) && b.columns.is_empty() {
                problems.push("baseline.columns: ridge and gbt need at least one feature".into());
            }
            if !(b.lambda >= 0.0 && b.lambda.is_finite()) {
                problems.push(format!("baseline.lambda: {} must be ≥ 0", b.lambda));
            }
        }
        if let Some(t) = &self.transfer {
            problems.extend(t.check(self.train.standardize_target));
        }
        match &self.dataset {
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
        if !problems.is_empty() {
            bail!("{}", problems.join("\n"));
        }
        Ok(())
    }

    /// The fully resolved spec (every default written out), enough to re-run alone.
    pub fn resolved_yaml(&self) -> String {
        serde_norway::to_string(self).expect("a spec always serialises")
    }

    /// A stable id: the seed, the cross-validation fold if any, and a hash of the resolved spec.
    pub fn run_id(&self) -> String {
        let digest = Sha256::digest(self.resolved_yaml().as_bytes());
        let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
        match self.split.fold() {
            Some(f) => format!("s{}-f{f}-{hex}", self.seed),
            None => format!("s{}-{hex}", self.seed),
        }
    }

    /// One run per fold of a cross-validation split whose fold is not set; else the spec alone.
    pub fn expand_folds(self) -> Vec<RunSpec> {
        match (self.split.folds(), self.split.fold()) {
            (Some(k), None) => (0..k)
                .map(|f| RunSpec {
                    split: self.split.with_fold(f),
                    ..self.clone()
                })
                .collect(),
            _ => vec![self],
        }
    }
}

/// An experiment name becomes a directory (`results/<name>`), and specs may come from pull
/// requests: it must stay one plain path component.
pub fn check_name(name: &str) -> std::result::Result<(), &'static str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+');
    if name.is_empty() || name.len() > 100 {
        Err("must be 1 to 100 characters")
    } else if !name.chars().all(plain) {
        Err("may hold only ASCII letters, digits and `-_.+` (it names a directory)")
    } else if name.starts_with('.') {
        Err("must not start with `.` (`..` would leave the results directory)")
    } else {
        Ok(())
    }
}
