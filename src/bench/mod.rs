//! `opencarbon bench`: training and whole-city inference throughput and peak memory of the full
//! network on a synthetic city, for our data path and for the authors' (float32 tiles gathered
//! on the host per batch, encoders run once per window position).

pub mod cli;
pub mod cpu;
pub mod predict_area;
pub mod resnet18;
pub mod trace;

use std::time::Instant;

use anyhow::Result;
use burn::module::Module;
use burn::tensor::Tensor;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::backend::{self, DeviceChoice};
use crate::data::batch::host_float32_batch;
use crate::data::synthetic::{generate, Preset, SynthConfig};
use crate::data::{BatchPlan, SplitConfig};
use crate::model::config::{EncoderBatching, MissingNeighbour};
use crate::model::ModelConfig;
use crate::train::trainer::{optimizer, predict, step_on, train_step, Prepared};
use crate::train::TrainConfig;

#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Tiles of the synthetic city (a square grid of about this many).
    pub tiles: usize,
    pub side: usize,
    pub poi_categories: usize,
    pub batch: usize,
    pub warmup: usize,
    pub steps: usize,
    /// Which data paths to measure.
    pub paths: Vec<DataPath>,
    /// Already applied by the caller ([`backend::set_precision`]); recorded in the rows.
    pub precision: backend::Precision,
    /// Profile a few more training steps of each path with libtorch's profiler into this folder.
    pub profile: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataPath {
    /// Tile store on the device, each distinct tile of a batch encoded once, whole-city
    /// inference encoding every tile once.
    Ours,
    /// Float32 tiles gathered on the host and copied per batch, the encoders run in w² chunks,
    /// missing neighbours pointing at tile 0, inference batch by batch.
    Authors,
}

/// One measured path; also read back from another opencarbon binary's `--json` (`--compare-cpu`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct BenchRow {
    pub backend: String,
    pub device: String,
    /// Kernel routes of the libtorch backend ([`backend::kernel_routes`]) and the Adam update.
    pub kernels: String,
    pub adam: String,
    pub precision: backend::Precision,
    pub path: DataPath,
    pub tiles: usize,
    pub side: usize,
    pub poi_categories: usize,
    pub batch: usize,
    pub train_steps: usize,
    /// Centre samples per second in training, after warm-up.
    pub train_tiles_per_s: f64,
    /// Tile encodings per training step (distinct tiles, or 9·B on the authors' path).
    pub encodes_per_step: f64,
    /// Predicted tiles per second over the whole city, eval mode.
    pub inference_tiles_per_s: f64,
    /// Estimated seconds per epoch at 60 % of the tiles as training samples.
    pub epoch_seconds: f64,
    pub peak_host_mib: f64,
    /// The CUDA caching allocator's peaks over this path's training and inference (None off CUDA).
    pub peak_device: Option<backend::DeviceMemory>,
}

/// Peak resident memory of this process so far (Linux VmHWM).
pub fn peak_host_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

