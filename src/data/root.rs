//! Where the real data lives. Specs name the real extracts by the path they have beside the
//! repository, `../shared/data/…` (run ids hash that text); `OPENCARBON_DATA=/path/to/data`
//! relocates every such path to `/path/to/data/…` when a file is opened, without changing the
//! spec, its run id or the paths recorded in a run's `meta.json`.

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Result};

/// The data root the specs name, relative to the repository root (the working directory of
/// `opencarbon run`).
pub const DEFAULT_ROOT: &str = "../shared/data";

/// The environment variable that relocates `DEFAULT_ROOT`.
pub const ENV: &str = "OPENCARBON_DATA";

/// The file to open for a dataset path as a spec gives it: `../shared/data/<rest>` becomes
/// `$OPENCARBON_DATA/<rest>` when that variable is set (and not empty); any other path, or any
/// path with the variable unset, is returned unchanged.
pub fn resolve(path: &Path) -> PathBuf {
    resolve_with(path, std::env::var_os(ENV).as_deref())
}

/// `resolve` with the variable's value given (`None`: unset).
pub fn resolve_with(path: &Path, root: Option<&OsStr>) -> PathBuf {
    match (root.filter(|r| !r.is_empty()), under_default_root(path)) {
        (Some(root), Some(rest)) if rest.as_os_str().is_empty() => PathBuf::from(root),
        (Some(root), Some(rest)) => Path::new(root).join(rest),
        _ => path.to_path_buf(),
    }
}

/// The part of `path` below `DEFAULT_ROOT` (leading `./` ignored), or None when it is elsewhere.
fn under_default_root(path: &Path) -> Option<&Path> {
    let mut components = path.components();
    let rest = loop {
        let before = components.clone();
        match components.next() {
            Some(Component::CurDir) => continue,
            _ => break before.as_path(),
        }
    };
    rest.strip_prefix(DEFAULT_ROOT).ok()
}

/// `resolve`, and for a path under `DEFAULT_ROOT` that is not there, an error naming the spec's
/// path, the one looked at and how to point at the data. Other paths are returned resolved
/// (unchanged) whether or not they exist: their loaders name what is missing.
pub fn locate(path: &Path) -> Result<PathBuf> {
    locate_with(path, std::env::var_os(ENV).as_deref())
}

/// `locate` with the variable's value given (`None`: unset).
pub fn locate_with(path: &Path, root: Option<&OsStr>) -> Result<PathBuf> {
    let resolved = resolve_with(path, root);
    if under_default_root(path).is_none() || resolved.exists() {
        return Ok(resolved);
    }
    let hint = "the real data extracts: see ../shared/data/README.md for their sources";
    match root.filter(|r| !r.is_empty()) {
        Some(root) => bail!(
            "{}: no such file or directory at {} ({ENV}={} relocates {DEFAULT_ROOT}/; {hint})",
            path.display(),
            resolved.display(),
            Path::new(root).display()
        ),
        None => bail!(
            "{}: no such file or directory ({ENV} is unset; set {ENV}=/path/to/data to read \
             {DEFAULT_ROOT}/ from elsewhere; {hint})",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(path: &str, root: Option<&str>) -> PathBuf {
        resolve_with(Path::new(path), root.map(OsStr::new))
    }

    #[test]
    fn a_path_under_the_default_root_moves_to_the_setting() {
        assert_eq!(
            map(
                "../shared/data/odiac-tiles/labels/Beijing.csv",
                Some("/mnt/data")
            ),
            Path::new("/mnt/data/odiac-tiles/labels/Beijing.csv")
        );
        assert_eq!(
            map("./../shared/data/odiac-tiles", Some("rel/data")),
            Path::new("rel/data/odiac-tiles")
        );
        assert_eq!(
            map("../shared/data", Some("/mnt/data")),
            Path::new("/mnt/data")
        );
        assert_eq!(
            map("../shared/data/", Some("/mnt/data")),
            Path::new("/mnt/data")
        );
    }

    #[test]
    fn unset_or_empty_setting_and_other_paths_are_unchanged() {
        let beijing = "../shared/data/odiac-tiles/labels/Beijing.csv";
        assert_eq!(map(beijing, None), Path::new(beijing));
        assert_eq!(map(beijing, Some("")), Path::new(beijing));
        for other in [
            "datasets/beijing-odiac",
            "/abs/shared/data/x.csv",
            "../shared/database/x.csv",
            "../shared/data-old/x.csv",
            "shared/data/x.csv",
            "../../shared/data/x.csv",
        ] {
            assert_eq!(map(other, Some("/mnt/data")), Path::new(other), "{other}");
        }
    }

    #[test]
    fn a_missing_file_names_the_specs_path_and_the_resolved_one() {
        let spec = Path::new("../shared/data/odiac-tiles/labels/Nowhere.csv");
        let e = locate_with(spec, Some(OsStr::new("/nonexistent-data"))).unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("../shared/data/odiac-tiles/labels/Nowhere.csv")
                && e.contains("/nonexistent-data/odiac-tiles/labels/Nowhere.csv")
                && e.contains("OPENCARBON_DATA"),
            "{e}"
        );
        let e = format!("{:#}", locate_with(spec, None).unwrap_err());
        assert!(
            e.contains("Nowhere.csv") && e.contains("OPENCARBON_DATA is unset"),
            "{e}"
        );
        // Elsewhere, the loader reports a missing file itself.
        assert_eq!(
            locate_with(Path::new("datasets/nowhere"), Some(OsStr::new("/x"))).unwrap(),
            Path::new("datasets/nowhere")
        );
    }

    #[test]
    fn an_existing_relocated_file_is_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("odiac-tiles/labels")).unwrap();
        std::fs::write(dir.path().join("odiac-tiles/labels/A.csv"), "x").unwrap();
        let found = locate_with(
            Path::new("../shared/data/odiac-tiles/labels/A.csv"),
            Some(dir.path().as_os_str()),
        )
        .unwrap();
        assert_eq!(found, dir.path().join("odiac-tiles/labels/A.csv"));
    }
}
