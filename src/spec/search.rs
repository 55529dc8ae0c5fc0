//! Variants with a `search:` (issue 31): the search section checked against the spec's keys,
//! and the runs a search makes from its variant's default run (its *template*, one per dataset ×
//! seed × outer fold): a trial on an inner fold, and the chosen setting refitted on the outer
//! fold. Pure: `launch::search` runs them and reads their records.

use anyhow::{bail, Context, Result};
use serde_norway::Value;

use super::RunSpec;
use crate::checked::{Checked, Params as _};
use crate::tune::{Domain, Params, Search, SearchConfig, Tuning, Value as Param};

/// A variant whose setting is searched, with the runs its searches start from.
#[derive(Debug, Clone)]
pub struct SearchedVariant {
    pub name: String,
    pub config: SearchConfig,
    pub search: Search,
    /// The variant's runs at its default setting, one per dataset × seed × outer fold; each
    /// search starts from one, and its refit takes that run's place in the tables.
    pub templates: Vec<Checked<RunSpec>>,
}

/// Takes `search:` out of a variant's patch, checked (errors name `variants.<name>.search…`).
pub fn take_search(
    name: &str,
    patch: &mut Value,
    origin: &str,
) -> Result<Option<(SearchConfig, Search)>> {
    let Some(map) = patch.as_mapping_mut() else {
        return Ok(None);
    };
    let Some(raw) = map.remove("search") else {
        return Ok(None);
    };
    let config: SearchConfig =
        crate::yaml::deserialize_section(raw, origin, &format!("variants.{name}.search"))?;
    let search = config.resolve().map_err(|e| {
        let lines: Vec<String> = e
            .to_string()
            .lines()
            .map(|l| format!("{origin}: variants.{name}.{l}"))
            .collect();
        anyhow::anyhow!("{}", lines.join("\n"))
    })?;
    Ok(Some((config, search)))
}

/// The widest neighbourhood window a search may choose (`model.neighbourhood` in its space), so
/// that the experiment's buffer covers every trial.
pub fn widest_window(search: &Search) -> usize {
    let Some(domain) = search.space.get("model.neighbourhood") else {
        return 0;
    };
    let values: Vec<f64> = match domain {
        Domain::Choice(v) => v
            .iter()
            .filter_map(|p| match p {
                Param::Int(i) => Some(*i as f64),
                Param::Float(x) => Some(*x),
                _ => None,
            })
            .collect(),
        Domain::Numeric(r) => vec![r.hi()],
    };
    values.into_iter().fold(0.0, f64::max).max(0.0) as usize
}

/// Checks a search against its variant's template: the split must be spatial cross-validation
/// (the inner folds are spatial), no transfer, and every key of the space a key of the spec
/// that takes the space's values (each key tried at its extremes).
pub fn check(name: &str, search: &Search, template: &RunSpec, origin: &str) -> Result<()> {
    let at = format!("{origin}: variants.{name}.search");
    if template.split.kind_name() != "spatial_cv" {
        bail!(
            "{at}: a nested search needs `split: {{kind: spatial_cv, ...}}` (its inner folds are spatial folds of each outer fold's training tiles); this spec's split is `{}`",
            template.split.kind_name()
        );
    }
    if template.transfer.is_some() {
        bail!("{at}: searches inside transfer experiments are not supported; search in a spatial cross-validation experiment and transfer its chosen setting");
    }
    let resolved = serde_norway::to_value(template).context("serialising the template")?;
    let mut known = Vec::new();
    dotted_keys(&resolved, "", &mut known);
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    let mut problems = Vec::new();
    for (key, domain) in search.space.params() {
        if matches!(
            key.split('.').next(),
            Some(
                "name"
                    | "variant"
                    | "dataset"
                    | "dataset_name"
                    | "seed"
                    | "split"
                    | "tuning"
                    | "transfer"
            )
        ) {
            problems.push(format!(
                "{at}.space.{key}: not searchable (searches tune model, train and baseline settings; the split, data and seed are the experiment's)"
            ));
            continue;
        }
        for value in extremes(domain) {
            let mut params = Params::new();
            params.insert(key.to_string(), value.clone());
            if let Err(e) = with_params(template, &params) {
                let hint = if known.contains(&key) {
                    String::new()
                } else {
                    crate::tune::space::nearest(key, &known)
                        .map(|n| format!(" (did you mean `{n}`?)"))
                        .unwrap_or_default()
                };
                problems.push(format!(
                    "{at}.space.{key}: `{value}` makes an invalid run{hint}: {e:#}"
                ));
                break;
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("{}", problems.join("\n"))
    }
}

/// The run of trial `trial` with `params` on inner fold `inner` of `folds`.
pub fn trial_run(
    template: &RunSpec,
    params: &Params,
    trial: usize,
    folds: usize,
    inner: usize,
) -> Result<Checked<RunSpec>> {
    let mut run = with_params(template, params)?.into_inner();
    run.split.default_valid_buffer();
    run.split = run
        .split
        .with_inner(folds, inner)
        .context("a trial's split must be one fold of spatial cross-validation")?;
    run.tuning = Some(Tuning::Trial {
        trial,
        params: params.clone(),
    });
    Ok(run.checked()?)
}

/// The refit: the template with the chosen setting, recorded with how it was chosen.
pub fn refit_run(template: &RunSpec, tuning: Tuning) -> Result<Checked<RunSpec>> {
    let mut run = with_params(template, tuning.params())?.into_inner();
    run.tuning = Some(tuning);
    Ok(run.checked()?)
}

/// `template` with every key of `params` set, re-read and checked as a spec.
fn with_params(template: &RunSpec, params: &Params) -> Result<Checked<RunSpec>> {
    let mut value = serde_norway::to_value(template).context("serialising the template")?;
    for (key, param) in params {
        let yaml = match param {
            Param::Bool(b) => Value::Bool(*b),
            Param::Int(i) => Value::Number((*i).into()),
            Param::Float(x) => Value::Number((*x).into()),
            Param::Str(s) => Value::String(s.clone()),
        };
        super::overrides::set_key(&mut value, key, yaml)?;
    }
    let run: RunSpec = crate::yaml::deserialize_value(value, "the searched setting")?;
    Ok(run.checked()?)
}

/// A domain's extreme values: every choice, or both ends of a range.
fn extremes(domain: &Domain) -> Vec<Param> {
    match domain {
        Domain::Choice(values) => values.clone(),
        Domain::Numeric(r) => vec![r.value(r.lo()), r.value(r.hi())],
    }
}

/// Every leaf key of a mapping, dotted.
fn dotted_keys(value: &Value, prefix: &str, out: &mut Vec<String>) {
    if let Value::Mapping(map) = value {
        for (k, v) in map {
            let Some(k) = k.as_str() else { continue };
            let key = if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                Value::Mapping(m) if !m.is_empty() => dotted_keys(v, &key, out),
                _ => out.push(key),
            }
        }
    }
}
