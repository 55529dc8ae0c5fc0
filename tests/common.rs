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
