//! Records dependency versions and the build's git commit for run metadata and, with
//! `--features tch`, bakes libtorch's library folder into the binary's rpath so that neither
//! `cargo run` nor `cargo test` needs `LD_LIBRARY_PATH` (`[env]` in `.cargo/config.toml` does not
//! reach the test harness).
use std::path::Path;
use std::process::Command;
use std::{env, fs};

fn main() {
    build_commit();
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = fs::read_to_string("Cargo.lock").unwrap_or_default();
    for (krate, var) in [
        ("burn", "OPENCARBON_BURN_VERSION"),
        ("polars", "OPENCARBON_POLARS_VERSION"),
        ("tensorboard-rs", "OPENCARBON_TENSORBOARD_RS_VERSION"),
        ("torch-sys", "OPENCARBON_TORCH_SYS_VERSION"),
    ] {
        println!(
            "cargo:rustc-env={var}={}",
            locked_version(&lock, krate).unwrap_or("unknown")
        );
    }

    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let lib = env::var("DEP_TCH_LIBTORCH_LIB").unwrap_or_default();
    if !lib.is_empty() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    println!("cargo:rustc-env=OPENCARBON_LIBTORCH_LIB={lib}");
}

fn locked_version<'a>(lock: &'a str, krate: &str) -> Option<&'a str> {
    let needle = format!("name = \"{krate}\"\nversion = \"");
    let start = lock.find(&needle)? + needle.len();
    let end = start + lock[start..].find('"')?;
    Some(&lock[start..end])
}

/// What the binary is built from: `OPENCARBON_BUILD_COMMIT` (HEAD) and `OPENCARBON_BUILD_DIRTY`
/// (whether the sources compiled in differ from it), both `unknown` outside a git checkout. A run
/// records these beside the commit of the directory it runs in, which may be another checkout.
fn build_commit() {
    // What is compiled in: the dirty flag looks at these only, and they are watched so that the
    // flag follows edits (Cargo.lock is watched above).
    const INPUTS: [&str; 6] = [
        "src",
        "vendor",
        "assets",
        "build.rs",
        "Cargo.toml",
        "Cargo.lock",
    ];
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"]);
    // `--no-optional-locks`: a plain `git status` may rewrite .git/index, which is watched below,
    // and a build script that touches what it watches reruns on every build.
    let dirty = commit.as_ref().and_then(|_| {
        let mut args = vec!["--no-optional-locks", "status", "--porcelain", "--"];
        args.extend(INPUTS);
        git(&args).map(|changes| (!changes.is_empty()).to_string())
    });
    println!(
        "cargo:rustc-env=OPENCARBON_BUILD_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    println!(
        "cargo:rustc-env=OPENCARBON_BUILD_DIRTY={}",
        dirty.as_deref().unwrap_or("unknown")
    );
    for input in &INPUTS[..5] {
        println!("cargo:rerun-if-changed={input}");
    }
    // HEAD moves on checkout, its branch's ref on commit, the index on staging. Only existing
    // files: cargo reruns a script on every build while a path it watches is missing.
    let mut refs = vec!["HEAD".to_string(), "index".into(), "packed-refs".into()];
    refs.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in refs {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}
