//! `opencarbon bench --compare-cpu`: the same network, city size and settings trained on CPU by
//! this binary's backend (in process), by a libtorch build of opencarbon (`--tch-binary`, its own
//! process) and by the PyTorch reference (`tools/bench/pytorch_reference.py`), each on both data
//! paths, in one table with each epoch's time as a multiple of PyTorch's on the same path.
//!
//! The data paths: *ours* encodes each distinct tile of a batch once (PyTorch's `efficient`);
//! *authors* encodes the 9·B window tiles in nine per-position chunks with tile-0 neighbours, as
//! `main_contrastive.py` does (PyTorch's `authors`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::table::Table;
use super::{BenchConfig, BenchRow, DataPath};
use crate::backend::DeviceChoice;

/// Where the other two programs are.
#[derive(Debug, Clone)]
pub struct Others {
    /// An opencarbon binary built with `--features tch`; skipped (and said so) when None.
    pub tch_binary: Option<PathBuf>,
    /// A Python with torch (scripts/setup-libtorch.sh makes one).
    pub torch_python: PathBuf,
    /// tools/bench/pytorch_reference.py
    pub reference: PathBuf,
}

impl Others {
    /// Fails before anything is measured when one of the programs cannot run.
    fn check(&self) -> Result<()> {
        if !self.reference.is_file() {
            bail!(
                "the PyTorch reference {} is missing (run bench from the repository root, or pass --reference)",
                self.reference.display()
            );
        }
        let imports = Command::new(&self.torch_python)
            .args(["-c", "import torch, numpy"])
            .output()
            .with_context(|| format!("running --torch-python {}", self.torch_python.display()))?;
        if !imports.status.success() {
            bail!(
                "--torch-python {} cannot import torch and numpy (scripts/setup-libtorch.sh makes a venv with torch): {}",
                self.torch_python.display(),
                String::from_utf8_lossy(&imports.stderr).trim().lines().last().unwrap_or("")
            );
        }
        if let Some(bin) = &self.tch_binary {
            if !bin.is_file() {
                bail!("--tch-binary {} does not exist", bin.display());
            }
        }
        Ok(())
    }
}

/// One program on one data path.
#[derive(Debug, Clone, Serialize)]
pub struct CpuRow {
    pub program: String,
    pub path: DataPath,
    pub tiles: usize,
    pub side: usize,
    pub batch: usize,
    /// Training samples per second after warm-up.
    pub train_tiles_per_s: f64,
    /// Seconds per epoch at 60 % of the tiles as training samples.
    pub epoch_seconds: f64,
    pub inference_tiles_per_s: f64,
    /// `epoch_seconds` over PyTorch's on the same path (None when PyTorch was not measured).
    pub epoch_vs_pytorch: Option<f64>,
}

/// The reference's JSON line (the fields used here).
#[derive(Deserialize)]
struct ReferenceLine {
    framework: String,
    path: String,
    tiles: usize,
    train_tiles_per_s: f64,
    inference_tiles_per_s: f64,
}

/// Measures the three programs one after another (never at once: they would share the cores).
pub fn compare(config: &BenchConfig, others: &Others) -> Result<Vec<CpuRow>> {
    others.check()?;
    let mut rows: Vec<CpuRow> = super::run(config, &DeviceChoice::Cpu)?
        .iter()
        .map(|r| from_bench_row(r, "opencarbon"))
        .collect();
    // One epoch's samples, for every program: this city's training split (the reference's random
    // tiles have no water, so its own 60 % would be a few more).
    let epoch_samples = (rows[0].epoch_seconds * rows[0].train_tiles_per_s).round();
    match &others.tch_binary {
        Some(bin) => rows.extend(tch_rows(bin, config)?),
        None => eprintln!(
            "bench: no --tch-binary, so libtorch CPU is not measured (scripts/bench-cpu.sh builds one)"
        ),
    }
    let reference = reference_rows(others, config)?;
    for r in &reference {
        rows.push(CpuRow {
            program: r.framework.clone(),
            path: match r.path.as_str() {
                "efficient" => DataPath::Ours,
                _ => DataPath::Authors,
            },
            tiles: r.tiles,
            side: config.side,
            batch: config.batch,
            train_tiles_per_s: r.train_tiles_per_s,
            epoch_seconds: epoch_samples / r.train_tiles_per_s,
            inference_tiles_per_s: r.inference_tiles_per_s,
            epoch_vs_pytorch: Some(1.0),
        });
    }
    let pytorch = |path: DataPath| {
        rows.iter()
            .find(|r| r.path == path && r.program.starts_with("pytorch"))
            .map(|r| r.epoch_seconds)
    };
    let ratios: Vec<Option<f64>> = rows
        .iter()
        .map(|r| pytorch(r.path).map(|p| r.epoch_seconds / p))
        .collect();
    for (row, ratio) in rows.iter_mut().zip(ratios) {
        row.epoch_vs_pytorch = ratio;
    }
    Ok(rows)
}

fn from_bench_row(r: &BenchRow, program: &str) -> CpuRow {
    CpuRow {
        program: format!("{program} ({})", r.backend),
        path: r.path,
        tiles: r.tiles,
        side: r.side,
        batch: r.batch,
        train_tiles_per_s: r.train_tiles_per_s,
        epoch_seconds: r.epoch_seconds,
        inference_tiles_per_s: r.inference_tiles_per_s,
        epoch_vs_pytorch: None,
    }
}

