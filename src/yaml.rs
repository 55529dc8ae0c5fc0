//! YAML into typed values, with errors that name the file, the line, the key path and what was
//! allowed: specs, dataset manifests and `--set` overrides all read through here.

use anyhow::{anyhow, Result};
use serde::de::DeserializeOwned;
use serde_norway::Value;

/// Deserialises YAML text, reporting the key path and line of the first problem.
pub fn deserialize_located<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T> {
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = strip_path(&strip_location(&inner.to_string()), &path);
        let keys = serde_norway::from_str::<Value>(text)
            .ok()
            .and_then(|root| locate::<T>(&root, &path, &message))
            .unwrap_or_else(|| vec![path.clone()]);
        // Inside a `kind:`-tagged section serde has lost the place too and says line 1,
        // column 1: then the line is the one line holding the key, if only one does.
        let location = match inner.location() {
            Some(l) if l.line() == 1 && l.column() == 1 && !key_prefix(&keys).is_empty() => {
                line_of(text, &keys).map(|n| format!(" line {n}"))
            }
            Some(l) => Some(format!(" line {}, column {}", l.line(), l.column())),
            None => None,
        }
        .unwrap_or_default();
        anyhow!(
            "{origin}:{location}: {}{}",
            key_prefix(&keys),
            describe(&message)
        )
    })
}

/// Deserialises an already parsed (and overridden) YAML value, reporting the key path.
pub fn deserialize_value<T: DeserializeOwned>(
    value: serde_norway::Value,
    origin: &str,
) -> Result<T> {
    deserialize_under(value, origin, "")
}

/// Deserialises the value of top-level key `key` (`launcher`, `compare`), naming the key path
/// from the top (`launcher.slurm.gpus`) in errors.
pub fn deserialize_section<T: DeserializeOwned>(
    value: serde_norway::Value,
    origin: &str,
    key: &str,
) -> Result<T> {
    deserialize_under(value, origin, key)
}

fn deserialize_under<T: DeserializeOwned>(value: Value, origin: &str, key: &str) -> Result<T> {
    let root = value.clone();
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = strip_path(&strip_location(&e.into_inner().to_string()), &path);
        let keys: Vec<String> = locate::<T>(&root, &path, &message)
            .unwrap_or_else(|| vec![path.clone()])
            .into_iter()
            .map(|p| {
                if key.is_empty() {
                    p
                } else if p.is_empty() || p == "." {
                    key.to_string()
                } else if p.starts_with('[') {
                    format!("{key}{p}")
                } else {
                    format!("{key}.{p}")
                }
            })
            .collect();
        anyhow!("{origin}: {}{}", key_prefix(&keys), describe(&message))
    })
}

/// The line of `text` that holds the last key of `paths` (`width` of `dataset.width`), when
/// exactly one line does.
fn line_of(text: &str, paths: &[String]) -> Option<usize> {
    let [path] = paths else { return None };
    let key = path
        .rsplit(['.', '['])
        .find(|k| !k.is_empty() && !k.ends_with(']'))?;
    let is_name = |c: char| c.is_alphanumeric() || c == '_';
    let holds = |line: &str| {
        line.match_indices(key).any(|(i, _)| {
            let before = line[..i].chars().next_back();
            let after = line[i + key.len()..].trim_start().chars().next();
            !before.is_some_and(is_name) && after == Some(':')
        })
    };
    let mut lines = text.lines().enumerate().filter(|(_, l)| holds(l));
    match (lines.next(), lines.next()) {
        (Some((n, _)), None) => Some(n + 1),
        _ => None,
    }
}

fn key_prefix(paths: &[String]) -> String {
    let paths: Vec<String> = paths
        .iter()
        .filter(|p| !p.is_empty() && p.as_str() != ".")
        .map(|p| format!("`{p}`"))
        .collect();
    if paths.is_empty() {
        String::new()
    } else {
        format!("key {}: ", paths.join(" or "))
    }
}

