//! The provenance footer of an experiment's tables: which code, backend, machine and numerics
//! settings produced the runs they count, read from each run's `meta.json` (or its archived
//! copy). A table that pools runs of several provenances says so.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use super::RunRow;

/// What of a run's `meta.json` the footer reports (older records lack some: `unknown`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// The binary's commit (12 characters), `+dirty` when its sources differed from it.
    pub code: String,
    pub backend: String,
    /// CPU or GPU model, with the threads the run used.
    pub machine: String,
    /// Numerics-changing environment variables that were set (`default`: none).
    pub numerics: String,
}

impl Provenance {
    pub fn from_meta(text: &str) -> Option<Self> {
        let meta: Value = serde_json::from_str(text).ok()?;
        let s = |key: &str| meta.get(key).and_then(Value::as_str).map(String::from);
        let commit = s("build_commit").or_else(|| s("git_commit"));
        let dirty = meta
            .get("build_dirty")
            .or_else(|| meta.get("git_dirty"))
            .and_then(Value::as_bool);
        let code = match commit {
            Some(c) => format!(
                "{}{}",
                c.chars().take(12).collect::<String>(),
                if dirty == Some(true) { "+dirty" } else { "" }
            ),
            None => "unknown".into(),
        };
        let device = s("gpu")
            .or_else(|| s("cpu"))
            .unwrap_or_else(|| s("device").unwrap_or_else(|| "unknown".into()));
        let machine = match meta.get("threads").and_then(Value::as_u64) {
            Some(t) => format!("{device}, {t} threads"),
            None => device,
        };
        let numerics = match meta.get("numerics").and_then(Value::as_object) {
            Some(vars) => {
                let set: Vec<String> = vars
                    .iter()
                    .filter_map(|(k, v)| {
                        let v = v.as_str()?;
                        (v != "(unset)").then(|| format!("{k}={v}"))
                    })
                    .collect();
                if set.is_empty() {
                    "default".into()
                } else {
                    set.join(" ")
                }
            }
            None => "unrecorded".into(),
        };
        Some(Self {
            code,
            backend: s("backend").unwrap_or_else(|| "unknown".into()),
            machine,
            numerics,
        })
    }
}

/// The footer over the runs the tables count (finished, not stale).
pub fn footer(rows: &[RunRow]) -> String {
    // Runs only: an ensemble's row is made of runs already counted.
    let counted: Vec<&RunRow> = rows
        .iter()
        .filter(|r| r.metrics.is_some() && r.members.is_empty())
        .collect();
    if counted.is_empty() {
        return String::new();
    }
    let mut fields: [(&str, BTreeMap<String, usize>); 4] = [
        ("code", BTreeMap::new()),
        ("backend", BTreeMap::new()),
        ("machine", BTreeMap::new()),
        ("numerics", BTreeMap::new()),
    ];
    for r in &counted {
        let p = r.provenance.clone().unwrap_or(Provenance {
            code: "unknown".into(),
            backend: "unknown".into(),
            machine: "unknown".into(),
            numerics: "unrecorded".into(),
        });
        for (i, value) in [p.code, p.backend, p.machine, p.numerics]
            .into_iter()
            .enumerate()
        {
            *fields[i].1.entry(value).or_default() += 1;
        }
    }
    let mixed: Vec<&str> = fields
        .iter()
        .filter(|(_, values)| values.len() > 1)
        .map(|(name, _)| *name)
        .collect();
    let mut out = format!(
        "\nProvenance of the {} runs counted (meta.json):",
        counted.len()
    );
    for (name, values) in &fields {
        let listed: Vec<String> = if values.len() == 1 {
            values.keys().cloned().collect()
        } else {
            values
                .iter()
                .map(|(v, n)| format!("{v} ({n} runs)"))
                .collect()
        };
        let _ = write!(out, " {name} {};", listed.join(", "));
    }
    out.pop();
    out.push('\n');
    if !mixed.is_empty() {
        let _ = writeln!(
            out,
            "⚠ These tables pool runs of mixed provenance ({}): numbers may differ for that reason alone.",
            mixed.join(", ")
        );
    }
    out
}
