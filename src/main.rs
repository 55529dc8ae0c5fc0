use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use opencarbon::backend::{self, DeviceChoice};
use opencarbon::baselines::{self, BaselineKind, BaselineSpec};
use opencarbon::data::canonical;
use opencarbon::data::synthetic::{self, Preset, SynthConfig};
use opencarbon::data::{odiac, preview};
use opencarbon::spec::RunSpec;

#[derive(Parser)]
#[command(
    name = "opencarbon",
    version,
    about = "Reproduce and stress-test OpenCarbon carbon-emission prediction"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train and test the runs a spec describes; skips runs that are done.
    Run(opencarbon::launch::cli::RunArgs),
    /// Map every tile of an area (labelled or not) with trained runs: table, GeoTIFF, GeoJSON, PNG.
    Predict(opencarbon::predict::cli::PredictArgs),
    /// Package a finished run as a portable model bundle (weights, normalisation, spec, model card).
    ExportModel(opencarbon::predict::bundle::ExportArgs),
    /// Rebuild and print the summary tables of an experiment directory (results/<name>).
    Results(opencarbon::results::cli::ResultsArgs),
    /// Write an experiment's figures and pages: results/<name>/report/{index.html,report.md}.
    Report(opencarbon::report::cli::ReportArgs),
    /// Each run of an experiment directory: done, failed (why), running or pending; asks Slurm
    /// about submitted jobs.
    Status(opencarbon::launch::status::StatusArgs),
    /// Check that the quote blocks of README.md and docs/*.md hold what the committed results
    /// files they name say (exit non-zero naming each stale block); --write regenerates them.
    Docs(opencarbon::quote::DocsArgs),
    /// Send an experiment's runs to MLflow that could not be sent while they ran (server down,
    /// credentials refused), idempotently; then its report (docs/tracking.md).
    MlflowSync(MlflowSyncArgs),
    /// Report the backends, devices and libtorch installation, and what to fix.
    Doctor,
    /// Training and whole-city inference throughput and peak memory on a synthetic city; a
    /// ResNet-18 step; or mapping a large area whole against in chunks (--predict-area).
    Bench(opencarbon::bench::cli::BenchArgs),
    /// Score a non-neural baseline on a spec's city and split (test metrics, nothing written).
    Baseline {
        spec: PathBuf,
        #[arg(long, value_enum, default_value = "ridge")]
        kind: BaselineKind,
        /// Features for ridge / gbt (comma-separated; covariates or poi:<category> / poi:*)
        #[arg(long, default_value = "ln_population")]
        columns: String,
        #[arg(long, default_value_t = 0.0)]
        lambda: f64,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Create, import and look at cities.
    #[command(subcommand)]
    Datasets(DatasetsCommand),
}

#[derive(clap::Args)]
struct MlflowSyncArgs {
    /// Experiment directory (results/<name>)
    out: PathBuf,
    /// The tracking server (default: MLFLOW_TRACKING_URI, else the one each run was meant for)
    #[arg(long)]
    uri: Option<String>,
    /// The MLflow experiment (default: the one each run was meant for, else the spec's name)
    #[arg(long)]
    experiment: Option<String>,
    /// Every run, not only the unsynced ones (e.g. to fill another server)
    #[arg(long)]
    all: bool,
}

/// `opencarbon mlflow-sync`: exits non-zero when a run could not be sent.
fn mlflow_sync(args: MlflowSyncArgs) -> Result<()> {
    use opencarbon::track::mlflow;
    let options = mlflow::SyncOptions {
        uri: args.uri,
        experiment: args.experiment,
        all: args.all,
    };
    let identity = |dir: &std::path::Path| -> Result<(mlflow::RunIdentity, String)> {
        let path = dir.join("spec.resolved.yaml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let spec: RunSpec =
            serde_norway::from_str(&text).with_context(|| format!("{}", path.display()))?;
        let run_id = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| spec.run_id());
        Ok((
            mlflow::RunIdentity {
                run_id,
                label: spec.label(),
            },
            spec.name.clone(),
        ))
    };
    let s = mlflow::sync_experiment(&args.out, &options, &identity)?;
    println!(
        "mlflow-sync {}: {} synced, {} already synced, {} running elsewhere, {} failed",
        args.out.display(),
        s.synced,
        s.already,
        s.busy,
        s.failed.len()
    );
    if !s.failed.is_empty() {
        let ids: Vec<&str> = s.failed.iter().map(|(id, _)| id.as_str()).collect();
        anyhow::bail!(
            "{} run(s) not synced ({}); they stay marked and a later mlflow-sync sends them",
            ids.len(),
            ids.join(", ")
        );
    }
    Ok(())
}

