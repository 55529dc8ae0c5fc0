//! The layers of docs/ARCHITECTURE.md hold in the code: every `crate::<module>` a top-level module
//! of `src/` names (imports, paths, its own tests) is on a lower layer than itself. So there is no
//! import cycle between top-level modules, and the picture in the docs is the code's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const BEGIN: &str = "<!-- layers: top to bottom";
const END: &str = "<!-- /layers -->";

/// Layer of each module named in docs/ARCHITECTURE.md's layers block (0 = bottom).
fn documented_layers() -> BTreeMap<String, usize> {
    let doc = std::fs::read_to_string("docs/ARCHITECTURE.md").expect("docs/ARCHITECTURE.md");
    let start = doc
        .find(BEGIN)
        .expect("docs/ARCHITECTURE.md has a layers block");
    let end = doc[start..].find(END).expect("the layers block ends") + start;
    let rows: Vec<Vec<String>> = doc[start..end]
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("```") && !l.trim().is_empty())
        .map(|l| {
            l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect();
    let mut layers = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        for m in row {
            let previous = layers.insert(m.clone(), rows.len() - 1 - i);
            assert!(
                previous.is_none(),
                "`{m}` is on two layers of docs/ARCHITECTURE.md"
            );
        }
    }
    layers
}

/// The top-level modules lib.rs declares.
fn modules() -> Vec<String> {
    let lib = std::fs::read_to_string("src/lib.rs").expect("src/lib.rs");
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_string())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The files of a top-level module: `src/<m>.rs` or everything under `src/<m>/`.
fn files_of(module: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let file = PathBuf::from(format!("src/{module}.rs"));
    if file.exists() {
        files.push(file);
    }
    let dir = PathBuf::from(format!("src/{module}"));
    if dir.is_dir() {
        rust_files(&dir, &mut files);
    }
    files
}

/// Every top-level module a line of code names through `crate::` (comments skipped).
fn named_modules(line: &str, known: &[String]) -> Vec<String> {
    let code = line.trim_start();
    if code.starts_with("//") {
        return vec![];
    }
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c}`: the first word of each item (a group on one line).
            let group = &group[..group.find('}').unwrap_or(group.len())];
            found.extend(group.split(',').map(|item| ident(item.trim())));
        } else {
            found.push(ident(rest));
        }
    }
    found.retain(|m| known.contains(m));
    found
}

#[test]
fn every_import_points_down_the_documented_layers() {
    let modules = modules();
    let layers = documented_layers();
    let mut problems = Vec::new();
    for m in &modules {
        if !layers.contains_key(m) {
            problems.push(format!(
                "module `{m}` is missing from docs/ARCHITECTURE.md's layers"
            ));
        }
    }
    for m in layers.keys() {
        if !modules.contains(m) {
            problems.push(format!(
                "docs/ARCHITECTURE.md's layers name `{m}`, which lib.rs does not declare"
            ));
        }
    }
    for m in &modules {
        let Some(&own) = layers.get(m) else { continue };
        for file in files_of(m) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                for target in named_modules(line, &modules) {
                    if target == *m {
                        continue;
                    }
                    match layers.get(&target) {
                        Some(&t) if t < own => {}
                        _ => problems.push(format!(
                            "{}:{}: `{m}` uses `{target}`, which is not on a lower layer",
                            file.display(),
                            n + 1
                        )),
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_scan_sees_paths_groups_and_skips_comments() {
    let known: Vec<String> = ["spec", "data", "launch"].map(String::from).to_vec();
    assert_eq!(named_modules("use crate::spec::RunSpec;", &known), ["spec"]);
    assert_eq!(
        named_modules("use crate::{data::City, launch};", &known),
        ["data", "launch"]
    );
    assert_eq!(
        named_modules("    let x: crate::launch::LauncherConfig = y;", &known),
        ["launch"]
    );
    assert!(named_modules("/// see `crate::spec::RunSpec`", &known).is_empty());
    assert!(named_modules("use super::spec;", &known).is_empty());
}