/// The bench arguments both subprocesses share.
fn size_args(config: &BenchConfig) -> Vec<String> {
    [
        ("--tiles", config.tiles),
        ("--side", config.side),
        ("--batch", config.batch),
        ("--warmup", config.warmup),
        ("--steps", config.steps),
    ]
    .iter()
    .flat_map(|(k, v)| [k.to_string(), v.to_string()])
    .collect()
}

fn tch_rows(bin: &Path, config: &BenchConfig) -> Result<Vec<CpuRow>> {
    let json =
        std::env::temp_dir().join(format!("opencarbon-bench-tch.{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&json);
    let mut args = size_args(config);
    args.extend(
        [
            "--poi-categories",
            &config.poi_categories.to_string(),
            "--device",
            "cpu",
            "--path",
            match config.paths.as_slice() {
                [DataPath::Ours] => "ours",
                [DataPath::Authors] => "authors",
                _ => "both",
            },
            "--json",
        ]
        .map(String::from),
    );
    args.push(json.display().to_string());
    let output = Command::new(bin)
        .arg("bench")
        .args(&args)
        .output()
        .with_context(|| format!("running --tch-binary {}", bin.display()))?;
    if !output.status.success() {
        bail!(
            "--tch-binary {} bench failed ({}): {}",
            bin.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text =
        std::fs::read_to_string(&json).with_context(|| format!("reading {}", json.display()))?;
    let _ = std::fs::remove_file(&json);
    let rows: Vec<BenchRow> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing the rows of --tch-binary {}", bin.display()))?;
    if rows.iter().any(|r| !r.backend.starts_with("libtorch")) {
        bail!(
            "--tch-binary {} is not a libtorch build (it benched `{}`); build it with --features tch",
            bin.display(),
            rows[0].backend
        );
    }
    Ok(rows
        .iter()
        .map(|r| from_bench_row(r, "opencarbon"))
        .collect())
}

fn reference_rows(others: &Others, config: &BenchConfig) -> Result<Vec<ReferenceLine>> {
    let mut args = size_args(config);
    args.extend(
        [
            "--poi",
            &config.poi_categories.to_string(),
            "--device",
            "cpu",
            "--paths",
            &config
                .paths
                .iter()
                .map(|p| match p {
                    DataPath::Ours => "efficient",
                    DataPath::Authors => "authors",
                })
                .collect::<Vec<_>>()
                .join(","),
        ]
        .map(String::from),
    );
    let output = Command::new(&others.torch_python)
        .arg(&others.reference)
        .args(&args)
        .output()
        .with_context(|| {
            format!(
                "running --torch-python {} (scripts/setup-libtorch.sh makes a venv with torch)",
                others.torch_python.display()
            )
        })?;
    if !output.status.success() {
        bail!(
            "{} {} failed ({}): {}",
            others.torch_python.display(),
            others.reference.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            serde_json::from_str(l).with_context(|| format!("parsing the reference's row `{l}`"))
        })
        .collect()
}

/// The line above the table: the CPU it was measured on (the gap to PyTorch depends on whether
/// PyTorch's oneDNN has AVX-512 there), the threads, the build and the time.
pub fn machine_line() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| crate::track::meta::cpuinfo_field(&info, name);
    let model = field("model name").unwrap_or_else(|| "unknown CPU".into());
    let id = match (field("cpu family"), field("model")) {
        (Some(family), Some(number)) => format!(" (family {family}, model {number})"),
        _ => String::new(),
    };
    let avx512 = field("flags").map(|flags| {
        if flags.split_whitespace().any(|f| f == "avx512f") {
            ", AVX-512"
        } else {
            ", no AVX-512"
        }
    });
    let (commit, dirty) = crate::track::meta::build_state();
    format!(
        "CPU: {model}{id}{}; {} threads; opencarbon {}{}; {}\n",
        avx512.unwrap_or(""),
        rayon::current_num_threads(),
        commit
            .as_deref()
            .map_or("(unknown build)", |c| &c[..c.len().min(12)]),
        if dirty == Some(true) {
            " (uncommitted changes)"
        } else {
            ""
        },
        crate::track::meta::now()
    )
}

/// A Markdown table of the comparison.
pub fn table(rows: &[CpuRow]) -> String {
    let mut table = Table::new(&[
        "program",
        "path",
        "tiles",
        "side",
        "batch",
        "train samples/s",
        "s/epoch",
        "epoch ÷ PyTorch",
        "inference tiles/s",
    ]);
    for r in rows {
        table.row(vec![
            r.program.clone(),
            match r.path {
                DataPath::Ours => "ours (distinct tiles)",
                DataPath::Authors => "authors (9 chunks, tile 0)",
            }
            .into(),
            r.tiles.to_string(),
            r.side.to_string(),
            r.batch.to_string(),
            format!("{:.1}", r.train_tiles_per_s),
            format!("{:.2}", r.epoch_seconds),
            r.epoch_vs_pytorch
                .map_or("–".into(), |x| format!("{x:.2}×")),
            format!("{:.0}", r.inference_tiles_per_s),
        ]);
    }
    table.markdown()
}
