//! `opencarbon bench`: training and whole-city inference throughput and peak memory of the full
//! network on a synthetic city, for our data path and for the authors' (float32 tiles gathered
//! on the host per batch, encoders run once per window position).

pub mod cli;
pub mod cpu;
pub mod predict_area;
pub mod resnet18;
mod table;
pub mod trace;

use std::time::Instant;

use anyhow::Result;
use burn::module::Module;
use burn::tensor::Tensor;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use table::Table;

use crate::backend::{self, Device, DeviceChoice};
use crate::checked::Params;
use crate::data::batch::host_float32_batch;
use crate::data::synthetic::{generate, Preset, SynthConfig};
use crate::data::{BatchPlan, City, Split, SplitConfig};
use crate::model::config::{EncoderBatching, MissingNeighbour};
use crate::model::{ModelConfig, OpenCarbon};
use crate::train::adam::Adam;
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

/// Measures each of `config.paths` on one synthetic city: a row per path.
pub fn run(config: &BenchConfig, choice: &DeviceChoice) -> Result<Vec<BenchRow>> {
    let bench = Bench::new(config, choice)?;
    config
        .paths
        .iter()
        .map(|&path| bench.measure(path))
        .collect()
}

/// What every measured path shares: the device, the synthetic city, its split and the training
/// settings.
struct Bench<'a> {
    config: &'a BenchConfig,
    choice: &'a DeviceChoice,
    device: Device,
    city: City,
    split: Split,
    train: TrainConfig,
}

impl<'a> Bench<'a> {
    /// Generates the monocentric city (a near-square grid of about `config.tiles` tiles) and its
    /// default split.
    fn new(config: &'a BenchConfig, choice: &'a DeviceChoice) -> Result<Self> {
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
        Ok(Self {
            config,
            choice,
            device,
            city,
            split,
            train,
        })
    }

    /// One path's row: a fresh network trained for the timed steps (profiled after them with
    /// `--profile`), then whole-city inference with it.
    fn measure(&self, path: DataPath) -> Result<BenchRow> {
        let config = self.config;
        let model_config = model_config(path).checked()?;
        backend::reset_device_memory_peak(self.choice);
        let autodiff = self.device.clone().autodiff();
        let data = Prepared::new(
            &self.city,
            &self.split,
            &model_config,
            &self.train,
            &self.device,
        );
        let model = model_config.init_seeded(&self.city.shapes(), &autodiff, 0)?;
        let mut stepper = Stepper {
            path,
            optim: optimizer(&self.train),
            data: &data,
            train: &self.train,
            autodiff: &autodiff,
            missing_neighbour: model_config.missing_neighbour,
            encodes: 0,
        };
        let batches = self.batches()?;
        let (model, train_seconds) = self.time_training(&mut stepper, model, &batches)?;
        let encodes = stepper.encodes;
        let model = self.profile(&mut stepper, model, &batches, path)?;
        let samples = self.city.samples();
        let eval = model.valid();
        // One untimed pass (the first meets empty caches and buffers of a new size), then the
        // median of a few: one pass of a small city is a tenth of a second, well within noise.
        self.time_inference(path, &eval, &data, &samples);
        let mut passes: Vec<f64> = (0..INFERENCE_PASSES)
            .map(|_| self.time_inference(path, &eval, &data, &samples))
            .collect();
        passes.sort_by(f64::total_cmp);
        let inference_seconds = passes[INFERENCE_PASSES / 2];
        let train_tiles_per_s = (config.steps * config.batch) as f64 / train_seconds;
        Ok(BenchRow {
            backend: backend::backend_name(self.choice).into(),
            device: self.choice.to_string(),
            kernels: backend::kernel_routes(self.choice),
            adam: stepper.optim.kind().into(),
            precision: config.precision,
            path,
            tiles: self.city.len(),
            side: config.side,
            poi_categories: config.poi_categories,
            batch: config.batch,
            train_steps: config.steps,
            train_tiles_per_s,
            encodes_per_step: encodes as f64 / config.steps as f64,
            inference_tiles_per_s: samples.len() as f64 / inference_seconds,
            epoch_seconds: self.split.train.len() as f64 / train_tiles_per_s,
            peak_host_mib: peak_host_mib(),
            peak_device: backend::device_memory_peak(self.choice),
        })
    }

