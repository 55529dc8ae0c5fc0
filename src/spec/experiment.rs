//! Experiments: a spec with `variants:` (named patches over the base), `datasets:` (named
//! cities) and `seeds:` expands into runs (variant × dataset × seed), each a full [`RunSpec`]
//! with a stable id. A spec without those keys is one run.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_norway::{Mapping, Value};

use super::ensemble::EnsembleConfig;
use super::launcher::LauncherConfig;
use super::{apply_override, RunSpec};
use crate::checked::{Checked, Params};
use crate::track::mlflow::TrackingConfig;
use crate::yaml as errors;

/// Top-level keys of an experiment file (nested keys are checked per run).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // parsed only to reject unknown keys with their line
struct ExperimentKeys {
    name: Value,
    description: Option<Value>,
    dataset: Option<Value>,
    datasets: Option<Mapping>,
    split: Option<Value>,
    model: Option<Value>,
    train: Option<Value>,
    seed: Option<Value>,
    seeds: Option<Vec<u64>>,
    variants: Option<Mapping>,
    baseline: Option<Value>,
    transfer: Option<Value>,
    compare: Option<CompareConfig>,
    expect: Option<Vec<String>>,
    allow_leaky: Option<String>,
    launcher: Option<LauncherConfig>,
    tracking: Option<TrackingConfig>,
}

/// `compare:` — which variant the comparison tables test the others against.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareConfig {
    /// Default: the first variant.
    pub reference: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Experiment {
    pub name: String,
    pub runs: Vec<Checked<RunSpec>>,
    /// The reference variant of the comparison tables (`compare.reference`).
    pub reference: Option<String>,
    /// `expect:` lines, checked at the end of `run` and by `results --check`.
    pub expect: Vec<String>,
    /// `allow_leaky: "<reason>"`: gate on leak-prone comparisons anyway (see [`check_leaks`]).
    pub allow_leaky: Option<String>,
    /// `launcher:` — how the runs are run (local, parallel, Slurm); the command line overrides.
    pub launcher: LauncherConfig,
    /// `tracking:` — where the runs are tracked besides their run directories (MLflow; see
    /// `track::mlflow`); `run --no-tracking` turns it off.
    pub tracking: Checked<TrackingConfig>,
    /// Variants that average others' predictions (`variants.<name>.ensemble`), with no runs of
    /// their own (`results::ensemble`).
    pub ensembles: Vec<(String, EnsembleConfig)>,
    /// Every variant name in the spec's order, ensembles included (empty for a single run).
    pub variant_order: Vec<String>,
    /// Variants whose setting is searched (`variants.<name>.search`, issue 31). Their runs are
    /// not in `runs` until `launch::search` has run the searches and added each refit.
    pub searches: Vec<super::search::SearchedVariant>,
}

