//! What MLflow should hold for a run, read from its run directory alone (so that anything that
//! could not be sent can be sent later): the resolved spec flattened to params, `meta.json` as
//! tags and status, `metrics.csv` as metric histories, and the record files as artifacts.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde_norway::Value;

use super::client::{self, Status};
use crate::track::RunMeta;

/// The tag that ties an MLflow run to its opencarbon run: one MLflow run per run id.
pub const RUN_ID_TAG: &str = "opencarbon.run_id";

/// The run directory's files uploaded as artifacts, when present.
pub const ARTIFACTS: &[&str] = &[
    "spec.resolved.yaml",
    "meta.json",
    "test_metrics.json",
    "metrics.csv",
    "predictions.csv",
    "split.csv",
    "split_buffer.json",
    "normalization.json",
    "transfer.json",
    "transfer_predictions.csv",
];

/// Who a run is: its id, the MLflow run's name (the run's label: dataset / variant / seed).
#[derive(Debug, Clone)]
pub struct RunIdentity {
    pub run_id: String,
    pub label: String,
}

/// What the MLflow run of a run directory should hold.
#[derive(Debug, Clone)]
pub struct Desired {
    pub identity: RunIdentity,
    pub params: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    /// Metric key → (step, value) in the order `metrics.csv` logged them.
    pub metrics: BTreeMap<String, Vec<(i64, f64)>>,
    pub status: Status,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
}

