//! Records dependency versions for run metadata and, with `--features tch`, bakes libtorch's
//! library folder into the binary's rpath so that neither `cargo run` nor `cargo test` needs
//! `LD_LIBRARY_PATH` (`[env]` in `.cargo/config.toml` does not reach the test harness).
use std::{env, fs};

fn main() {
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
