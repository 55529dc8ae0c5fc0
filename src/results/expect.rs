//! Checking expectations (`expect:`, parsed in `spec::expect`) against the finished runs, by
//! `opencarbon results DIR --check` and at the end of `run`, so a CI job can gate on them.

use std::fmt::Write as _;

use serde::Serialize;

use super::comparison::ComparisonRow;
use super::RunRow;
pub use crate::spec::expect::Expectation;

/// One expectation checked: whether it holds, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub expectation: String,
    pub passed: bool,
    pub evidence: String,
}

use super::metric_value as value;

/// The reference of a paired gate's comparison: whichever of `a`, `b` the table's rows are
/// tested against (a spec is refused at parse time when neither is).
fn table_reference(table: &[ComparisonRow], a: &str, b: &str) -> String {
    table
        .iter()
        .map(|r| r.reference.as_str())
        .find(|r| *r == a || *r == b)
        .unwrap_or(b)
        .to_string()
}

/// Checks `expectation` (its text `line`) against the finished runs; a paired claim is judged
/// on `table` (the comparison table: Holm-adjusted p, as its verdicts are).
pub fn check(
    line: &str,
    expectation: &Expectation,
    rows: &[RunRow],
    table: &[ComparisonRow],
) -> Outcome {
    let done: Vec<&RunRow> = rows.iter().filter(|r| r.metrics.is_some()).collect();
    let datasets = |wanted: &Option<String>, variants: &[&str]| -> Vec<String> {
        let mut d: Vec<String> = done
            .iter()
            .filter(|r| variants.contains(&r.variant.as_str()))
            .map(|r| r.dataset.clone())
            .filter(|d| wanted.as_ref().is_none_or(|w| w == d))
            .collect();
        d.sort();
        d.dedup();
        d
    };
    let mut passed = true;
    let mut evidence = Vec::new();
    match expectation {
        Expectation::Paired {
            a,
            b,
            greater,
            metric,
            alpha,
            dataset,
        } => {
            let sets = datasets(dataset, &[a, b]);
            if sets.is_empty() {
                passed = false;
                evidence.push("no finished runs of these variants".to_string());
            }
            for d in sets {
                // The comparison table's row: the variant that is not the reference, against it.
                let (variant, sign) = if b == &table_reference(table, a, b) {
                    (a, 1.0)
                } else {
                    (b, -1.0)
                };
                let Some(row) = table
                    .iter()
                    .find(|r| r.dataset == d && &r.variant == variant && &r.metric == metric)
                else {
                    passed = false;
                    evidence.push(format!("{d}: no pairs of `{a}` and `{b}` ✗"));
                    continue;
                };
                let mean = sign * row.mean_diff;
                let direction = if *greater { mean > 0.0 } else { mean < 0.0 };
                let ok = direction && row.p_t_holm < *alpha;
                passed &= ok;
                let table_says = match row.verdict.as_str() {
                    v @ ("better" | "worse") => {
                        format!(
                            "comparison.md: `{}` {v} than `{}`",
                            row.variant, row.reference
                        )
                    }
                    v => format!("comparison.md: {v}"),
                };
                evidence.push(format!(
                    "{d}: Δ {mean:+.4} over {} pairs, {} p = {:.4}, Holm-adjusted p = {:.4} ({table_says}){}",
                    row.n_pairs,
                    row.test,
                    row.p_t,
                    row.p_t_holm,
                    if ok { "" } else { " ✗" }
                ));
            }
        }
        Expectation::Threshold {
            variant,
            metric,
            op,
            value: bound,
            dataset,
        } => {
            let sets = datasets(dataset, &[variant]);
            if sets.is_empty() {
                passed = false;
                evidence.push("no finished runs of this variant".to_string());
            }
            for d in sets {
                let values: Vec<f64> = done
                    .iter()
                    .filter(|r| r.dataset == d && &r.variant == variant)
                    .map(|r| value(r, metric))
                    .collect();
                let mean = values.iter().sum::<f64>() / values.len() as f64;
                let ok = match op.as_str() {
                    ">=" => mean >= *bound,
                    "<=" => mean <= *bound,
                    ">" => mean > *bound,
                    _ => mean < *bound,
                };
                passed &= ok;
                evidence.push(format!(
                    "{d}: mean {mean:.4} over {} runs{}",
                    values.len(),
                    if ok { "" } else { " ✗" }
                ));
            }
        }
    }
    Outcome {
        expectation: line.to_string(),
        passed,
        evidence: evidence.join("; "),
    }
}

/// The outcomes as lines for a terminal.
pub fn report(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    for o in outcomes {
        let _ = writeln!(
            out,
            "{} {}: {}",
            if o.passed { "PASS" } else { "FAIL" },
            o.expectation,
            o.evidence
        );
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&apos;".to_string(),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => " ".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// JUnit XML: one test case per expectation, a failure carrying its evidence.
pub fn junit(experiment: &str, outcomes: &[Outcome]) -> String {
    let failures = outcomes.iter().filter(|o| !o.passed).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites><testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\">",
        xml_escape(&format!("opencarbon expectations: {experiment}")),
        outcomes.len()
    );
    for o in outcomes {
        let _ = write!(
            out,
            "  <testcase classname=\"{}\" name=\"{}\">",
            xml_escape(&format!("opencarbon.{experiment}")),
            xml_escape(&o.expectation)
        );
        if o.passed {
            let _ = write!(out, "<system-out>{}</system-out>", xml_escape(&o.evidence));
        } else {
            let _ = write!(
                out,
                "<failure message=\"{}\">{}</failure>",
                xml_escape(&o.evidence),
                xml_escape(&o.evidence)
            );
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("</testsuite></testsuites>\n");
    out
}