    /// The training tiles shuffled (seed 0) into full batches; an error when not one fills.
    fn batches(&self) -> Result<Vec<Vec<usize>>> {
        let batch = self.config.batch;
        let mut order = self.split.train.clone();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(0));
        let batches: Vec<Vec<usize>> = order
            .chunks(batch)
            .filter(|b| b.len() == batch)
            .map(<[usize]>::to_vec)
            .collect();
        if batches.is_empty() {
            anyhow::bail!("bench: {} training tiles cannot fill one batch of {batch}; use more --tiles or a smaller --batch", order.len());
        }
        Ok(batches)
    }

    /// Runs the warm-up steps, then times the `--steps` steps after a device sync (their
    /// encodings alone counted): the trained model and the timed seconds.
    fn time_training(
        &self,
        stepper: &mut Stepper,
        mut model: OpenCarbon,
        batches: &[Vec<usize>],
    ) -> Result<(OpenCarbon, f64)> {
        let (warmup, steps) = (self.config.warmup, self.config.steps);
        let mut timed = Instant::now();
        for step in 0..warmup + steps {
            if step == warmup {
                self.device.sync().ok();
                timed = Instant::now();
                stepper.encodes = 0;
            }
            model = stepper.step(model, &batches[step % batches.len()])?;
        }
        Ok((model, timed.elapsed().as_secs_f64()))
    }

    /// With `--profile`, [`trace::PROFILED_STEPS`] more steps (on the batches after the timed
    /// ones) under libtorch's profiler, its trace and summary written to that folder.
    fn profile(
        &self,
        stepper: &mut Stepper,
        mut model: OpenCarbon,
        batches: &[Vec<usize>],
        path: DataPath,
    ) -> Result<OpenCarbon> {
        let Some(dir) = &self.config.profile else {
            return Ok(model);
        };
        let config = self.config;
        let name = format!(
            "bench_{}_{path:?}_b{}_s{}",
            self.choice.to_string().replace(':', ""),
            config.batch,
            config.side
        )
        .to_lowercase();
        let session = trace::Session::start(self.choice, dir, &name)?;
        for k in 0..trace::PROFILED_STEPS {
            let batch = &batches[(config.warmup + config.steps + k) % batches.len()];
            model = stepper.step(model, batch)?;
        }
        session.finish()?;
        Ok(model)
    }

    /// Seconds to predict `samples` in eval mode: on our path every tile encoded once
    /// ([`predict`]), on the authors' batch by batch from float32 tiles gathered on the host.
    fn time_inference(
        &self,
        path: DataPath,
        eval: &OpenCarbon,
        data: &Prepared,
        samples: &[usize],
    ) -> f64 {
        let started = Instant::now();
        match path {
            DataPath::Ours => {
                predict(eval, data, samples, 256);
            }
            DataPath::Authors => crate::backend::with_prepared_weights(|| {
                for chunk in samples.chunks(self.config.batch) {
                    let plan = BatchPlan::new(
                        chunk,
                        data.neighbours.as_ref(),
                        EncoderBatching::PerPosition,
                        MissingNeighbour::Tile0,
                    );
                    let out = eval.forward(
                        host_float32_batch(&self.city, &plan.tiles, &self.device, false),
                        &plan.layout(&self.device),
                    );
                    let _ = out.prediction.into_data();
                }
            }),
        }
        started.elapsed().as_secs_f64()
    }
}

/// Timed whole-city inference passes, after one untimed; the row reports their median
/// (tools/bench/pytorch_reference.py does the same).
const INFERENCE_PASSES: usize = 3;

/// The network of a data path: ours as configured by default, the authors' with per-position
/// encoder chunks and tile-0 neighbours.
fn model_config(path: DataPath) -> ModelConfig {
    match path {
        DataPath::Ours => ModelConfig::default(),
        DataPath::Authors => ModelConfig {
            encoder_batching: EncoderBatching::PerPosition,
            missing_neighbour: MissingNeighbour::Tile0,
            ..Default::default()
        },
    }
}

/// Training steps on one data path with its optimiser, counting the tile encodings they make.
struct Stepper<'a> {
    path: DataPath,
    optim: Adam,
    data: &'a Prepared<'a>,
    train: &'a TrainConfig,
    autodiff: &'a Device,
    missing_neighbour: MissingNeighbour,
    /// Tile encodings since the count was last reset.
    encodes: usize,
}

impl Stepper<'_> {
    /// One step on `batch`, its loss read back.
    fn step(&mut self, model: OpenCarbon, batch: &[usize]) -> Result<OpenCarbon> {
        let (model, l1) = match self.path {
            DataPath::Ours => {
                let (model, l1, _) = train_step(
                    model,
                    &mut self.optim,
                    self.data,
                    batch,
                    self.train,
                    true,
                    self.autodiff,
                )?;
                self.encodes += BatchPlan::new(
                    batch,
                    self.data.neighbours.as_ref(),
                    EncoderBatching::Distinct,
                    self.missing_neighbour,
                )
                .tiles
                .len();
                (model, l1)
            }
            DataPath::Authors => authors_step(
                model,
                &mut self.optim,
                self.data,
                batch,
                self.train,
                self.autodiff,
                &mut self.encodes,
            )?,
        };
        // Reading the loss synchronises the device, as the authors' script does with .item().
        let _ = l1.into_scalar::<f32>();
        Ok(model)
    }
}

fn authors_step(
    model: OpenCarbon,
    optim: &mut Adam,
    data: &Prepared,
    batch: &[usize],
    train: &TrainConfig,
    autodiff: &Device,
    encodes: &mut usize,
) -> Result<(OpenCarbon, Tensor<1>)> {
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
    let mut table = Table::new(&[
        "backend",
        "device",
        "kernels",
        "adam",
        "precision",
        "path",
        "tiles",
        "side",
        "batch",
        "train tiles/s",
        "encodes/step",
        "inference tiles/s",
        "s/epoch",
        "peak host MiB",
        "peak device MiB (allocated / reserved)",
    ]);
    for r in rows {
        table.row(vec![
            r.backend.clone(),
            r.device.clone(),
            r.kernels.clone(),
            r.adam.clone(),
            r.precision.to_string(),
            format!("{:?}", r.path),
            r.tiles.to_string(),
            r.side.to_string(),
            r.batch.to_string(),
            format!("{:.1}", r.train_tiles_per_s),
            format!("{:.0}", r.encodes_per_step),
            format!("{:.1}", r.inference_tiles_per_s),
            format!("{:.1}", r.epoch_seconds),
            format!("{:.0}", r.peak_host_mib),
            r.peak_device.map_or("–".into(), |m| {
                format!("{:.0} / {:.0}", m.peak_allocated_mib, m.peak_reserved_mib)
            }),
        ]);
    }
    table.markdown()
}
