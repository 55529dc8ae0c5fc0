//! The `opencarbon bench` subcommand: the network's training and inference throughput (default),
//! a ResNet-18 step (`--resnet18`), a profiler trace's summary (`--summarize`), or mapping a large
//! area whole against in chunks (`--predict-area`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::{predict_area, BenchConfig, DataPath};
use crate::backend::{self, DeviceChoice};

#[derive(clap::Args)]
pub struct BenchArgs {
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
    #[arg(long, default_value_t = 1024)]
    tiles: usize,
    #[arg(long, default_value_t = 256)]
    side: usize,
    #[arg(long, default_value_t = 15)]
    poi_categories: usize,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// ours, authors, or both
    #[arg(long, default_value = "both")]
    path: String,
    /// Append the rows as JSON lines to this file
    #[arg(long)]
    json: Option<PathBuf>,
    /// Instead, time a ResNet-18 training step (forward / backward / Adam, each synchronised)
    /// at these batch sizes, e.g. `32,128`, with --side² inputs and 1000 classes
    #[arg(long, value_delimiter = ',')]
    resnet18: Vec<usize>,
    /// Float32 arithmetic on CUDA: default, fp32 or tf32 (as for `run`)
    #[arg(long, default_value = "default")]
    precision: backend::Precision,
    /// Also record 3 more training steps with libtorch's profiler: a Chrome trace, its summary
    /// (JSON) and a table of the costliest operators and CUDA kernels, into this folder
    #[arg(long)]
    profile: Option<PathBuf>,
    /// Instead, summarise a Chrome trace of N steps (ours or the PyTorch reference's
    /// `--profile`), e.g. `--summarize trace.json --steps 3`
    #[arg(long)]
    summarize: Option<PathBuf>,
    /// Instead, map a synthetic area of WxH tiles (e.g. 320x320) at --side px and
    /// --poi-categories with `opencarbon predict`, whole and in --chunk chunks, each in its own
    /// process: wall time, tiles/s and peak RSS
    #[arg(long, value_name = "WxH")]
    predict_area: Option<String>,
    /// Chunk side for --predict-area
    #[arg(long, default_value_t = 128)]
    chunk: usize,
    /// Where --predict-area keeps its city, model and outputs (the city is reused when present)
    #[arg(long, default_value = "target/bench-predict-area")]
    work: PathBuf,
    /// Instead, compare CPU training and inference of this binary's backend, a libtorch build
    /// (--tch-binary) and the PyTorch reference (--torch-python), both data paths, one table
    /// (scripts/bench-cpu.sh builds and passes both)
    #[arg(long)]
    compare_cpu: bool,
    /// With --compare-cpu: an opencarbon binary built with `--features tch`
    #[arg(long, env = "OPENCARBON_TCH_BINARY")]
    tch_binary: Option<PathBuf>,
    /// With --compare-cpu: a Python with torch
    #[arg(long, env = "OPENCARBON_TORCH_PYTHON", default_value = "python3")]
    torch_python: PathBuf,
    /// With --compare-cpu: the PyTorch reference script
    #[arg(long, default_value = "tools/bench/pytorch_reference.py")]
    reference: PathBuf,
}

pub fn main(args: BenchArgs) -> Result<()> {
    let json = args.json.as_deref();
    if let Some(trace) = &args.summarize {
        let summary = super::trace::summarize(trace, args.steps)?;
        print!("{}", super::trace::table(&summary, 20));
        return append_json(json, &[summary]);
    }
    if let Some(size) = &args.predict_area {
        let (width, height) = crate::data::synthetic::parse_size(size)
            .with_context(|| format!("--predict-area {size}"))?;
        let rows = predict_area::run(&predict_area::Config {
            width,
            height,
            side: args.side,
            poi_categories: args.poi_categories,
            chunk: args.chunk,
            batch: args.batch,
            work: args.work.clone(),
            device: args.device.clone(),
        })?;
        print!("{}", predict_area::table(&rows));
        return append_json(json, &rows);
    }
    let device = &args.device;
    backend::set_precision(device, args.precision)?;
    if args.profile.is_some() {
        backend::check_profiler(device)?;
    }
    if !args.resnet18.is_empty() {
        let mut rows = Vec::new();
        for &b in &args.resnet18 {
            if b < 2 || args.steps == 0 {
                bail!("--resnet18 batches must be ≥ 2 and --steps ≥ 1");
            }
            rows.push(super::resnet18::run(
                device,
                b,
                args.side,
                args.warmup,
                args.steps,
                args.precision,
                args.profile.as_deref(),
            )?);
        }
        print!("{}", super::resnet18::table(&rows));
        return append_json(json, &rows);
    }
    let paths = match args.path.as_str() {
        "ours" => vec![DataPath::Ours],
        "authors" => vec![DataPath::Authors],
        "both" => vec![DataPath::Ours, DataPath::Authors],
        other => bail!("--path `{other}`: expected ours, authors or both"),
    };
    if args.batch < 2 || args.steps == 0 {
        bail!("--batch must be ≥ 2 and --steps ≥ 1");
    }
    let config = BenchConfig {
        tiles: args.tiles,
        side: args.side,
        poi_categories: args.poi_categories,
        batch: args.batch,
        warmup: args.warmup,
        steps: args.steps,
        paths,
        precision: args.precision,
        profile: args.profile.clone(),
    };
    if args.compare_cpu {
        if !matches!(device, DeviceChoice::Cpu) {
            bail!("--compare-cpu measures on the CPU: leave --device at cpu");
        }
        let rows = super::cpu::compare(
            &config,
            &super::cpu::Others {
                tch_binary: args.tch_binary.clone(),
                torch_python: args.torch_python.clone(),
                reference: args.reference.clone(),
            },
        )?;
        print!(
            "{}\n{}",
            super::cpu::machine_line(),
            super::cpu::table(&rows)
        );
        return append_json(json, &rows);
    }
    let rows = super::run(&config, device)?;
    print!("{}", super::table(&rows));
    append_json(json, &rows)
}

/// Appends `rows` as JSON lines to `path`, if given.
fn append_json<T: serde::Serialize>(path: Option<&std::path::Path>, rows: &[T]) -> Result<()> {
    let Some(path) = path else { return Ok(()) };
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    for row in rows {
        writeln!(f, "{}", serde_json::to_string(row)?)?;
    }
    Ok(())
}
