//! The flex and tch builds share one target dir and, apart from burn's backend crates and this
//! crate, the same compiled dependencies. A feature one build turns on in a shared crate and the
//! other does not gives that crate two hashes, and everything above it (polars, burn) is compiled
//! twice: burn-flex's `x86-v4` once did this to bytemuck, and the tch build took 20 minutes more
//! of every cold CI run. `Cargo.toml` asks for the union; this test keeps it the union.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// Package ("name vX.Y.Z") → the feature sets it is built with (a host build for build scripts
/// and proc macros may add a second set), from `cargo tree` with the given feature arguments.
fn feature_sets(feature_args: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .args(["tree", "--locked", "--offline", "--prefix", "none"])
        .args(["-e", "normal,build", "-f", "{p} [{f}]"])
        .args(feature_args)
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree {feature_args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut sets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (Some(open), Some(close)) = (line.rfind(" ["), line.rfind(']')) else {
            continue;
        };
        let package = line[..open].trim_end_matches(" (*)").to_string();
        sets.entry(package)
            .or_default()
            .insert(line[open + 2..close].to_string());
    }
    sets
}

#[test]
fn flex_and_tch_builds_share_their_dependencies() {
    let flex = feature_sets(&[]);
    let tch = feature_sets(&["--no-default-features", "--features", "tch"]);
    assert!(
        flex.keys().any(|p| p.starts_with("polars ")),
        "no polars in {flex:?}"
    );
    let mut split = Vec::new();
    for (package, flex_sets) in &flex {
        let Some(tch_sets) = tch.get(package) else {
            continue;
        };
        // burn's facade crates carry the backend feature, and this crate its own.
        if package.starts_with("burn") || package.starts_with("opencarbon ") {
            continue;
        }
        if !flex_sets.is_subset(tch_sets) && !tch_sets.is_subset(flex_sets) {
            split.push(format!("{package}: flex {flex_sets:?}, tch {tch_sets:?}"));
        }
    }
    assert!(
        split.is_empty(),
        "these shared dependencies are built with other features in the flex and tch builds, so \
         everything above them compiles twice; add the union to Cargo.toml's shared \
         dependencies:\n{}",
        split.join("\n")
    );
}
