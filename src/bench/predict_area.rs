//! `opencarbon bench --predict-area WxH`: mapping a large area with `opencarbon predict`, the whole
//! area at once against chunk by chunk, each in a process of its own so that its peak resident
//! memory is its own (`wait4`'s `ru_maxrss`). The area is a synthetic canonical city, reused
//! between benchmark runs; the model is the full network trained for one epoch on a small city
//! with the same inputs (the weights do not change the cost of a forward pass).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::table::Table;
use crate::backend::DeviceChoice;
use crate::data::synthetic::{self, Preset, SynthConfig};
use crate::runner::{self, RunOptions, RunOutcome};
use crate::spec::RunSpec;

pub struct Config {
    pub width: usize,
    pub height: usize,
    pub side: usize,
    pub poi_categories: usize,
    /// Chunk side of the chunked mode.
    pub chunk: usize,
    /// Tiles per forward pass.
    pub batch: usize,
    pub work: PathBuf,
    pub device: DeviceChoice,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `whole` (--chunk 0) or `chunked`.
    pub mode: String,
    pub chunk: usize,
    pub tiles: usize,
    pub side: usize,
    pub poi_categories: usize,
    pub device: String,
    pub wall_seconds: f64,
    pub tiles_per_s: f64,
    /// Peak resident memory of the `predict` process.
    pub peak_rss_mib: f64,
    /// Largest difference of a tile's prediction from the whole-area mode's (0 for that mode).
    pub max_abs_diff: f64,
}

pub fn run(config: &Config) -> Result<Vec<Row>> {
    if config.width * config.height == 0 || config.chunk == 0 {
        bail!("--predict-area needs a non-empty area and --chunk ≥ 1");
    }
    std::fs::create_dir_all(&config.work)
        .with_context(|| format!("creating {}", config.work.display()))?;
    let area = area_city(config)?;
    let model = trained_model(config)?;
    let exe = std::env::current_exe().context("locating the opencarbon binary")?;
    let mut rows: Vec<Row> = Vec::new();
    let mut whole: Option<Vec<(String, f64)>> = None;
    for (mode, chunk) in [("whole", 0), ("chunked", config.chunk)] {
        let out = config.work.join(format!("out-{mode}"));
        let _ = std::fs::remove_dir_all(&out);
        let args = [
            "predict".to_string(),
            "--run".into(),
            model.display().to_string(),
            "--city".into(),
            area.display().to_string(),
            "--out".into(),
            out.display().to_string(),
            "--chunk".into(),
            chunk.to_string(),
            "--batch".into(),
            config.batch.to_string(),
            "--device".into(),
            config.device.to_string(),
        ];
        eprintln!("bench: opencarbon {}", args.join(" "));
        let (seconds, peak_kib) = measure(&exe, &args)?;
        let predicted = read_predictions(&out.join("predictions.csv"))?;
        let max_abs_diff = match &whole {
            None => 0.0,
            Some(reference) => compare(reference, &predicted)?,
        };
        let tiles = predicted.len();
        rows.push(Row {
            mode: mode.into(),
            chunk,
            tiles,
            side: config.side,
            poi_categories: config.poi_categories,
            device: config.device.to_string(),
            wall_seconds: seconds,
            tiles_per_s: tiles as f64 / seconds,
            peak_rss_mib: peak_kib as f64 / 1024.0,
            max_abs_diff,
        });
        whole.get_or_insert(predicted);
    }
    Ok(rows)
}

/// The synthetic area as a canonical directory, generated once per size.
fn area_city(config: &Config) -> Result<PathBuf> {
    let dir = config.work.join(format!(
        "area-{}x{}-{}px-{}poi",
        config.width, config.height, config.side, config.poi_categories
    ));
    if dir.join("city.yaml").is_file() && dir.join("tiles.csv").is_file() {
        return Ok(dir);
    }
    let synth = SynthConfig {
        preset: Preset::Polycentric,
        width: config.width,
        height: config.height,
        tile_side: config.side,
        poi_categories: config.poi_categories,
        seed: 11,
        signal: Default::default(),
    };
    let started = Instant::now();
    eprintln!(
        "bench: generating a {}×{} synthetic area at {} px into {}",
        config.width,
        config.height,
        config.side,
        dir.display()
    );
    let city = synthetic::generate(&synth)?;
    // Written under a scratch name and renamed, so a killed generation is not reused.
    let scratch = config.work.join("area.partial");
    let _ = std::fs::remove_dir_all(&scratch);
    synthetic::write_canonical(&city, &synth, &scratch)?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&scratch, &dir)?;
    eprintln!(
        "bench: {} tiles in {:.1} s",
        city.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(dir)
}

