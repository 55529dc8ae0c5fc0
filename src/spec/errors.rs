//! Spec errors that name the file, the line, the key path, and what was allowed.

use anyhow::{anyhow, Result};
use serde::de::DeserializeOwned;

/// Deserialises YAML text, reporting the key path and line of the first problem.
pub fn deserialize_located<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T> {
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let location = inner
            .location()
            .map(|l| format!(" line {}, column {}", l.line(), l.column()))
            .unwrap_or_default();
        let message = strip_path(&strip_location(&inner.to_string()), &path);
        anyhow!(
            "{origin}:{location}: {}{}",
            key_prefix(&path),
            describe(&message)
        )
    })
}

/// Deserialises an already parsed (and overridden) YAML value, reporting the key path.
pub fn deserialize_value<T: DeserializeOwned>(
    value: serde_norway::Value,
    origin: &str,
) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = strip_path(&strip_location(&e.into_inner().to_string()), &path);
        anyhow!("{origin}: {}{}", key_prefix(&path), describe(&message))
    })
}

fn key_prefix(path: &str) -> String {
    if path.is_empty() || path == "." {
        String::new()
    } else {
        format!("key `{path}`: ")
    }
}

/// serde_norway prefixes some messages with the parent key path; ours already names the key.
fn strip_path(message: &str, path: &str) -> String {
    let mut parent = path.rsplit_once('.').map_or("", |(p, _)| p).to_string();
    loop {
        if let Some(rest) = message
            .strip_prefix(&format!("{path}: "))
            .or_else(|| message.strip_prefix(&format!("{parent}: ")))
        {
            return rest.to_string();
        }
        // `model.modalities[0]` → `model.modalities`
        match parent.rsplit_once(['.', '[']) {
            Some((p, _)) if !parent.is_empty() => parent = p.to_string(),
            _ => return message.to_string(),
        }
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
    let Some(start) = message
        .find("unknown field `")
        .or_else(|| message.find("unknown variant `"))
    else {
        return message.to_string();
    };
    let tail = &message[start..];
    let Some(unknown) = tail.split('`').nth(1) else {
        return message.to_string();
    };
    let Some(list) = tail
        .split_once("expected one of ")
        .map(|(_, l)| l)
        .or_else(|| tail.split_once("expected ").map(|(_, l)| l))
    else {
        return message.to_string();
    };
    let allowed: Vec<&str> = list.split('`').skip(1).step_by(2).collect();
    // Close in spelling, or one is a prefix of the other (`lr_rate` → `lr`).
    let score = |a: &str| {
        let d = edit_distance(unknown, a);
        if d <= 2.max(unknown.len() / 3) {
            Some(d)
        } else if a.len() >= 2 && (unknown.starts_with(a) || a.starts_with(unknown)) {
            Some(d + 100)
        } else {
            None
        }
    };
    match allowed
        .iter()
        .filter_map(|a| score(a).map(|s| (s, *a)))
        .min()
    {
        Some((_, best)) => format!("{message}; did you mean `{best}`?"),
        None => message.to_string(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
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