impl Experiment {
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading spec {}", path.display()))?;
        Self::parse(&text, &path.display().to_string(), overrides)
    }

    /// Parses an experiment: its own sections, then one run per dataset × variant × seed (×
    /// fold), each checked into a [`Checked`] run spec, then its gates against those runs.
    pub fn parse(text: &str, origin: &str, overrides: &[String]) -> Result<Self> {
        let keys: ExperimentKeys = errors::deserialize_located(text, origin)?;
        let mut root: Value =
            serde_norway::from_str(text).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        for o in overrides {
            apply_override(&mut root, o).with_context(|| format!("--set {o}"))?;
        }
        let Value::Mapping(map) = &mut root else {
            bail!("{origin}: the spec must be a mapping")
        };
        // The file's keys were checked (with line numbers) above; `--set` may replace them (e.g.
        // `--set "expect=[]"`), so their values come from the overridden mapping.
        let _ = (keys.compare, keys.expect, keys.launcher, keys.tracking);
        let own = OwnSections::take(map, origin)?;
        let variants = map.remove("variants");
        let datasets = map.remove("datasets");
        let seeds = map.remove("seeds");
        let transfer = map.remove("transfer");
        if variants.is_none()
            && datasets.is_none()
            && seeds.is_none()
            && transfer.is_none()
            && own.reference.is_none()
            && own.expect.is_empty()
            && !text_has_key(text, "launcher")
            && !text_has_key(text, "tracking")
            && !overrides.iter().any(|o| is_own_section(o))
        {
            let run = RunSpec::parse(text, origin, overrides)?;
            return Ok(Self {
                name: run.name.clone(),
                runs: run.expand_folds()?,
                reference: None,
                expect: vec![],
                allow_leaky: own.allow_leaky,
                launcher: own.launcher,
                tracking: own.tracking,
                ensembles: vec![],
                variant_order: vec![],
                searches: vec![],
            });
        }
        let variants = variant_list(variants, origin)?;
        let variant_order: Vec<String> = variants.iter().map(|(v, _)| v.clone()).collect();
        let (mut variants, ensembles) = split_ensembles(variants, origin)?;
        let mut searched = Vec::new();
        for (name, patch) in &mut variants {
            if let Some((config, search)) = super::search::take_search(name, patch, origin)? {
                searched.push((name.clone(), config, search));
            }
        }
        if transfer.is_some() && !ensembles.is_empty() {
            bail!("{origin}: variants.{}: ensembles of transfer runs are not supported (their rows are per target city); average the runs with `opencarbon predict --run A --run B` instead", ensembles[0].0);
        }
        let datasets = dataset_list(datasets, map, &variants, origin)?;
        // With `transfer`, each source (one dataset or several) is a training city and the
        // other datasets its targets; without it, each dataset is trained and tested alone.
        let cities: Vec<RunCity> = match transfer {
            Some(t) => transfer_cities(t, &datasets, origin)?,
            None => datasets.into_iter().map(|(n, d)| (n, d, None)).collect(),
        };
        let seeds = seed_list(seeds, origin)?;
        let runs = expand_runs(&root, &cities, &variants, &seeds, origin)?;
        if let Some(r) = &own.reference {
            if !variant_order.contains(r) {
                bail!(
                    "{origin}: compare.reference: `{r}` is not a variant (variants: {})",
                    variant_order.join(", ")
                );
            }
        }
        let widest = searched
            .iter()
            .map(|(_, _, s)| super::search::widest_window(s))
            .max()
            .unwrap_or(0);
        let all_runs = check_runs(runs, widest)?;
        let (templates, runs): (Vec<_>, Vec<_>) = all_runs
            .iter()
            .cloned()
            .partition(|r| searched.iter().any(|(n, _, _)| *n == r.variant));
        let mut searches = Vec::new();
        for (name, config, search) in searched {
            let templates: Vec<Checked<RunSpec>> = templates
                .iter()
                .filter(|r| r.variant == name)
                .cloned()
                .collect();
            super::search::check(&name, &search, &templates[0], origin)?;
            searches.push(super::search::SearchedVariant {
                name,
                config,
                search,
                templates,
            });
        }
        if runs.is_empty() {
            bail!("{origin}: every variant is searched: add the variant the tuned one is compared with (its defaults, a baseline)");
        }
        check_shared_splits(&ensembles, &runs, origin)?;
        let names = variant_order.clone();
        let gates = super::expect::parse_all(&own.expect, &names, origin, text)?;
        let reference_name = own
            .reference
            .clone()
            .or_else(|| names.first().cloned())
            .unwrap_or_default();
        for (line, gate) in own.expect.iter().zip(&gates) {
            check_gate(
                line,
                gate,
                &reference_name,
                &all_runs,
                &ensembles,
                own.allow_leaky.is_some(),
                origin,
            )?;
        }
        Ok(Self {
            name: runs[0].name.clone(),
            runs,
            reference: own.reference,
            expect: own.expect,
            allow_leaky: own.allow_leaky,
            launcher: own.launcher,
            tracking: own.tracking,
            ensembles,
            variant_order,
            searches,
        })
    }
}

/// Takes the ensemble variants (a patch that is only `ensemble: {members: [...]}`) out of
/// `variants`, each checked against the variants that have runs.
#[allow(clippy::type_complexity)]
fn split_ensembles(
    variants: Vec<(String, Value)>,
    origin: &str,
) -> Result<(Vec<(String, Value)>, Vec<(String, EnsembleConfig)>)> {
    let (ensembles, runs): (Vec<_>, Vec<_>) = variants
        .into_iter()
        .partition(|(_, patch)| patch.get("ensemble").is_some());
    let with_runs: Vec<String> = runs.iter().map(|(v, _)| v.clone()).collect();
    let mut out = Vec::new();
    for (name, patch) in ensembles {
        let map = patch.as_mapping().expect("variant patches are mappings");
        if map.len() != 1 {
            bail!(
                "{origin}: variants.{name}: an ensemble averages other variants' runs and has no settings of its own; give only `ensemble: {{members: [a, b]}}`"
            );
        }
        let config: EnsembleConfig = errors::deserialize_section(
            patch.get("ensemble").cloned().unwrap_or_default(),
            origin,
            &format!("variants.{name}.ensemble"),
        )?;
        config
            .check(&name, &with_runs)
            .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        out.push((name, config));
    }
    if runs.is_empty() {
        bail!("{origin}: every variant is an ensemble: name the variants they average");
    }
    Ok((runs, out))
}

