//! Whether a run directory holds a finished run that can be trusted. `test_metrics.json` marks a
//! run as done, but a marker is not proof: every artefact a finished run has must also be there and
//! parse, or the run is *broken* and is trained again (saying why) instead of being trusted.
//!
//! Two purposes ask differently: resuming a sweep needs a network run's weights (a run without
//! them is trained again), while the tables need only its records ([`check_records`]), so a run
//! whose checkpoints were removed to save space still counts for them.

use std::path::Path;

use super::TestMetrics;
use crate::spec::RunSpec;
use crate::track::RunMeta;

/// What a run directory holds.
#[derive(Debug)]
pub enum State {
    /// No `test_metrics.json`: never started, running, killed or failed (`meta.json`'s status,
    /// `unknown` without one).
    NotDone(String),
    Done(TestMetrics),
    /// `test_metrics.json` exists but the run cannot be trusted; why.
    Broken(String),
}

/// Checks the run directory `dir`; `expected` is the spec it should hold (else the one it says).
pub fn check(dir: &Path, expected: Option<&RunSpec>) -> State {
    check_with(dir, expected, true)
}

/// As [`check`], for tables and records: a network run's checkpoints are not required.
pub fn check_records(dir: &Path) -> State {
    check_with(dir, None, false)
}

fn check_with(dir: &Path, expected: Option<&RunSpec>, need_weights: bool) -> State {
    let metrics_path = dir.join("test_metrics.json");
    if !metrics_path.exists() {
        return State::NotDone(meta_status(dir));
    }
    match check_done(dir, expected, need_weights) {
        Ok(metrics) => State::Done(metrics),
        Err(why) => State::Broken(why),
    }
}

fn check_done(
    dir: &Path,
    expected: Option<&RunSpec>,
    need_weights: bool,
) -> Result<TestMetrics, String> {
    let metrics: TestMetrics = read_json(dir, "test_metrics.json")?;
    let values = [metrics.r2, metrics.rmse, metrics.mae, metrics.mape];
    if values.iter().any(|v| !v.is_finite()) || metrics.n == 0 {
        return Err(format!(
            "test_metrics.json holds no usable metrics ({values:?}, n {})",
            metrics.n
        ));
    }
    let meta: RunMeta = read_json(dir, "meta.json")?;
    if meta.status != "done" {
        return Err(format!("meta.json says `{}`, not done", meta.status));
    }
    let spec_path = dir.join("spec.resolved.yaml");
    let text =
        std::fs::read_to_string(&spec_path).map_err(|e| format!("spec.resolved.yaml: {e}"))?;
    let spec: RunSpec =
        serde_norway::from_str(&text).map_err(|e| format!("spec.resolved.yaml: {e}"))?;
    if let Some(expected) = expected {
        if &spec != expected {
            return Err("spec.resolved.yaml is not this run's spec".into());
        }
    }
    check_csv(
        dir,
        "metrics.csv",
        &["epoch", "split", "metric", "value"],
        &[0, 3],
    )?;
    let predictions = check_csv(
        dir,
        "predictions.csv",
        &["x", "y", "target", "prediction"],
        &[0, 1, 2, 3],
    )?;
    if predictions != metrics.n {
        return Err(format!(
            "predictions.csv has {predictions} rows, test_metrics.json counts {} tiles",
            metrics.n
        ));
    }
    if need_weights && spec.baseline.is_none() {
        check_safetensors(&dir.join("checkpoints").join("best.safetensors"))
            .map_err(|e| format!("checkpoints/best.safetensors: {e}"))?;
    }
    if spec.transfer.is_some() {
        let _: Vec<crate::transfer::TransferRow> = read_json(dir, "transfer.json")?;
        if !dir.join("transfer_predictions.csv").is_file() {
            return Err("transfer_predictions.csv is missing".into());
        }
    }
    Ok(metrics)
}

fn meta_status(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("meta.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["status"].as_str().map(String::from))
        .unwrap_or_else(|| "unknown".into())
}

fn read_json<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> Result<T, String> {
    let text = std::fs::read_to_string(dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{name} does not parse: {e}"))
}

/// Checks a CSV's header and that every row has its fields, the `numeric` ones numbers; returns
/// the row count.
fn check_csv(dir: &Path, name: &str, header: &[&str], numeric: &[usize]) -> Result<usize, String> {
    let text = std::fs::read_to_string(dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
    if !text.ends_with('\n') {
        return Err(format!("{name} is truncated (no final newline)"));
    }
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    if first.split(',').collect::<Vec<_>>() != header {
        return Err(format!(
            "{name}: header `{first}`, expected `{}`",
            header.join(",")
        ));
    }
    let mut rows = 0;
    for (i, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        let bad_number = numeric
            .iter()
            .any(|&c| fields.get(c).is_none_or(|f| f.parse::<f64>().is_err()));
        if fields.len() != header.len() || bad_number {
            return Err(format!(
                "{name} line {}: `{line}` is not a row of {}",
                i + 2,
                header.join(",")
            ));
        }
        rows += 1;
    }
    Ok(rows)
}

/// A safetensors file is whole: an 8-byte header length, a JSON header, and exactly the data its
/// tensors' offsets span. Reads only the header (checkpoints can be large).
pub fn check_safetensors(path: &Path) -> Result<(), String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|_| "shorter than its 8-byte header length".to_string())?;
    let len = u64::from_le_bytes(len);
    if len > size.saturating_sub(8) {
        return Err(format!(
            "header of {len} bytes runs past the end of {size} bytes"
        ));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).map_err(|e| e.to_string())?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| format!("header does not parse: {e}"))?;
    let data = size - 8 - len;
    let mut end = 0;
    for (name, tensor) in header.iter().filter(|(k, _)| *k != "__metadata__") {
        let offsets = tensor["data_offsets"]
            .as_array()
            .and_then(|o| Some((o.first()?.as_u64()?, o.get(1)?.as_u64()?)));
        match offsets {
            Some((start, stop)) if start <= stop && stop <= data => end = end.max(stop),
            _ => {
                return Err(format!(
                    "tensor `{name}` lies outside the file's {data} data bytes"
                ))
            }
        }
    }
    if end != data {
        return Err(format!("{data} data bytes, but the tensors span {end}"));
    }
    Ok(())
}
