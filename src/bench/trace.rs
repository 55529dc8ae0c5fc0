//! Per-operator profiles: libtorch's Kineto profiler around a few training steps, written as a
//! Chrome trace (open it in Perfetto or chrome://tracing), and summarised here: self time per
//! libtorch operator on the host, and time per CUDA kernel on the device.
//! `tools/bench/pytorch_reference.py --profile` writes the same kind of trace for PyTorch, and
//! `opencarbon bench --summarize <trace.json>` summarises either.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;

use super::table::Table;
use crate::backend::{self, DeviceChoice};

/// Training steps recorded per profile (after the timed ones, so the profiler's overhead does
/// not reach the timings).
pub const PROFILED_STEPS: usize = 3;

/// libtorch's profiler recording [`PROFILED_STEPS`] training steps into `<dir>/<name>.trace.json`.
/// [`Session::finish`] stops it, writes `<dir>/<name>.summary.json` and prints the summary's top
/// entries; a session dropped unfinished (a step failed) still stops the profiler.
pub struct Session {
    dir: PathBuf,
    name: String,
    trace: PathBuf,
    running: bool,
}

impl Session {
    pub fn start(choice: &DeviceChoice, dir: &Path, name: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        backend::profiler_start(choice)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            trace: dir.join(format!("{name}.trace.json")),
            running: true,
        })
    }

    pub fn finish(mut self) -> Result<TraceSummary> {
        self.running = false;
        backend::profiler_stop(&self.trace)?;
        let summary = summarize(&self.trace, PROFILED_STEPS)?;
        let path = self.dir.join(format!("{}.summary.json", self.name));
        std::fs::write(&path, serde_json::to_string_pretty(&summary)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!(
            "{}: trace {}\n\n{}",
            self.name,
            self.trace.display(),
            table(&summary, 15)
        );
        Ok(summary)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.running {
            let _ = backend::profiler_stop(&self.trace);
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OpTime {
    pub name: String,
    pub calls: usize,
    /// Milliseconds per profiled step (self time for host operators).
    pub ms_per_step: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TraceSummary {
    pub steps: usize,
    /// libtorch operators (`cpu_op` events) by self time: own duration less that of the
    /// operators they call.
    pub host_ops: Vec<OpTime>,
    /// CUDA kernels (`kernel` events) by total duration; empty for a CPU trace.
    pub kernels: Vec<OpTime>,
}

/// One complete ("ph": "X") event of a thread.
struct Span {
    start: f64,
    duration: f64,
    name: String,
}

/// Summarises a Chrome trace of `steps` training steps.
pub fn summarize(path: &Path, steps: usize) -> Result<TraceSummary> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let trace: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a JSON trace", path.display()))?;
    let Some(events) = trace.get("traceEvents").and_then(Value::as_array) else {
        bail!(
            "{}: no `traceEvents` array (not a Chrome trace)",
            path.display()
        );
    };
    let mut threads: HashMap<(String, String), Vec<Span>> = HashMap::new();
    let mut kernels: HashMap<String, (usize, f64)> = HashMap::new();
    for event in events {
        if event.get("ph").and_then(Value::as_str) != Some("X") {
            continue;
        }
        let (Some(name), Some(start), Some(duration)) = (
            event.get("name").and_then(Value::as_str),
            event.get("ts").and_then(Value::as_f64),
            event.get("dur").and_then(Value::as_f64),
        ) else {
            continue;
        };
        match event.get("cat").and_then(Value::as_str) {
            Some("cpu_op") => {
                let id = |key: &str| event.get(key).map(Value::to_string).unwrap_or_default();
                threads
                    .entry((id("pid"), id("tid")))
                    .or_default()
                    .push(Span {
                        start,
                        duration,
                        name: name.to_string(),
                    });
            }
            Some("kernel") => {
                let entry = kernels.entry(name.to_string()).or_default();
                entry.0 += 1;
                entry.1 += duration;
            }
            _ => {}
        }
    }
    let mut host: HashMap<String, (usize, f64)> = HashMap::new();
    for spans in threads.values_mut() {
        for (name, own) in self_times(spans) {
            let entry = host.entry(name).or_default();
            entry.0 += 1;
            entry.1 += own;
        }
    }
    let steps = steps.max(1);
    Ok(TraceSummary {
        steps,
        host_ops: ranked(host, steps),
        kernels: ranked(kernels, steps),
    })
}

/// (name, self time) of each span of one thread: nested spans (an operator calling others) are
/// subtracted from their parent.
fn self_times(spans: &mut [Span]) -> Vec<(String, f64)> {
    // Parents first: earlier start, then longer duration.
    spans.sort_by(|a, b| {
        a.start
            .total_cmp(&b.start)
            .then(b.duration.total_cmp(&a.duration))
    });
    let mut own: Vec<f64> = spans.iter().map(|s| s.duration).collect();
    let mut open: Vec<usize> = Vec::new();
    for (i, span) in spans.iter().enumerate() {
        while let Some(&top) = open.last() {
            if spans[top].start + spans[top].duration <= span.start {
                open.pop();
            } else {
                break;
            }
        }
        if let Some(&parent) = open.last() {
            own[parent] -= span.duration;
        }
        open.push(i);
    }
    spans
        .iter()
        .zip(own)
        .map(|(s, t)| (s.name.clone(), t.max(0.0)))
        .collect()
}

fn ranked(totals: HashMap<String, (usize, f64)>, steps: usize) -> Vec<OpTime> {
    let mut ops: Vec<OpTime> = totals
        .into_iter()
        .map(|(name, (calls, micros))| OpTime {
            name,
            calls,
            ms_per_step: micros / 1e3 / steps as f64,
        })
        .collect();
    ops.sort_by(|a, b| {
        b.ms_per_step
            .total_cmp(&a.ms_per_step)
            .then(a.name.cmp(&b.name))
    });
    ops
}

/// The `top` largest entries of each list as Markdown tables.
pub fn table(summary: &TraceSummary, top: usize) -> String {
    let mut out = String::new();
    for (title, ops) in [
        ("libtorch operators, self time", &summary.host_ops),
        ("CUDA kernels", &summary.kernels),
    ] {
        if ops.is_empty() {
            continue;
        }
        let total: f64 = ops.iter().map(|o| o.ms_per_step).sum();
        out.push_str(&format!(
            "{title} ({:.1} ms per step over {} steps)\n\n",
            total, summary.steps
        ));
        let mut table = Table::new(&["op", "calls per step", "ms per step", "share"]);
        for op in ops.iter().take(top) {
            let mut name = op.name.clone();
            if name.chars().count() > 90 {
                name = name.chars().take(87).collect::<String>() + "...";
            }
            table.row(vec![
                format!("`{name}`"),
                format!("{:.1}", op.calls as f64 / summary.steps as f64),
                format!("{:.2}", op.ms_per_step),
                format!("{:.1} %", 100.0 * op.ms_per_step / total.max(1e-12)),
            ]);
        }
        out.push_str(&table.markdown());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_operators_count_their_own_time_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trace.json");
        // conv2d [0, 10) calls convolution [1, 9), which calls mkldnn [2, 8); relu [12, 14) on
        // another thread; two kernels.
        let trace = serde_json::json!({"traceEvents": [
            {"ph": "X", "cat": "cpu_op", "name": "aten::conv2d", "pid": 1, "tid": 1, "ts": 0.0, "dur": 10.0},
            {"ph": "X", "cat": "cpu_op", "name": "aten::convolution", "pid": 1, "tid": 1, "ts": 1.0, "dur": 8.0},
            {"ph": "X", "cat": "cpu_op", "name": "aten::mkldnn", "pid": 1, "tid": 1, "ts": 2.0, "dur": 6.0},
            {"ph": "X", "cat": "cpu_op", "name": "aten::relu", "pid": 1, "tid": 2, "ts": 12.0, "dur": 2.0},
            {"ph": "X", "cat": "cpu_op", "name": "aten::relu", "pid": 1, "tid": 1, "ts": 12.0, "dur": 4.0},
            {"ph": "X", "cat": "kernel", "name": "k1", "ts": 0.0, "dur": 3000.0},
            {"ph": "X", "cat": "kernel", "name": "k1", "ts": 5.0, "dur": 1000.0},
            {"ph": "i", "cat": "cpu_op", "name": "marker", "ts": 1.0},
        ]});
        std::fs::write(&path, trace.to_string()).unwrap();
        let s = summarize(&path, 2).unwrap();
        let host: Vec<(&str, usize, f64)> = s
            .host_ops
            .iter()
            .map(|o| (o.name.as_str(), o.calls, o.ms_per_step * 1e3))
            .collect();
        assert_eq!(
            host,
            vec![
                ("aten::mkldnn", 1, 3.0),
                ("aten::relu", 2, 3.0),
                ("aten::conv2d", 1, 1.0),
                ("aten::convolution", 1, 1.0),
            ]
        );
        assert_eq!(
            s.kernels,
            vec![OpTime {
                name: "k1".into(),
                calls: 2,
                ms_per_step: 2.0
            }]
        );
        assert!(table(&s, 3).contains("| `aten::mkldnn` | 0.5 | 0.00 | 37.5 % |"));
    }

    #[test]
    fn a_file_that_is_not_a_trace_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        std::fs::write(&path, "{\"a\": 1}").unwrap();
        let error = summarize(&path, 1).unwrap_err().to_string();
        assert!(
            error.contains("x.json") && error.contains("traceEvents"),
            "{error}"
        );
    }
}