#[derive(Subcommand)]
enum DatasetsCommand {
    /// Generate a synthetic city with a known ground truth as a canonical directory.
    Synth {
        #[arg(long, default_value = "monocentric")]
        preset: Preset,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Tiles across x down, e.g. 40x40
        #[arg(long, default_value = "16x16")]
        size: String,
        /// Pixels per tile side
        #[arg(long, default_value_t = 256)]
        tile_side: usize,
        #[arg(long, default_value_t = 15)]
        poi_categories: usize,
        #[arg(long)]
        out: PathBuf,
        /// Also write <out>/preview.png (images beside the emission map)
        #[arg(long)]
        preview: bool,
    },
    /// Turn an ODIAC labels table (odiac-tiles/labels/<City>.csv) into a canonical city.
    ImportOdiacTiles {
        labels: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Convert the original OpenCarbon release (Python pickles) into a canonical city.
    ImportOpencarbon {
        /// Folder with tile2poi_distribution_<city>.npy, til2carbon_<city>.npy, satellite_images_<city>/, splits
        src: PathBuf,
        #[arg(long)]
        city: String,
        #[arg(long)]
        out: PathBuf,
        /// Python with numpy and pillow
        #[arg(long, env = "OPENCARBON_PYTHON", default_value = "python3")]
        python: String,
    },
    /// Check a canonical city directory and print what it holds.
    Check { dir: PathBuf },
    /// Draw a city: satellite mosaic beside the ln(emission) map, as PNG.
    Preview {
        dir: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Pixels per tile in the picture
        #[arg(long, default_value_t = 16)]
        cell: usize,
    },
}

fn main() -> ExitCode {
    // A closed pipe (`opencarbon … | head`) ends the process quietly, as for other Unix tools,
    // instead of a panic in `println!`.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    opencarbon::backend::keep_freed_memory();
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        // Stopped by SIGTERM/SIGUSR1 after a resumable checkpoint: "preempted", not failed.
        Err(e) if opencarbon::track::preempt::is_preempted(&e) => {
            eprintln!("stopped: {e:#}");
            opencarbon::track::preempt::requeue_if_slurm();
            ExitCode::from(opencarbon::track::preempt::EXIT_CODE as u8)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    match Cli::parse().command {
        Command::Run(args) => {
            // A run stops cleanly on SIGTERM/SIGUSR1 (a resumable checkpoint first).
            opencarbon::track::preempt::install();
            opencarbon::launch::cli::main(args)
        }
        Command::Predict(args) => opencarbon::predict::cli::main(args),
        Command::ExportModel(args) => opencarbon::predict::bundle::main(args),
        Command::Results(args) => opencarbon::results::cli::main(args),
        Command::Report(args) => opencarbon::report::cli::main(args),
        Command::Status(args) => opencarbon::launch::status::main(args),
        Command::Docs(args) => opencarbon::quote::main(args),
        Command::MlflowSync(args) => mlflow_sync(args),
        Command::Doctor => doctor(),
        Command::Baseline {
            spec,
            kind,
            columns,
            lambda,
            overrides,
        } => {
            let spec = RunSpec::load(&spec, &overrides)?;
            let baseline = BaselineSpec {
                kind,
                columns: columns.split(',').map(|c| c.trim().to_string()).collect(),
                lambda,
                trees: None,
                depth: None,
                rate: None,
            };
            let baseline = opencarbon::checked::Params::checked(baseline)
                .map_err(|e| anyhow::anyhow!("{}", e.to_string().replace("baseline.", "--")))?;
            let city = opencarbon::data::load_city(&spec.dataset, &Default::default())?;
            let split = spec.split.split(&city, spec.seed)?;
            let (m, _) = baselines::evaluate(&baseline.baseline(), &city, &split)?;
            let kind = clap::ValueEnum::to_possible_value(&kind)
                .map_or(String::new(), |v| v.get_name().to_string());
            println!(
                "{} on {} ({} train / {} valid / {} test): R² {:.4}  RMSE {:.4}  MAE {:.4}  MAPE {:.4}",
                kind, city.name, split.train.len(), split.valid.len(), split.test.len(), m.r2, m.rmse, m.mae, m.mape
            );
            Ok(())
        }
        Command::Bench(args) => opencarbon::bench::cli::main(args),
        Command::Datasets(command) => datasets(command),
    }
}

fn datasets(command: DatasetsCommand) -> Result<()> {
    match command {
        DatasetsCommand::Synth {
            preset,
            seed,
            size,
            tile_side,
            poi_categories,
            out,
            preview,
        } => {
            let (width, height) = synthetic::parse_size(&size).context("--size")?;
            let started = std::time::Instant::now();
            let config = SynthConfig {
                preset,
                width,
                height,
                tile_side,
                poi_categories,
                seed,
                signal: Default::default(),
            };
            let city = synthetic::generate(&config)?;
            let generated = started.elapsed().as_secs_f64();
            synthetic::write_canonical(&city, &config, &out)?;
            if preview {
                preview::write_png(&city, &out.join("preview.png"), 16)?;
            }
            println!(
                "{}: {} tiles ({} samples), generated in {generated:.1} s, tile store {:.1} MiB (float32 would be {:.1} MiB) → {}",
                city.name,
                city.len(),
                city.samples().len(),
                city.memory_bytes() as f64 / 1048576.0,
                city.float32_bytes() as f64 / 1048576.0,
                out.display()
            );
            Ok(())
        }
        DatasetsCommand::ImportOdiacTiles { labels, out } => {
            let (city, manifest) = odiac::import(&labels)?;
            canonical::write(&city, &out, &manifest)?;
            let filled = city
                .tabular
                .as_ref()
                .map_or(0, |t| t.values.chunks(3).filter(|r| r[2] == 1.0).count());
            println!(
                "{}: {} tiles, {} with carbon > 0, {filled} with the GDP fill value flagged → {}",
                city.name,
                city.len(),
                city.samples().len(),
                out.display()
            );
            Ok(())
        }
        DatasetsCommand::ImportOpencarbon {
            src,
            city,
            out,
            python,
        } => {
            let script = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scripts/convert_opencarbon_release.py"
            );
            let status = std::process::Command::new(&python)
                .arg(script)
                .arg(&src)
                .args(["--city", &city, "--out"])
                .arg(&out)
                .status()
                .with_context(|| format!("running {python} {script}"))?;
            if !status.success() {
                anyhow::bail!("the converter failed ({status}); see its message above");
            }
            let loaded = canonical::load(&out)?;
            println!(
                "{}: {} tiles, {} samples → {}",
                loaded.name,
                loaded.len(),
                loaded.samples().len(),
                out.display()
            );
            Ok(())
        }
        DatasetsCommand::Check { dir } => {
            let city = canonical::load(&dir)?;
            let shapes = city.shapes();
            println!(
                "{}: {} tiles, {} samples; images {:?}, POI (channels, side) {:?}, covariates {:?}; tile store {:.1} MiB",
                city.name,
                city.len(),
                city.samples().len(),
                shapes.image_size,
                shapes.poi,
                city.tabular.as_ref().map(|t| t.columns.clone()),
                city.memory_bytes() as f64 / 1048576.0
            );
            Ok(())
        }
        DatasetsCommand::Preview { dir, out, cell } => {
            let city = canonical::load(&dir)?;
            preview::write_png(&city, &out, cell)?;
            println!("wrote {}", out.display());
            Ok(())
        }
    }
}

fn doctor() -> Result<()> {
    let report = backend::report();
    println!("opencarbon {}", env!("CARGO_PKG_VERSION"));
    println!("burn {}", report.burn_version);
    println!("compiled backends: {}", report.compiled_backends.join(", "));
    match (&report.libtorch_lib, &report.libtorch_version) {
        (Some(lib), version) => {
            println!("libtorch: {lib} (torch {})", version.as_deref().unwrap_or("version unknown"));
            println!("CUDA: {}", if report.cuda_available { format!("{} device(s)", report.cuda_device_count) } else { "not usable".into() });
            if !report.cuda_available {
                println!("  to use a GPU: a CUDA build of torch (scripts/setup-libtorch.sh installs the default CUDA wheel) and an NVIDIA driver");
            }
        }
        (None, _) => println!(
            "libtorch: not compiled in; for libtorch CPU/CUDA run scripts/setup-libtorch.sh, source the env file it writes, \
             and build with --features tch"
        ),
    }
    let mut choices = vec![DeviceChoice::Cpu];
    if report.compiled_backends.contains(&"flex") && report.compiled_backends.contains(&"libtorch")
    {
        choices.push(DeviceChoice::Flex);
    }
    choices.extend((0..report.cuda_device_count).map(DeviceChoice::Cuda));
    for choice in choices {
        match backend::device(&choice).and_then(|d| smoke(&d)) {
            Ok(v) => println!(
                "device {choice} ({}): ok (2×2 matmul sum = {v})",
                backend::backend_name(&choice)
            ),
            Err(e) => println!("device {choice}: FAILED: {e:#}"),
        }
    }
    Ok(())
}

/// A tiny computation that proves a device works.
fn smoke(device: &backend::Device) -> Result<f32> {
    use burn::tensor::Tensor;
    let a = Tensor::<2>::from_floats([[1.0, 2.0], [3.0, 4.0]], device);
    Ok(a.clone().matmul(a).sum().into_scalar::<f32>())
}