/// Reads `dir`. `live`: this process is running the run now (so `running` in meta.json means
/// RUNNING, not a run killed without a word, which is KILLED; and its metrics are not read).
pub fn read(dir: &Path, identity: &RunIdentity, live: bool) -> Result<Desired> {
    let spec_text = std::fs::read_to_string(dir.join("spec.resolved.yaml"))
        .with_context(|| format!("reading {}/spec.resolved.yaml", dir.display()))?;
    let spec: Value = serde_norway::from_str(&spec_text)
        .with_context(|| format!("{}/spec.resolved.yaml", dir.display()))?;
    let meta_text = std::fs::read_to_string(dir.join("meta.json"))
        .with_context(|| format!("reading {}/meta.json", dir.display()))?;
    let meta: RunMeta =
        serde_json::from_str(&meta_text).with_context(|| format!("{}/meta.json", dir.display()))?;
    let done = dir.join("test_metrics.json").exists();
    let status = match meta.status.as_str() {
        "done" if done => Status::Finished,
        "failed" => Status::Failed,
        "running" if live => Status::Running,
        // Preempted (resumes on its next start), or killed without a word.
        _ => Status::Killed,
    };
    // A running run's metrics.csv is being written (or is a killed attempt's, about to be
    // replaced): its points go through the live sink, and the whole file once the run ends.
    let metrics = match std::fs::read_to_string(dir.join("metrics.csv")) {
        _ if live => BTreeMap::new(),
        Ok(text) => parse_metrics(&text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(e).context(format!("reading {}/metrics.csv", dir.display())),
    };
    let start_ms = millis(&meta.started).unwrap_or_else(now_ms);
    let end_ms = match status {
        Status::Running => None,
        _ => meta.finished.as_deref().and_then(millis).or(Some(now_ms())),
    };
    Ok(Desired {
        identity: identity.clone(),
        params: flatten_spec(&spec),
        tags: tags(&meta, &spec, identity),
        metrics,
        status,
        start_ms,
        end_ms,
    })
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn millis(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// `metrics.csv` (epoch, split, metric, value) as MLflow metrics: key `<split>/<metric>`, step =
/// epoch. Values were written as Rust's shortest round-trip text, so they parse back to the very
/// doubles the run computed.
pub fn parse_metrics(text: &str) -> Result<BTreeMap<String, Vec<(i64, f64)>>> {
    let mut out: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || anyhow::anyhow!("metrics.csv line {}: `{line}`", i + 1);
        let (epoch, rest) = line.split_once(',').ok_or_else(bad)?;
        let (rest, value) = rest.rsplit_once(',').ok_or_else(bad)?;
        let (split, metric) = rest.rsplit_once(',').ok_or_else(bad)?;
        let step: i64 = epoch.parse().map_err(|_| bad())?;
        let value: f64 = value.parse().map_err(|_| bad())?;
        out.entry(metric_key(split, metric))
            .or_default()
            .push((step, value));
    }
    Ok(out)
}

/// The MLflow key of a metric: `<split>/<metric>` (`train/l1`, `valid/r2`, `test/r2`,
/// `finetune/<city>/<fraction>/l1`), with characters MLflow refuses replaced by `_`.
pub fn metric_key(split: &str, metric: &str) -> String {
    key(&format!("{split}/{metric}"))
}

/// A name MLflow accepts: letters, digits, `_ - . / : space`, no `..` path step, at most 250
/// characters.
pub fn key(name: &str) -> String {
    let mut k: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':' | ' ') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // MLflow refuses a name that a path normalisation would change (`a//b`, `a/./b`, `a/`).
    while k.contains("..") {
        k = k.replace("..", "_.");
    }
    while k.contains("//") {
        k = k.replace("//", "/");
    }
    k = k.replace("/./", "/_/");
    let k = k.trim_end_matches('/').to_string();
    k.chars().take(client::MAX_KEY).collect()
}

/// The resolved spec as params with dotted keys (`train.lr`, `model.modalities`): scalars as
/// YAML writes them, a list of scalars as `[a, b]`, a list of mappings by index (`x.0.key`).
/// Values longer than MLflow's limit are cut, saying so (spec.resolved.yaml, an artifact, is
/// whole).
pub fn flatten_spec(spec: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    flatten("", spec, &mut out);
    out
}

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match value {
        Value::Mapping(m) => {
            if m.is_empty() && !prefix.is_empty() {
                out.insert(key(prefix), "{}".into());
            }
            for (k, v) in m {
                flatten(&join(&scalar(k)), v, out);
            }
        }
        Value::Sequence(items) if items.iter().all(is_scalar) => {
            let parts: Vec<String> = items.iter().map(scalar).collect();
            insert_param(out, prefix, format!("[{}]", parts.join(", ")));
        }
        Value::Sequence(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&join(&i.to_string()), v, out);
            }
        }
        Value::Tagged(t) => {
            // `!Variant value`: the tag as the value of `<key>.kind`-like key, then the value.
            insert_param(out, prefix, t.tag.to_string());
            flatten(&join("value"), &t.value, out);
        }
        other => insert_param(out, prefix, scalar(other)),
    }
}

fn insert_param(out: &mut BTreeMap<String, String>, k: &str, v: String) {
    out.insert(key(k), truncate(&v, client::MAX_PARAM_VALUE));
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Mapping(_) | Value::Sequence(_) | Value::Tagged(_))
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => serde_norway::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// At most `max` characters; a cut value ends in `…(cut)`.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mark = "…(cut)";
    let keep = max - mark.chars().count();
    let mut t: String = s.chars().take(keep).collect();
    t.push_str(mark);
    t
}

