//! Spec errors that name the file, the line, the key path, and what was allowed.

use anyhow::{anyhow, Result};
use serde::de::DeserializeOwned;

/// Deserialises YAML text, reporting the key path and line of the first problem.
pub fn deserialize_located<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T> {
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let location = inner.location().map(|l| format!(" line {}, column {}", l.line(), l.column())).unwrap_or_default();
        anyhow!("{origin}:{location}: {}{}", key_prefix(&path), describe(&strip_location(&inner.to_string())))
    })
}

/// Deserialises an already parsed (and overridden) YAML value, reporting the key path.
pub fn deserialize_value<T: DeserializeOwned>(value: serde_norway::Value, origin: &str) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        anyhow!("{origin}: {}{}", key_prefix(&path), describe(&strip_location(&e.into_inner().to_string())))
    })
}

fn key_prefix(path: &str) -> String {
    if path.is_empty() || path == "." {
        String::new()
    } else {
        format!("key `{path}`: ")
    }
}

fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Adds a did-you-mean to serde's "unknown field/variant `x`, expected one of `a`, `b`".
pub fn describe(message: &str) -> String {
    let Some(unknown) = message.split('`').nth(1) else { return message.to_string() };
    let is_unknown = message.starts_with("unknown field") || message.starts_with("unknown variant");
    let Some(list) = message.split_once("expected one of ").map(|(_, l)| l).or_else(|| message.split_once("expected ").map(|(_, l)| l)) else {
        return message.to_string();
    };
    if !is_unknown {
        return message.to_string();
    }
    let allowed: Vec<&str> = list.split('`').skip(1).step_by(2).collect();
    match allowed.iter().map(|a| (edit_distance(unknown, a), *a)).min() {
        Some((d, best)) if d <= 2.max(unknown.len() / 3) => format!("{message}; did you mean `{best}`?"),
        _ => message.to_string(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean() {
        let m = describe("unknown field `lr_rate`, expected one of `epochs`, `lr`, `alpha`");
        assert!(m.ends_with("did you mean `lr`?"), "{m}");
        let m = describe("unknown field `zzzzzz`, expected one of `epochs`, `lr`");
        assert!(!m.contains("did you mean"), "{m}");
    }
}