/// An ensemble's members must predict the same test tiles: the same split on every dataset and
/// seed.
fn check_shared_splits(
    ensembles: &[(String, EnsembleConfig)],
    runs: &[Checked<RunSpec>],
    origin: &str,
) -> Result<()> {
    for (name, config) in ensembles {
        let first = &config.members[0];
        for run in runs.iter().filter(|r| config.members.contains(&r.variant)) {
            let twin = runs.iter().find(|r| {
                r.variant == *first
                    && r.dataset_label() == run.dataset_label()
                    && r.seed == run.seed
                    && r.split.fold() == run.split.fold()
            });
            if twin.is_some_and(|t| t.split != run.split) {
                bail!(
                    "{origin}: variants.{name}: members `{first}` and `{}` split dataset `{}` differently; an ensemble averages predictions of the same test tiles, so its members must share the split",
                    run.variant,
                    run.dataset_label()
                );
            }
        }
    }
    Ok(())
}

/// The experiment's own sections (not a run's), taken out of the spec's mapping.
struct OwnSections {
    launcher: LauncherConfig,
    tracking: Checked<TrackingConfig>,
    reference: Option<String>,
    expect: Vec<String>,
    allow_leaky: Option<String>,
}

impl OwnSections {
    fn take(map: &mut Mapping, origin: &str) -> Result<Self> {
        let mut take = |key: &str| map.remove(key).filter(|v| !v.is_null());
        let launcher: LauncherConfig = match take("launcher") {
            Some(v) => errors::deserialize_section(v, origin, "launcher")?,
            None => Default::default(),
        };
        let tracking: TrackingConfig = match take("tracking") {
            Some(v) => errors::deserialize_section(v, origin, "tracking")?,
            None => Default::default(),
        };
        let tracking = tracking
            .checked()
            .with_context(|| format!("{origin}: invalid spec"))?;
        let reference = match take("compare") {
            Some(v) => {
                errors::deserialize_section::<CompareConfig>(v, origin, "compare")?.reference
            }
            None => None,
        };
        let expect: Vec<String> = match take("expect") {
            Some(v) => {
                serde_norway::from_value(v).map_err(|e| anyhow::anyhow!("{origin}: expect: {e}"))?
            }
            None => vec![],
        };
        let allow_leaky: Option<String> = match take("allow_leaky") {
            Some(Value::String(reason)) if !reason.trim().is_empty() => Some(reason),
            Some(_) => bail!("{origin}: allow_leaky: give the reason as a non-empty string, e.g. allow_leaky: \"measures the leak itself\""),
            None => None,
        };
        Ok(Self {
            launcher,
            tracking,
            reference,
            expect,
            allow_leaky,
        })
    }
}

/// `variants:` as (name, patch) in the file's order; one empty `default` patch without it.
fn variant_list(variants: Option<Value>, origin: &str) -> Result<Vec<(String, Value)>> {
    match variants {
        Some(Value::Mapping(m)) => variant_patches(m, origin),
        Some(_) => bail!("{origin}: `variants` must map names to patches"),
        None => Ok(vec![("default".into(), Value::Mapping(Mapping::new()))]),
    }
}

/// `datasets:` as (name, dataset); one unnamed entry (the base `dataset:`) without it.
fn dataset_list(
    datasets: Option<Value>,
    map: &Mapping,
    variants: &[(String, Value)],
    origin: &str,
) -> Result<Vec<(Option<String>, Option<Value>)>> {
    let datasets: Vec<(Option<String>, Option<Value>)> = match datasets {
        Some(Value::Mapping(m)) => {
            if map.contains_key("dataset") {
                bail!("{origin}: give either `dataset` or `datasets`, not both");
            }
            named_datasets(m, origin)?
                .into_iter()
                .map(|(n, v)| (Some(n), Some(v)))
                .collect()
        }
        Some(_) => bail!("{origin}: `datasets` must map names to datasets"),
        None => vec![(None, None)],
    };
    if datasets.iter().all(|(name, _)| name.is_none())
        && !map.contains_key("dataset")
        && variants.iter().any(|(_, p)| p.get("dataset").is_none())
    {
        bail!("{origin}: no city: give one `dataset:`, or name cities under `datasets:`");
    }
    Ok(datasets)
}

