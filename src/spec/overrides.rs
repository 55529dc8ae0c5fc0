//! `--set key.path=value` overrides on the parsed YAML, before it is typed.

use anyhow::{bail, Context, Result};
use serde_norway::{Mapping, Value};

/// Sets `key.path` to `value` (parsed as YAML, so `1e-3`, `true`, `[image, poi]` work).
/// Intermediate mappings are created; a scalar in the way is an error.
pub fn apply_override(root: &mut Value, assignment: &str) -> Result<()> {
    let (path, raw) = assignment
        .split_once('=')
        .context("expected key.path=value")?;
    let value: Value =
        serde_norway::from_str(raw).with_context(|| format!("value `{raw}` is not valid YAML"))?;
    set_key(root, path, value)
}

/// Sets dotted `path` to `value`, creating intermediate mappings; a scalar in the way is an
/// error.
pub fn set_key(root: &mut Value, path: &str, value: Value) -> Result<()> {
    let keys: Vec<&str> = path.trim().split('.').collect();
    if keys.iter().any(|k| k.is_empty()) {
        bail!("`{path}` is not a key path like train.lr");
    }
    let mut node = root;
    for (depth, key) in keys.iter().enumerate() {
        if node.is_null() {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = node else {
            bail!(
                "`{}` is not a mapping, so it has no key `{key}`",
                keys[..depth].join(".")
            );
        };
        let k = Value::String(key.to_string());
        if depth + 1 == keys.len() {
            map.insert(k, value);
            return Ok(());
        }
        node = map.entry(k).or_insert(Value::Null);
    }
    unreachable!("the loop returns at the last key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_nested_keys() {
        let mut v: Value = serde_norway::from_str("train: {lr: 0.1}\nname: x").unwrap();
        apply_override(&mut v, "train.lr=1e-3").unwrap();
        apply_override(&mut v, "model.modalities=[image]").unwrap();
        assert_eq!(v["train"]["lr"].as_f64(), Some(1e-3));
        assert_eq!(v["model"]["modalities"][0].as_str(), Some("image"));
        assert!(apply_override(&mut v, "name.inner=1").is_err());
        assert!(apply_override(&mut v, "noequals").is_err());
    }
}
