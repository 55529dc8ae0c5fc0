//! Helpers shared by the integration tests.
#![allow(dead_code)]

use opencarbon::backend::{self, Device, DeviceChoice};
use opencarbon::data::canonical::{CityManifest, GridInfo};
use opencarbon::data::synthetic::{generate, Preset, SynthConfig};
use opencarbon::data::City;

/// Options for running specs into `out` on the default CPU backend, quietly.
pub fn run_options(out: &std::path::Path) -> opencarbon::runner::RunOptions {
    opencarbon::runner::RunOptions {
        precision: Default::default(),
        device: DeviceChoice::Cpu,
        out: out.to_path_buf(),
        progress: false,
        force: false,
        tracking: None,
    }
}

/// A sweep as `opencarbon run` does it: every run, then the tables (and the record archive).
/// Returns what the runs did and the Markdown summary (the refusal's text when no table could
/// be written, e.g. every run failed).
pub fn sweep(
    experiment: &opencarbon::spec::Experiment,
    options: &opencarbon::runner::RunOptions,
    only: &[(String, String)],
) -> (opencarbon::launch::Tally, String) {
    let report = opencarbon::launch::run_sweep(experiment, options, only).unwrap();
    let md = match opencarbon::launch::write_tables(experiment, &options.out) {
        Ok(md) => md,
        Err(e) => format!("{e:#}"),
    };
    (report, md)
}

/// The default backend's CPU device.
pub fn device() -> Device {
    backend::device(&DeviceChoice::Cpu).expect("the default CPU backend")
}

/// A small synthetic city: 8×8 tiles of 32 px, 4 POI categories.
pub fn tiny_city(seed: u64) -> City {
    generate(&SynthConfig {
        preset: Preset::Monocentric,
        width: 8,
        height: 8,
        tile_side: 32,
        poi_categories: 4,
        seed,
        signal: Default::default(),
    })
    .expect("tiny synthetic city")
}

/// An empty manifest for `canonical::write` (it fills in what the city holds).
pub fn manifest() -> CityManifest {
    CityManifest {
        name: String::new(),
        description: None,
        grid: GridInfo::default(),
        images: None,
        poi: None,
        tabular: vec![],
        target: "emission".into(),
        provenance: None,
        licence: None,
    }
}

/// `OPENCARBON_REQUIRE_TOOLS=1` (scripts/test.sh sets it): a test whose external reader (Python
/// with its modules, Chromium) or real data is missing fails instead of skipping.
pub const REQUIRE_TOOLS: &str = "OPENCARBON_REQUIRE_TOOLS";

/// Whether missing readers and data fail the tests (`OPENCARBON_REQUIRE_TOOLS=1`).
pub fn tools_required() -> bool {
    std::env::var(REQUIRE_TOOLS).as_deref() == Ok("1")
}

/// The running test's name (libtest names each test's thread after it).
fn test_name() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_string(),
        _ => "<this test>".into(),
    }
}

/// What a test needs is missing (`why`; `how`: how to install or get it). Under
/// `OPENCARBON_REQUIRE_TOOLS=1` the test fails naming both; otherwise it prints one line,
/// `SKIPPED <test>: <why>`, to stderr (even when libtest captures output) and the caller
/// returns.
pub fn missing(why: &str, how: &str) {
    missing_unless(tools_required(), why, how)
}

/// A check this machine cannot make for want of a privilege, not of a tool (mounting a tmpfs
/// needs CAP_SYS_ADMIN, which CI containers usually lack): always the loud `SKIPPED` line, never
/// a failure, even under `OPENCARBON_REQUIRE_TOOLS=1`.
pub fn skipped(why: &str) {
    missing_unless(false, why, "")
}

fn missing_unless(required: bool, why: &str, how: &str) {
    let test = test_name();
    assert!(
        !required,
        "{test}: {why}; {REQUIRE_TOOLS}=1 requires it. {how}"
    );
    // Straight to the process's stderr, past libtest's capture: a passing test's output is
    // otherwise hidden, and a skip must show in a plain `cargo test`.
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {why}");
}

/// How to get the Python the read-back checks use.
const PYTHON_HOW: &str = "scripts/test.sh installs it into ~/.cache/opencarbon/venv-tools and \
     sets OPENCARBON_PYTHON; by hand: python3 -m venv V && V/bin/pip install tensorboard numpy mapie \
     pillow rasterio, then OPENCARBON_PYTHON=V/bin/python";