/// Provenance and identity as tags: the run id (how the MLflow run is found again), the spec's
/// name, variant, dataset and seed, and what `meta.json` says produced the numbers.
fn tags(meta: &RunMeta, spec: &Value, identity: &RunIdentity) -> BTreeMap<String, String> {
    let mut t = BTreeMap::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            t.insert(k.to_string(), truncate(&v, client::MAX_TAG_VALUE));
        }
    };
    let field = |k: &str| spec.get(k).filter(|v| !v.is_null()).map(scalar);
    put(RUN_ID_TAG, Some(identity.run_id.clone()));
    put("opencarbon.experiment", field("name"));
    put("opencarbon.variant", field("variant"));
    put("opencarbon.dataset", field("dataset_name"));
    put("opencarbon.seed", field("seed"));
    put("opencarbon.status", Some(meta.status.clone()));
    put("opencarbon.failure", meta.failure.clone());
    put("opencarbon.version", Some(meta.opencarbon_version.clone()));
    put("opencarbon.burn_version", Some(meta.burn_version.clone()));
    put("opencarbon.build_commit", meta.build_commit.clone());
    put(
        "opencarbon.build_dirty",
        meta.build_dirty.map(|b| b.to_string()),
    );
    put("opencarbon.git_commit", meta.git_commit.clone());
    put(
        "opencarbon.git_dirty",
        meta.git_dirty.map(|b| b.to_string()),
    );
    put(
        "opencarbon.commit_mismatch",
        Some(meta.commit_mismatch.to_string()),
    );
    put("opencarbon.backend", Some(meta.backend.clone()));
    put("opencarbon.device", Some(meta.device.clone()));
    put("opencarbon.precision", Some(meta.precision.to_string()));
    put("opencarbon.libtorch_version", meta.libtorch_version.clone());
    put("opencarbon.cpu", meta.cpu.clone());
    put("opencarbon.gpu", meta.gpu.clone());
    put("opencarbon.threads", meta.threads.map(|n| n.to_string()));
    put(
        "opencarbon.libtorch_threads",
        meta.libtorch_threads.map(|n| n.to_string()),
    );
    put("opencarbon.resumed_from", meta.resumed_from.clone());
    put(
        "opencarbon.epochs_run",
        meta.epochs_run.map(|n| n.to_string()),
    );
    put(
        "opencarbon.best_epoch",
        meta.best_epoch.map(|n| n.to_string()),
    );
    for (name, value) in &meta.numerics {
        put(&format!("opencarbon.env.{name}"), Some(value.clone()));
    }
    // What MLflow's UI shows as the run's source and commit.
    put("mlflow.source.name", Some("opencarbon run".into()));
    put("mlflow.source.type", Some("LOCAL".into()));
    put(
        "mlflow.source.git.commit",
        meta.build_commit.clone().or(meta.git_commit.clone()),
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_flattens_to_dotted_params() {
        let spec: Value = serde_norway::from_str(
            "name: x\ntrain: {lr: 0.001, contrastive: {pair: [image, poi]}, batch_order: null}\n\
             items: [{a: 1}, {a: 2}]\nempty: {}\n",
        )
        .unwrap();
        let p = flatten_spec(&spec);
        assert_eq!(p["name"], "x");
        assert_eq!(p["train.lr"], "0.001");
        assert_eq!(p["train.contrastive.pair"], "[image, poi]");
        assert_eq!(p["train.batch_order"], "null");
        assert_eq!(p["items.1.a"], "2");
        assert_eq!(p["empty"], "{}");
    }

    #[test]
    fn metrics_csv_reads_back_the_doubles_it_was_written_from() {
        let values = [0.1, 1.0 / 3.0, -2.5e-300, f64::NAN, f64::INFINITY];
        let mut text = String::from("epoch,split,metric,value\n");
        for (i, v) in values.iter().enumerate() {
            text.push_str(&format!("{i},finetune/a,b/0.1,l1,{v}\n"));
        }
        text.push_str("3,valid,r2,0.5\n");
        let m = parse_metrics(&text).unwrap();
        let points = &m["finetune/a_b/0.1/l1"];
        for ((i, v), (step, back)) in values.iter().enumerate().zip(points) {
            assert_eq!(*step, i as i64);
            assert!(back.to_bits() == v.to_bits() || (v.is_nan() && back.is_nan()));
        }
        assert_eq!(m["valid/r2"], vec![(3, 0.5)]);
    }

    #[test]
    fn keys_are_what_mlflow_accepts() {
        assert_eq!(
            key("finetune/São Paulo/0.1/l1"),
            "finetune/São Paulo/0.1/l1"
        );
        assert_eq!(key("a(b)..c"), "a_b__.c");
        assert_eq!(key(&"k".repeat(300)).len(), 250);
        assert_eq!(truncate(&"v".repeat(7000), 6000).chars().count(), 6000);
    }
}