/// A finished run of the full network (one epoch, 10×10 tiles) with the area's inputs.
fn trained_model(config: &Config) -> Result<PathBuf> {
    let text = format!(
        "name: bench-predict-area\nseed: 1\n\
         dataset: {{kind: synthetic, preset: monocentric, width: 10, height: 10, tile_side: {}, poi_categories: {}, seed: 3}}\n\
         train: {{epochs: 1, batch_size: 16, validate_every: 1, standardize_target: true}}\n",
        config.side, config.poi_categories
    );
    let spec = RunSpec::parse(&text, "bench-predict-area.yaml", &[])?;
    let options = RunOptions {
        device: config.device.clone(),
        out: config.work.join("model"),
        progress: false,
        force: false,
        precision: Default::default(),
        tracking: None,
    };
    let (dir, outcome) = runner::run(&spec, &options)?;
    match outcome {
        RunOutcome::Done(_) | RunOutcome::Skipped(_) => Ok(dir),
        RunOutcome::Busy(who) => bail!("the benchmark's model run is held by {who}"),
    }
}

/// Runs `exe args` to the end: wall seconds and the child's peak resident memory in KiB.
#[cfg(unix)]
fn measure(exe: &Path, args: &[String]) -> Result<(f64, i64)> {
    let started = Instant::now();
    let child = std::process::Command::new(exe)
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let mut status = 0;
    // SAFETY: wait4 on our own child's pid with valid pointers; it reaps the child, so the
    // `Child` handle is not waited on again.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    if pid < 0 {
        bail!(
            "waiting for {}: {}",
            exe.display(),
            std::io::Error::last_os_error()
        );
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!(
            "`opencarbon {}` failed (wait status {status})",
            args.join(" ")
        );
    }
    Ok((seconds, usage.ru_maxrss))
}

#[cfg(not(unix))]
fn measure(_exe: &Path, _args: &[String]) -> Result<(f64, i64)> {
    bail!("--predict-area measures child processes with wait4, which needs a Unix")
}

/// `x,y` and `predicted_ln` of each row of a `predictions.csv`, sorted by tile.
fn read_predictions(path: &Path) -> Result<Vec<(String, f64)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("{}: no `{name}` column", path.display()))
    };
    let (x, y, p) = (col("x")?, col("y")?, col("predicted_ln")?);
    let mut rows = lines
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let value = f
                .get(p)
                .and_then(|v| v.parse::<f64>().ok())
                .with_context(|| format!("{}: bad row `{line}`", path.display()))?;
            Ok((format!("{},{}", f[x], f[y]), value))
        })
        .collect::<Result<Vec<_>>>()?;
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(rows)
}

fn compare(a: &[(String, f64)], b: &[(String, f64)]) -> Result<f64> {
    if a.len() != b.len() || a.iter().zip(b).any(|(u, v)| u.0 != v.0) {
        bail!("the chunked prediction does not cover the same tiles as the whole-area one");
    }
    Ok(a.iter()
        .zip(b)
        .map(|(u, v)| (u.1 - v.1).abs())
        .fold(0.0, f64::max))
}

/// The rows as plain text in aligned columns.
pub fn table(rows: &[Row]) -> String {
    let mut table = Table::new(&[
        "mode",
        "chunk",
        "tiles",
        "side",
        "poi",
        "device",
        "wall s",
        "tiles/s",
        "peak RSS MiB",
        "max |Δ| vs whole",
    ])
    .right([1, 2, 3, 4, 6, 7, 8]);
    for r in rows {
        table.row(vec![
            r.mode.clone(),
            r.chunk.to_string(),
            r.tiles.to_string(),
            r.side.to_string(),
            r.poi_categories.to_string(),
            r.device.clone(),
            format!("{:.1}", r.wall_seconds),
            format!("{:.1}", r.tiles_per_s),
            format!("{:.1}", r.peak_rss_mib),
            format!("{:.2e}", r.max_abs_diff),
        ]);
    }
    table.text()
}