/// `seeds:`, or one entry (the base `seed`) without it.
fn seed_list(seeds: Option<Value>, origin: &str) -> Result<Vec<Option<u64>>> {
    let Some(v) = seeds else {
        return Ok(vec![None]);
    };
    let s: Vec<u64> =
        serde_norway::from_value(v).map_err(|e| anyhow::anyhow!("{origin}: key `seeds`: {e}"))?;
    if s.is_empty() {
        bail!("{origin}: `seeds` is empty: list at least one seed, e.g. `seeds: [1]`, or leave the key out for the one `seed`");
    }
    Ok(s.into_iter().map(Some).collect())
}

/// Every run (city × variant × seed) as its base spec with the variant's patch, not yet checked
/// nor expanded into folds, each with where it comes from (for errors).
fn expand_runs(
    root: &Value,
    cities: &[RunCity],
    variants: &[(String, Value)],
    seeds: &[Option<u64>],
    origin: &str,
) -> Result<Vec<(String, RunSpec)>> {
    let mut runs = Vec::new();
    for (dataset_name, dataset, transfer) in cities {
        for (variant, patch) in variants {
            for seed in seeds {
                let mut v = root.clone();
                merge(&mut v, patch.clone());
                let Some(m) = v.as_mapping_mut() else {
                    bail!("{origin}: variant `{variant}` must be a mapping of spec keys (a patch over the base spec)");
                };
                if let Some(t) = transfer {
                    // The variant may patch transfer settings (not its cities).
                    let mut t = t.clone();
                    if let Some(p) = m.remove("transfer") {
                        for key in ["sources", "targets"] {
                            if p.get(key).is_some() {
                                bail!("{origin}: variant `{variant}` sets transfer.{key}; cities are chosen once, at the top level");
                            }
                        }
                        merge(&mut t, p);
                    }
                    m.insert("transfer".into(), t);
                }
                if let Some(d) = dataset {
                    m.insert("dataset".into(), d.clone());
                    m.insert(
                        "dataset_name".into(),
                        Value::String(dataset_name.clone().unwrap_or_default()),
                    );
                }
                if let Some(s) = seed {
                    m.insert("seed".into(), Value::Number((*s).into()));
                }
                m.insert("variant".into(), Value::String(variant.clone()));
                let at = format!(
                    "{origin} (variant `{variant}`{})",
                    dataset_name
                        .as_ref()
                        .map(|d| format!(", dataset `{d}`"))
                        .unwrap_or_default()
                );
                let run: RunSpec = errors::deserialize_value(v, &at)?;
                runs.push((at, run));
            }
        }
    }
    Ok(runs)
}

/// Gives every run one buffer (the widest window any variant reads, so that all variants train
/// on the same tiles and their pairs compare like with like), checks each run, then expands it
/// into one run per cross-validation fold.
fn check_runs(mut runs: Vec<(String, RunSpec)>, widest: usize) -> Result<Vec<Checked<RunSpec>>> {
    let radius = runs
        .iter()
        .map(|(_, r)| r.window_radius())
        .max()
        .unwrap_or(0)
        .max(widest);
    for (_, run) in &mut runs {
        run.split.default_buffer(radius);
    }
    let mut checked = Vec::new();
    for (at, run) in runs {
        let run = run
            .checked()
            .with_context(|| format!("{at}: invalid spec"))?;
        checked.extend(run.expand_folds()?);
    }
    Ok(checked)
}

