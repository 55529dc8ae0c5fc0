//! The run spec: YAML → typed, checked spec. Precedence: built-in defaults → spec file →
//! `--set key.path=value` overrides. Unknown keys are errors, with a did-you-mean.

pub mod ensemble;
pub mod expect;
pub mod experiment;
pub mod launcher;
mod overrides;
pub mod search;

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::checked::{Checked, Params};
use crate::data::split::SplitConfig;
use crate::model::ModelConfig;
use crate::train::TrainConfig;

pub use crate::baselines::{BaselineKind, BaselineSpec};
pub use crate::data::DatasetSpec;
pub use experiment::Experiment;
pub use overrides::apply_override;

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
    /// Set by a search (issue 31), never in a spec file: this run is one trial of the search on
    /// an inner fold, or the chosen setting refitted on its outer fold (`tune::Tuning`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<crate::tune::Tuning>,
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
        self.dataset.default_label()
    }

    /// How a run is named in progress and failure lines: dataset / variant / seed [/ fold].
    pub fn label(&self) -> String {
        let fold = self.split.fold().map(|f| format!(" / fold {f}"));
        let trial = match (&self.tuning, self.split.inner()) {
            (Some(crate::tune::Tuning::Trial { trial, .. }), Some(i)) => {
                format!(" / trial {trial} inner fold {}", i.fold)
            }
            _ => String::new(),
        };
        format!(
            "{} / {} / seed {}{}{trial}",
            self.dataset_label(),
            self.variant,
            self.seed,
            fold.unwrap_or_default()
        )
    }

    /// Whether the run passes every `--only key=value` filter (variant, dataset, seed, fold).
    pub fn matches(&self, only: &[(String, String)]) -> bool {
        only.iter().all(|(k, v)| match k.as_str() {
            "variant" => &self.variant == v,
            "dataset" => &self.dataset_label() == v,
            "seed" => self.seed.to_string() == *v,
            "fold" => self.split.fold().map(|f| f.to_string()).as_ref() == Some(v),
            _ => false,
        })
    }

    /// The modalities a run reads: the network's, or those a baseline's features name.
    pub fn modalities_read(&self) -> Vec<crate::model::Modality> {
        match &self.baseline {
            None => self.model.modalities.clone(),
            Some(b) => b.modalities(),
        }
    }

    /// The city a transfer run trains on (`transfer::load`).
    pub fn transfer_source(&self) -> crate::transfer::Source<'_> {
        crate::transfer::Source {
            name: self.dataset_label(),
            dataset: &self.dataset,
            split: &self.split,
            seed: self.seed,
            modalities: self.modalities_read(),
        }
    }

    /// Content hashes of every dataset this run reads (`data::fingerprint`); `loaded` is the
    /// run's own city when it is already in memory.
    pub fn data_fingerprint(
        &self,
        loaded: Option<&crate::data::City>,
    ) -> Result<std::collections::BTreeMap<String, String>> {
        let targets = self.transfer.as_ref().map_or(&[][..], |t| &t.targets[..]);
        crate::data::fingerprint::of_datasets(&self.dataset_label(), &self.dataset, targets, loaded)
    }
}

impl RunSpec {
    /// How far around a tile (tiles, Chebyshev) this variant reads: the network's neighbourhood
    /// radius, a baseline's widest spatial lag, 1 for the neighbour mean (its neighbours'
    /// targets), 0 for what reads the tile alone.
    pub fn window_radius(&self) -> usize {
        match &self.baseline {
            None => self.model.neighbourhood,
            Some(b) => b.window_radius(),
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
    pub fn load(path: &Path, overrides: &[String]) -> Result<Checked<Self>> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading spec {}", path.display()))?;
        Self::parse(&text, &path.display().to_string(), overrides)
    }

    /// Parses spec text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str, overrides: &[String]) -> Result<Checked<Self>> {
        let spec: RunSpec = if overrides.is_empty() {
            crate::yaml::deserialize_located(text, origin)?
        } else {
            let mut value: serde_norway::Value = serde_norway::from_str(text).map_err(|e| {
                anyhow::anyhow!("{origin}: {}", crate::yaml::describe(&e.to_string()))
            })?;
            for o in overrides {
                apply_override(&mut value, o).with_context(|| format!("--set {o}"))?;
            }
            crate::yaml::deserialize_value(value, &format!("{origin} (after --set)"))?
        };
        let mut spec = spec;
        let radius = spec.window_radius();
        spec.split.default_buffer(radius);
        spec.checked()
            .with_context(|| format!("{origin}: invalid spec"))
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
    /// Private: only a checked spec's fold count is known to be small (`Checked::expand_folds`).
    fn expand_folds(self) -> Vec<RunSpec> {
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

impl Params for RunSpec {
    /// Values serde cannot check (ranges, combinations), of every section, all at once.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(why) = check_name(&self.name) {
            problems.push(format!("name: `{}` {why}", self.name.escape_debug()));
        }
        problems.extend(self.model.problems());
        problems.extend(self.train.problems());
        problems.extend(self.train.problems_with(&self.model.modalities));
        problems.extend(self.split.check());
        if let Some(b) = &self.baseline {
            problems.extend(b.problems());
        }
        match (&self.tuning, self.split.inner()) {
            (Some(crate::tune::Tuning::Trial { .. }), None)
            | (None | Some(crate::tune::Tuning::Refit { .. }), Some(_)) => problems.push(
                "split.inner and tuning: only a search's trial runs have them, together; leave both out of specs".into(),
            ),
            _ => {}
        }
        if let Some(t) = &self.transfer {
            problems.extend(t.check(self.train.standardize_target));
        }
        problems.extend(self.dataset.check());
        problems
    }
}

impl Checked<RunSpec> {
    /// One checked run per fold of a cross-validation split whose fold is not set.
    pub fn expand_folds(self) -> Result<Vec<Checked<RunSpec>>> {
        self.into_inner()
            .expand_folds()
            .into_iter()
            .map(Params::checked)
            .collect()
    }

    /// The network's section, checked with the run.
    pub fn model_params(&self) -> &Checked<ModelConfig> {
        self.part(|s| &s.model)
    }

    /// The training section, checked with the run.
    pub fn train_params(&self) -> &Checked<TrainConfig> {
        self.part(|s| &s.train)
    }
}