pub fn run(config: &BenchConfig, choice: &DeviceChoice) -> Result<Vec<BenchRow>> {
    let device = backend::device(choice)?;
    let width = (config.tiles as f64).sqrt().ceil() as usize;
    let height = config.tiles.div_ceil(width);
    let city = generate(&SynthConfig {
        preset: Preset::Monocentric,
        width,
        height,
        tile_side: config.side,
        poi_categories: config.poi_categories,
        seed: 1,
        signal: Default::default(),
    })?;
    let split = SplitConfig::default().split(&city, 0)?;
    let train = TrainConfig {
        batch_size: config.batch,
        alpha: 1e-3,
        ..Default::default()
    };
    let mut rows = Vec::new();
    for &path in &config.paths {
        let model_config = match path {
            DataPath::Ours => ModelConfig::default(),
            DataPath::Authors => ModelConfig {
                encoder_batching: EncoderBatching::PerPosition,
                missing_neighbour: MissingNeighbour::Tile0,
                ..Default::default()
            },
        };
        backend::reset_device_memory_peak(choice);
        let autodiff = device.clone().autodiff();
        let data = Prepared::new(&city, &split, &model_config, &train, &device);
        let mut model = model_config.init_seeded(&city.shapes(), &autodiff, 0)?;
        let mut optim = optimizer(&train);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut order = split.train.clone();
        order.shuffle(&mut rng);
        let batches: Vec<&[usize]> = order
            .chunks(config.batch)
            .filter(|b| b.len() == config.batch)
            .collect();
        if batches.is_empty() {
            anyhow::bail!("bench: {} training tiles cannot fill one batch of {}; use more --tiles or a smaller --batch", order.len(), config.batch);
        }
        let mut encodes = 0usize;
        let mut one_step = |model, batch: &[usize], encodes: &mut usize| match path {
            DataPath::Ours => {
                let (m, l1, _) =
                    train_step(model, &mut optim, &data, batch, &train, true, &autodiff)?;
                *encodes += BatchPlan::new(
                    batch,
                    data.neighbours.as_ref(),
                    EncoderBatching::Distinct,
                    model_config.missing_neighbour,
                )
                .tiles
                .len();
                Ok((m, l1))
            }
            DataPath::Authors => {
                authors_step(model, &mut optim, &data, batch, &train, &autodiff, encodes)
            }
        };
        let mut timed = Instant::now();
        for step in 0..config.warmup + config.steps {
            if step == config.warmup {
                device.sync().ok();
                timed = Instant::now();
                encodes = 0;
            }
            let (next, l1) = one_step(model, batches[step % batches.len()], &mut encodes)?;
            model = next;
            // Reading the loss synchronises the device, as the authors' script does with .item().
            let _ = l1.into_scalar::<f32>();
        }
        let train_seconds = timed.elapsed().as_secs_f64();
        let train_tiles_per_s = (config.steps * config.batch) as f64 / train_seconds;
        if let Some(dir) = &config.profile {
            let name = format!(
                "bench_{}_{path:?}_b{}_s{}",
                choice.to_string().replace(':', ""),
                config.batch,
                config.side
            )
            .to_lowercase();
            let session = trace::Session::start(choice, dir, &name)?;
            let mut ignored = 0;
            for k in 0..trace::PROFILED_STEPS {
                let batch = batches[(config.warmup + config.steps + k) % batches.len()];
                let (next, l1) = one_step(model, batch, &mut ignored)?;
                model = next;
                let _ = l1.into_scalar::<f32>();
            }
            session.finish()?;
        }
        drop(one_step);

        let eval = model.valid();
        let samples = city.samples();
        let started = Instant::now();
        match path {
            DataPath::Ours => {
                predict(&eval, &data, &samples, 256);
            }
            DataPath::Authors => {
                for chunk in samples.chunks(config.batch) {
                    let plan = BatchPlan::new(
                        chunk,
                        data.neighbours.as_ref(),
                        EncoderBatching::PerPosition,
                        MissingNeighbour::Tile0,
                    );
                    let out = eval.forward(
                        host_float32_batch(&city, &plan.tiles, &device, false),
                        &plan.layout(&device),
                    );
                    let _ = out.prediction.into_data();
                }
            }
        }
        let inference_seconds = started.elapsed().as_secs_f64();
        rows.push(BenchRow {
            backend: backend::backend_name(choice).into(),
            device: choice.to_string(),
            kernels: backend::kernel_routes(choice),
            adam: optim.kind().into(),
            precision: config.precision,
            path,
            tiles: city.len(),
            side: config.side,
            poi_categories: config.poi_categories,
            batch: config.batch,
            train_steps: config.steps,
            train_tiles_per_s,
            encodes_per_step: encodes as f64 / config.steps as f64,
            inference_tiles_per_s: samples.len() as f64 / inference_seconds,
            epoch_seconds: split.train.len() as f64 / train_tiles_per_s,
            peak_host_mib: peak_host_mib(),
            peak_device: backend::device_memory_peak(choice),
        });
    }
    Ok(rows)
}

fn authors_step(
    model: crate::model::OpenCarbon,
    optim: &mut crate::train::adam::Adam,
    data: &Prepared,
    batch: &[usize],
    train: &TrainConfig,
    autodiff: &crate::backend::Device,
    encodes: &mut usize,
) -> Result<(crate::model::OpenCarbon, Tensor<1>)> {
    let plan = BatchPlan::new(
        batch,
        data.neighbours.as_ref(),
        EncoderBatching::PerPosition,
        MissingNeighbour::Tile0,
    );
    *encodes += plan.tiles.len();
    let inputs = host_float32_batch(data.city, &plan.tiles, autodiff, true);
    let y: Vec<f32> = batch.iter().map(|&i| data.city.target(i) as f32).collect();
    let targets = Tensor::<1>::from_floats(y.as_slice(), autodiff);
    let (model, l1, _) = step_on(
        model,
        optim,
        inputs,
        &plan.layout(autodiff),
        targets,
        train,
        true,
    )?;
    Ok((model, l1))
}

/// A Markdown table of bench rows.
pub fn table(rows: &[BenchRow]) -> String {
    let mut out = String::from(
        "| backend | device | kernels | adam | precision | path | tiles | side | batch | train tiles/s | encodes/step | inference tiles/s | s/epoch | peak host MiB | peak device MiB (allocated / reserved) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let device_memory = r.peak_device.map_or("–".into(), |m| {
            format!("{:.0} / {:.0}", m.peak_allocated_mib, m.peak_reserved_mib)
        });
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:?} | {} | {} | {} | {:.1} | {:.0} | {:.1} | {:.1} | {:.0} | {} |\n",
            r.backend,
            r.device,
            r.kernels,
            r.adam,
            r.precision,
            r.path,
            r.tiles,
            r.side,
            r.batch,
            r.train_tiles_per_s,
            r.encodes_per_step,
            r.inference_tiles_per_s,
            r.epoch_seconds,
            r.peak_host_mib,
            device_memory
        ));
    }
    out
}