/// A gate must mean what the tables say. A paired gate is judged on the comparison table's row
/// (Holm-adjusted over the variants tested against the reference), so it names the reference on
/// one side. A gate on a leak-prone variant (a window reaching across the split, see
/// [`RunSpec::leak`]) is refused unless the spec gives `allow_leaky: "<reason>"`.
fn check_gate(
    line: &str,
    gate: &super::expect::Expectation,
    reference: &str,
    runs: &[Checked<RunSpec>],
    ensembles: &[(String, EnsembleConfig)],
    allow_leaky: bool,
    origin: &str,
) -> Result<()> {
    use super::expect::Expectation;
    let variants: Vec<&str> = match gate {
        Expectation::Paired { a, b, .. } => {
            if a != reference && b != reference {
                bail!(
                    "{origin}: expect `{line}`: a paired gate is judged on comparison.md, which tests each variant against the reference `{reference}`: put `{reference}` on one side (or set compare.reference)"
                );
            }
            vec![a, b]
        }
        Expectation::Threshold { variant, .. } => vec![variant],
    };
    if allow_leaky {
        return Ok(());
    }
    // An ensemble is as leak-prone as its members.
    let mut variants: Vec<&str> = variants;
    for (name, config) in ensembles {
        if variants.contains(&name.as_str()) {
            variants.extend(config.members.iter().map(String::as_str));
        }
    }
    let mut reasons: Vec<String> = runs
        .iter()
        .filter(|r| variants.contains(&r.variant.as_str()))
        .filter_map(|r| r.leak())
        .collect();
    reasons.sort();
    reasons.dedup();
    if reasons.is_empty() {
        return Ok(());
    }
    bail!(
        "{origin}: expect `{line}` gates on a leak-prone comparison: {}. A window that reaches training tiles next to a test tile scores their targets, not the model (docs/conclusions.md measured +0.59 R² from this under random folds). Use `split: {{kind: spatial_cv, folds: 5, block: 8}}` (its buffer defaults to the widest window) or a holdout, or state why this gate is wanted anyway with `allow_leaky: \"<reason>\"`",
        reasons.join("; ")
    )
}

/// Whether a `--set` override sets one of the experiment's own sections (`launcher`,
/// `tracking`), which a run spec does not have.
fn is_own_section(overrides: &str) -> bool {
    let key = overrides.split('=').next().unwrap_or("");
    let top = key.split('.').next().unwrap_or("").trim();
    matches!(top, "launcher" | "tracking")
}

/// Whether the spec's top level has `key` (a spec with only a `launcher:` besides one run's keys
/// is still parsed as an experiment, so that its run spec does not see the launcher).
fn text_has_key(text: &str, key: &str) -> bool {
    serde_norway::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.as_mapping().map(|m| m.contains_key(key)))
        .unwrap_or(false)
}

/// A city a run trains on: its name, its dataset, and its resolved `transfer` section, if any.
type RunCity = (Option<String>, Option<Value>, Option<Value>);

/// Resolves `transfer: {sources, targets, …}` against the named datasets: one entry per source
/// (a dataset, or a union for a list of names) with its targets (named, or every other dataset).
fn transfer_cities(
    transfer: Value,
    datasets: &[(Option<String>, Option<Value>)],
    origin: &str,
) -> Result<Vec<RunCity>> {
    let Value::Mapping(mut t) = transfer else {
        bail!("{origin}: `transfer` must be a mapping with `sources` (and optionally `targets`)");
    };
    if datasets.first().is_none_or(|(name, _)| name.is_none()) {
        bail!("{origin}: `transfer` needs the cities under `datasets:`, by name");
    }
    let find = |name: &str, key: &str| -> Result<Value> {
        datasets
            .iter()
            .find(|(n, _)| n.as_deref() == Some(name))
            .and_then(|(_, d)| d.clone())
            .ok_or_else(|| {
                let known: Vec<&str> = datasets.iter().filter_map(|(n, _)| n.as_deref()).collect();
                anyhow::anyhow!(
                    "{origin}: transfer.{key}: `{name}` is not a dataset (datasets: {})",
                    known.join(", ")
                )
            })
    };
    let names = |v: &Value, key: &str| -> Result<Vec<String>> {
        match v {
            Value::String(s) => Ok(vec![s.clone()]),
            Value::Sequence(items) => items
                .iter()
                .map(|i| {
                    i.as_str().map(String::from).ok_or_else(|| {
                        anyhow::anyhow!("{origin}: transfer.{key}: entries must be dataset names")
                    })
                })
                .collect(),
            _ => bail!("{origin}: transfer.{key}: expected a dataset name or a list of names"),
        }
    };
    let sources = match t.remove("sources") {
        Some(Value::Sequence(items)) if !items.is_empty() => items
            .iter()
            .map(|s| names(s, "sources"))
            .collect::<Result<Vec<_>>>()?,
        _ => bail!("{origin}: transfer.sources: list the training cities, e.g. [beijing] or [[beijing, shanghai]] to train on both"),
    };
    if sources.iter().any(Vec::is_empty) {
        bail!("{origin}: transfer.sources: an entry names no city, e.g. [[]]; give a dataset name or a list of names");
    }
    let targets: Option<Vec<String>> = match t.remove("targets") {
        None => None,
        Some(Value::String(s)) if s == "all" => None,
        Some(v) => Some(names(&v, "targets")?),
    };
    let mut out = Vec::new();
    for source in sources {
        let dataset = if source.len() == 1 {
            find(&source[0], "sources")?
        } else {
            let mut parts = Vec::new();
            for name in &source {
                let mut part = Mapping::new();
                part.insert("name".into(), Value::String(name.clone()));
                part.insert("dataset".into(), find(name, "sources")?);
                parts.push(Value::Mapping(part));
            }
            let mut union = Mapping::new();
            union.insert("kind".into(), "union".into());
            union.insert("parts".into(), Value::Sequence(parts));
            Value::Mapping(union)
        };
        let target_names: Vec<String> = match &targets {
            Some(list) => list
                .iter()
                .filter(|n| !source.contains(n))
                .cloned()
                .collect(),
            None => datasets
                .iter()
                .filter_map(|(n, _)| n.clone())
                .filter(|n| !source.contains(n))
                .collect(),
        };
        if target_names.is_empty() {
            bail!(
                "{origin}: transfer: source `{}` has no target city (transfer.targets, or else every other city under `datasets`)",
                source.join("+")
            );
        }
        let mut resolved = Vec::new();
        for name in target_names {
            let mut target = Mapping::new();
            target.insert("name".into(), Value::String(name.clone()));
            target.insert("dataset".into(), find(&name, "targets")?);
            resolved.push(Value::Mapping(target));
        }
        let mut config = t.clone();
        config.insert("targets".into(), Value::Sequence(resolved));
        out.push((
            Some(source.join("+")),
            Some(dataset),
            Some(Value::Mapping(config)),
        ));
    }
    Ok(out)
}