/// serde reports a bad value inside an internally tagged enum (`dataset: {kind: …}`, `split:
/// {kind: …}`) at the enum's own key, with a message that names no key (`invalid type: string
/// "x", expected usize`): the enum buffers its fields before it knows its variant, and the key
/// path is lost. This finds, under `path`, what the message describes (the value `string "x"`,
/// the unknown variant or field, the mapping that misses a field) and returns the full key paths
/// (`dataset.width`); where several fit, those whose change changes the error. None when the
/// message describes nothing found under `path`.
fn locate<T: DeserializeOwned>(root: &Value, path: &str, message: &str) -> Option<Vec<String>> {
    let described = Described::parse(message)?;
    let at = resolve(root, path)?;
    let node = get(root, &at)?;
    let error = |v: Value| {
        serde_path_to_error::deserialize::<_, T>(v)
            .err()
            .map(|e| (e.path().to_string(), e.into_inner().to_string()))
    };
    let original = error(root.clone());
    let full = |below: &[Segment]| -> Vec<Segment> { at.iter().chain(below).cloned().collect() };
    let mut fitting: Vec<Vec<Segment>> = Vec::new();
    let mut below = Vec::new();
    walk(node, &mut below, &mut |segments, v| {
        if described.fits(segments, v) {
            fitting.push(segments.to_vec());
        }
    });
    if let Described::MissingField(field) = &described {
        // The mapping that misses `field` is the one that takes it: given there, the error is
        // another (not `unknown field`, which a mapping of other keys would say).
        fitting.retain(|below| {
            let mut v = root.clone();
            let Some(Value::Mapping(m)) = get_mut(&mut v, &full(below)) else {
                return false;
            };
            m.insert(Value::String(field.clone()), Value::Null);
            match error(v) {
                None => true,
                Some(e) => {
                    Some(&e) != original.as_ref()
                        && !e.1.starts_with(&format!("unknown field `{field}`"))
                }
            }
        });
    } else if fitting.len() > 1 {
        // The culprit is what, changed, changes the error (an unknown key removed, a value
        // replaced by one of another type); of those, the deepest (its ancestors change it too).
        let changed: Vec<Vec<Segment>> = fitting
            .iter()
            .filter(|below| {
                let mut v = root.clone();
                let path = full(below);
                // An unknown key (field, or variant written as `{x: …}`) is removed.
                let unknown_key = match &described {
                    Described::UnknownField(name) | Described::UnknownVariant(name) => {
                        below.last() == Some(&Segment::Key(Value::String(name.clone())))
                            && get(root, &path).and_then(Value::as_str) != Some(name.as_str())
                    }
                    _ => false,
                };
                let done = if unknown_key {
                    remove(&mut v, &path)
                } else {
                    match get_mut(&mut v, &path) {
                        Some(slot) => {
                            *slot = if slot.is_null() {
                                Value::Sequence(vec![])
                            } else {
                                Value::Null
                            };
                            true
                        }
                        None => false,
                    }
                };
                done && error(v) != original
            })
            .cloned()
            .collect();
        let deepest: Vec<Vec<Segment>> = changed
            .iter()
            .filter(|a| {
                !changed
                    .iter()
                    .any(|b| b.len() > a.len() && b.starts_with(a.as_slice()))
            })
            .cloned()
            .collect();
        if !deepest.is_empty() {
            fitting = deepest;
        }
    }
    if fitting.is_empty() {
        return None;
    }
    Some(fitting.iter().map(|below| render(&full(below))).collect())
}

/// One step of a key path: a mapping's key or a sequence's index.
#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Key(Value),
    Index(usize),
}

/// What serde's message is about: the offending value (`serde::de::Unexpected`), a length, an
/// unknown variant or field, or a missing field.
#[derive(Debug, PartialEq)]
enum Described {
    Unexpected(String),
    Length(usize),
    UnknownVariant(String),
    UnknownField(String),
    MissingField(String),
}

impl Described {
    fn parse(message: &str) -> Option<Self> {
        let quoted = |prefix: &str| -> Option<String> {
            let rest = message.strip_prefix(prefix)?;
            let end = rest.find("`, ").or_else(|| rest.rfind('`'))?;
            Some(rest[..end].to_string())
        };
        if let Some(rest) = message.strip_prefix("invalid length ") {
            let n = rest.split(|c: char| !c.is_ascii_digit()).next()?;
            return n.parse().ok().map(Described::Length);
        }
        if let Some(v) = quoted("unknown variant `") {
            return Some(Described::UnknownVariant(v));
        }
        if let Some(f) = quoted("unknown field `") {
            return Some(Described::UnknownField(f));
        }
        if let Some(f) = quoted("missing field `") {
            return Some(Described::MissingField(f));
        }
        let rest = message
            .strip_prefix("invalid type: ")
            .or_else(|| message.strip_prefix("invalid value: "))?;
        let (unexpected, _) = rest.split_once(", expected ")?;
        Some(Described::Unexpected(unexpected.to_string()))
    }

    /// Whether `v`, at `segments` below the reported key, is what the message describes. An
    /// unknown field one level down is already clear from the reported key and the field.
    fn fits(&self, segments: &[Segment], v: &Value) -> bool {
        let text = match self {
            Described::Length(n) => {
                return match v {
                    Value::Sequence(s) => s.len() == *n,
                    Value::Mapping(m) => m.len() == *n,
                    _ => false,
                }
            }
            // A string naming the variant, or a mapping's key (`{x: 1}` reads as variant `x`).
            Described::UnknownVariant(name) => {
                return v.as_str() == Some(name.as_str())
                    || (segments.len() >= 2
                        && segments.last() == Some(&Segment::Key(Value::String(name.clone()))));
            }
            Described::UnknownField(name) => {
                return segments.len() >= 2
                    && segments.last() == Some(&Segment::Key(Value::String(name.clone())));
            }
            Described::MissingField(name) => {
                return v
                    .as_mapping()
                    .is_some_and(|m| !m.contains_key(name.as_str()));
            }
            Described::Unexpected(text) => text.as_str(),
        };
        let quoted = |prefix: &str| {
            text.strip_prefix(prefix)
                .and_then(|t| t.strip_prefix('`'))
                .and_then(|t| t.strip_suffix('`'))
        };
        match v {
            Value::Null => text == "unit value" || text == "Option value",
            Value::Bool(b) => quoted("boolean ") == Some(if *b { "true" } else { "false" }),
            Value::Number(n) => {
                if let Some(i) = quoted("integer ") {
                    n.as_u64().map(|u| u.to_string()).as_deref() == Some(i)
                        || n.as_i64().map(|s| s.to_string()).as_deref() == Some(i)
                } else if let Some(f) = quoted("floating point ") {
                    match (n.as_f64(), f.parse::<f64>()) {
                        (Some(a), Ok(b)) => a == b || (a.is_nan() && b.is_nan()),
                        _ => false,
                    }
                } else {
                    false
                }
            }
            Value::String(s) => text == format!("string {s:?}"),
            Value::Sequence(_) => text == "sequence",
            Value::Mapping(_) => text == "map",
            Value::Tagged(_) => false,
        }
    }
}

