//! Expectations: claims a spec makes about its own results (`expect:`), parsed and checked
//! against the spec's variants here, judged on the finished runs by `results::expect` (a CI job
//! gates on them). Two forms:
//!
//! ```text
//! full > no_neighbourhood on r2 at 0.05 [in DATASET]   # paired over seeds and folds: the mean
//!                                                      # difference points that way and the
//!                                                      # comparison table's Holm-adjusted
//!                                                      # paired t-test p is < 0.05 (one side
//!                                                      # must be the reference variant)
//! full.r2 >= 0.6 [on DATASET]                          # the mean over runs (>=, <=, >, <)
//! ```
//!
//! Without a dataset a claim must hold on every dataset the variants ran on.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Expectation {
    /// `a` differs from `b` on `metric` in the direction `greater` (a > b) at level `alpha`.
    Paired {
        a: String,
        b: String,
        greater: bool,
        metric: String,
        alpha: f64,
        dataset: Option<String>,
    },
    /// The mean of `metric` over `variant`'s runs compared with `value`.
    Threshold {
        variant: String,
        metric: String,
        op: String,
        value: f64,
        dataset: Option<String>,
    },
}

const FORMS: &str =
    "expected `A > B on METRIC at ALPHA [in DATASET]` or `A.METRIC >= VALUE [on DATASET]` (METRIC: r2, rmse, mae, mape; comparisons: >, <, >=, <=)";

fn metric(name: &str) -> Result<String> {
    if crate::metrics::METRICS.iter().any(|(m, _)| *m == name) {
        Ok(name.to_string())
    } else {
        bail!("unknown metric `{name}`; {FORMS}")
    }
}

impl Expectation {
    /// Parses one `expect:` line.
    pub fn parse(line: &str) -> Result<Self> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [a, op @ (">" | "<"), b, "on", m, "at", alpha, rest @ ..] => {
                let alpha: f64 = alpha
                    .parse()
                    .ok()
                    .filter(|v: &f64| *v > 0.0 && *v < 1.0)
                    .ok_or_else(|| {
                        anyhow::anyhow!("level `{alpha}` must be a number between 0 and 1")
                    })?;
                let dataset = match rest {
                    [] => None,
                    ["in", d] => Some(d.to_string()),
                    _ => bail!("`{}` after the level; {FORMS}", rest.join(" ")),
                };
                Ok(Self::Paired {
                    a: a.to_string(),
                    b: b.to_string(),
                    greater: *op == ">",
                    metric: metric(m)?,
                    alpha,
                    dataset,
                })
            }
            [left, op @ (">=" | "<=" | ">" | "<"), value, rest @ ..] if left.contains('.') => {
                let (variant, m) = left.rsplit_once('.').expect("contains a dot");
                let value: f64 = value
                    .parse()
                    .map_err(|_| anyhow::anyhow!("`{value}` is not a number; {FORMS}"))?;
                let dataset = match rest {
                    [] => None,
                    ["on" | "in", d] => Some(d.to_string()),
                    _ => bail!("`{}` after the value; {FORMS}", rest.join(" ")),
                };
                Ok(Self::Threshold {
                    variant: variant.to_string(),
                    metric: metric(m)?,
                    op: op.to_string(),
                    value,
                    dataset,
                })
            }
            _ => bail!("{FORMS}"),
        }
    }

    pub fn variants(&self) -> Vec<&str> {
        match self {
            Self::Paired { a, b, .. } => vec![a, b],
            Self::Threshold { variant, .. } => vec![variant],
        }
    }
}

/// Parses every line, naming the line of `origin` (a spec file's text) a bad one is on, and
/// checks that the variants it names exist.
pub fn parse_all(
    lines: &[String],
    variants: &[String],
    origin: &str,
    text: &str,
) -> Result<Vec<Expectation>> {
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let at = text
                .lines()
                .position(|l| l.contains(line.as_str()))
                .map(|n| format!("{origin}: line {}", n + 1))
                .unwrap_or_else(|| format!("{origin}: expect[{i}]"));
            let e = Expectation::parse(line)
                .map_err(|e| anyhow::anyhow!("{at}: expect `{line}`: {e}"))?;
            for v in e.variants() {
                if !variants.iter().any(|x| x == v) {
                    bail!(
                        "{at}: expect `{line}`: `{v}` is not a variant (variants: {})",
                        variants.join(", ")
                    );
                }
            }
            Ok(e)
        })
        .collect()
}