/// `variants:` by name; refused when empty or when a patch is not a mapping.
fn variant_patches(map: Mapping, origin: &str) -> Result<Vec<(String, Value)>> {
    let variants = non_empty(
        named(map, origin, "variants")?,
        origin,
        "variants",
        "name at least one variant, e.g. `variants: {full: {}}` (a variant is a patch over the base spec; `{}` is the base itself)",
    )?;
    for (name, patch) in &variants {
        if !patch.is_mapping() {
            bail!(
                "{origin}: `variants.{name}` must be a mapping of spec keys (a patch over the base spec, e.g. `{{model: {{neighbourhood: 0}}}}`; `{{}}` is the base itself)"
            );
        }
    }
    Ok(variants)
}

/// `datasets:` by name; refused when empty, each city checked here so that an error names
/// its key (`datasets.shanghai.labels`), not the run key it is copied to.
fn named_datasets(map: Mapping, origin: &str) -> Result<Vec<(String, Value)>> {
    let datasets = non_empty(
        named(map, origin, "datasets")?,
        origin,
        "datasets",
        "name at least one city, e.g. `datasets: {beijing: {kind: dir, path: datasets/beijing}}`, or give one `dataset:`",
    )?;
    for (name, dataset) in &datasets {
        errors::deserialize_section::<super::DatasetSpec>(
            dataset.clone(),
            origin,
            &format!("datasets.{name}"),
        )?;
    }
    Ok(datasets)
}

/// `items` of `key`, refused when empty (an experiment without a variant or city has no run).
fn non_empty<T>(items: Vec<T>, origin: &str, key: &str, hint: &str) -> Result<Vec<T>> {
    if items.is_empty() {
        bail!("{origin}: `{key}` is empty: {hint}");
    }
    Ok(items)
}

fn named(map: Mapping, origin: &str, what: &str) -> Result<Vec<(String, Value)>> {
    map.into_iter()
        .map(|(k, v)| match k {
            Value::String(s) => Ok((
                s,
                if v.is_null() {
                    Value::Mapping(Mapping::new())
                } else {
                    v
                },
            )),
            other => bail!("{origin}: `{what}` keys must be names, found {other:?}"),
        })
        .collect()
}

/// Deep-merges `patch` into `base`: mappings key by key, anything else replaced.
pub fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Mapping(b), Value::Mapping(p)) => {
            for (k, v) in p {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}