/// Every value below `node` (not `node` itself), in document order, with its path from `node`.
fn walk(node: &Value, below: &mut Vec<Segment>, visit: &mut impl FnMut(&[Segment], &Value)) {
    let children: Vec<(Segment, &Value)> = match node {
        Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| (Segment::Key(k.clone()), v))
            .collect(),
        Value::Sequence(s) => s
            .iter()
            .enumerate()
            .map(|(i, v)| (Segment::Index(i), v))
            .collect(),
        _ => return,
    };
    for (segment, child) in children {
        below.push(segment);
        visit(below, child);
        walk(child, below, visit);
        below.pop();
    }
}

/// The segments of a serde_path_to_error path (`transfer.targets[0].dataset`) in `root`; keys
/// may themselves hold dots, so each is matched against the mapping's keys, the longest first.
fn resolve(root: &Value, path: &str) -> Option<Vec<Segment>> {
    let mut segments = Vec::new();
    let mut node = root;
    let mut rest = if path == "." { "" } else { path };
    while !rest.is_empty() {
        match node {
            Value::Sequence(items) => {
                let inner = rest.strip_prefix('[')?;
                let (index, tail) = inner.split_once(']')?;
                let index: usize = index.parse().ok()?;
                node = items.get(index)?;
                segments.push(Segment::Index(index));
                rest = tail.strip_prefix('.').unwrap_or(tail);
            }
            Value::Mapping(map) => {
                let (key, child) = map
                    .iter()
                    .filter_map(|(k, v)| {
                        let name = k.as_str()?;
                        let tail = rest.strip_prefix(name)?;
                        (tail.is_empty() || tail.starts_with(['.', '['])).then_some((k, v))
                    })
                    .max_by_key(|(k, _)| k.as_str().map_or(0, str::len))?;
                let name = key.as_str()?;
                rest = &rest[name.len()..];
                rest = rest.strip_prefix('.').unwrap_or(rest);
                segments.push(Segment::Key(key.clone()));
                node = child;
            }
            _ => return None,
        }
    }
    Some(segments)
}

fn get<'a>(root: &'a Value, segments: &[Segment]) -> Option<&'a Value> {
    segments.iter().try_fold(root, |node, s| match (node, s) {
        (Value::Mapping(m), Segment::Key(k)) => m.get(k),
        (Value::Sequence(items), Segment::Index(i)) => items.get(*i),
        _ => None,
    })
}

fn get_mut<'a>(root: &'a mut Value, segments: &[Segment]) -> Option<&'a mut Value> {
    let mut node = root;
    for s in segments {
        node = match (node, s) {
            (Value::Mapping(m), Segment::Key(k)) => m.get_mut(k)?,
            (Value::Sequence(items), Segment::Index(i)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(node)
}

/// Removes the value at `segments`; false if there is none.
fn remove(root: &mut Value, segments: &[Segment]) -> bool {
    let Some((last, parent)) = segments.split_last() else {
        return false;
    };
    let mut node = root;
    for s in parent {
        node = match (node, s) {
            (Value::Mapping(m), Segment::Key(k)) => match m.get_mut(k) {
                Some(v) => v,
                None => return false,
            },
            (Value::Sequence(items), Segment::Index(i)) => match items.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (node, last) {
        (Value::Mapping(m), Segment::Key(k)) => m.remove(k).is_some(),
        (Value::Sequence(items), Segment::Index(i)) if *i < items.len() => {
            items.remove(*i);
            true
        }
        _ => false,
    }
}

/// A key path as serde_path_to_error writes it: `a.b[0].c`.
fn render(segments: &[Segment]) -> String {
    let mut out = String::new();
    for s in segments {
        match s {
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                match k {
                    Value::String(name) => out.push_str(name),
                    other => out.push_str(
                        serde_norway::to_string(other)
                            .unwrap_or_default()
                            .trim_end(),
                    ),
                }
            }
        }
    }
    out
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

/// Levenshtein distance over chars, for did-you-mean suggestions (here and in `tune`).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
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