/// `OPENCARBON_PYTHON` when it names a Python that imports every one of `modules` (e.g.
/// `["tensorboard"]`; none: any Python); otherwise `missing` (a failure under the switch) and None.
pub fn python(modules: &[&str]) -> Option<String> {
    let Some(python) = std::env::var("OPENCARBON_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
    else {
        let needs = if modules.is_empty() {
            String::new()
        } else {
            format!(" (needs Python with {})", modules.join(", "))
        };
        missing(&format!("OPENCARBON_PYTHON unset{needs}"), PYTHON_HOW);
        return None;
    };
    let check: String = std::iter::once("import sys")
        .chain(modules.iter().copied())
        .collect::<Vec<_>>()
        .join("\nimport ");
    match std::process::Command::new(&python)
        .args(["-c", &check])
        .output()
    {
        Ok(out) if out.status.success() => Some(python),
        Ok(out) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().last().unwrap_or("").trim();
            missing(
                &format!(
                    "OPENCARBON_PYTHON={python} cannot import {} ({last})",
                    modules.join(", ")
                ),
                PYTHON_HOW,
            );
            None
        }
        Err(e) => {
            missing(
                &format!("OPENCARBON_PYTHON={python} does not run ({e})"),
                PYTHON_HOW,
            );
            None
        }
    }
}

/// Headless Chromium (`OPENCARBON_CHROMIUM`, default /usr/bin/chromium), or `missing` and None.
/// The former `OPENCARBON_REQUIRE_CHROMIUM=1` still requires it.
pub fn chromium() -> Option<String> {
    let chromium = std::env::var("OPENCARBON_CHROMIUM")
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "/usr/bin/chromium".into());
    if std::path::Path::new(&chromium).is_file() {
        return Some(chromium);
    }
    missing_unless(
        tools_required() || std::env::var("OPENCARBON_REQUIRE_CHROMIUM").as_deref() == Ok("1"),
        &format!("no chromium at {chromium}"),
        "scripts/test.sh installs Debian's `chromium` (apt-get install chromium); or set \
         OPENCARBON_CHROMIUM to a Chromium binary",
    );
    None
}

/// Runs headless Chromium with `args` until `done(&output)` holds, at most three times, and
/// panics with every attempt's exit status and stderr when it never does. Chromium itself
/// crashes now and then on a loaded machine (CI saw one exit with only crashpad's "no stack
/// mapping" on stderr); a rerun of the same page tells such a crash from a page that is wrong,
/// since a wrong page fails the caller's assertions on every attempt's output. Shared memory
/// goes through /tmp (`--disable-dev-shm-usage`): Debian's wrapper decides that from `findmnt`,
/// which fails where /dev/shm is mounted twice.
pub fn run_chromium(
    chromium: &str,
    args: &[String],
    done: impl Fn(&std::process::Output) -> bool,
) -> std::process::Output {
    let mut attempts = Vec::new();
    for _ in 0..3 {
        let out = std::process::Command::new(chromium)
            .args([
                "--disable-dev-shm-usage",
                "--disable-crash-reporter",
                "--disable-breakpad",
            ])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{chromium} does not start: {e}"));
        if done(&out) {
            return out;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        attempts.push(format!(
            "{}:\n{}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    panic!("chromium failed three times:\n{}", attempts.join("\n---\n"));
}

/// The real data root: `OPENCARBON_DATA` (relative to the repository root), default
/// `../shared/data` beside the repository, as `opencarbon::data::root` reads specs' paths.
pub fn shared_data_root() -> std::path::PathBuf {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = std::path::Path::new(opencarbon::data::root::DEFAULT_ROOT);
    repo.join(opencarbon::data::root::resolve(root))
}

/// The real data root (`shared_data_root`) when it is there; otherwise `missing` and None.
pub fn shared_data() -> Option<std::path::PathBuf> {
    shared_data_file("")
}

/// A file or folder `rel` under the real data root (e.g. `odiac-tiles/labels/Beijing.csv`) when
/// it is there; otherwise `missing` (a failure under the switch) and None.
pub fn shared_data_file(rel: &str) -> Option<std::path::PathBuf> {
    let root = shared_data_root();
    let path = if rel.is_empty() { root } else { root.join(rel) };
    if path.exists() {
        return Some(path);
    }
    let setting = match std::env::var_os(opencarbon::data::root::ENV) {
        Some(v) => format!("OPENCARBON_DATA={}", v.to_string_lossy()),
        None => "OPENCARBON_DATA unset: ../shared/data beside the repository".into(),
    };
    missing(
        &format!("no real data at {} ({setting})", path.display()),
        "the real extracts are not in the repository: get the data folder (its sources: \
         ../shared/data/README.md; README.md's data section lists the files with their SHA-256) \
         and set OPENCARBON_DATA=/path/to/data",
    );
    None
}

/// The pid of a process that has exited (and been reaped): the writer of a scratch file left
/// behind by a kill.
pub fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}
