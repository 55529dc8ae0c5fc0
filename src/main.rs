use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use opencarbon::backend::{self, DeviceChoice};
use opencarbon::runner::{self, RunOptions, RunOutcome};
use opencarbon::spec::RunSpec;

#[derive(Parser)]
#[command(name = "opencarbon", version, about = "Reproduce and stress-test OpenCarbon carbon-emission prediction")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train and test the run a spec describes; skips a run whose test_metrics.json exists.
    Run {
        spec: PathBuf,
        /// cpu (libtorch CPU when built with `tch`, else flex), flex, cuda or cuda:N
        #[arg(long, default_value = "cpu")]
        device: DeviceChoice,
        /// Experiment directory (default: results/<spec name>)
        #[arg(long)]
        out: Option<PathBuf>,
        /// Override a spec value: --set train.lr=5e-4 (repeatable; value in YAML syntax)
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Re-run even if the run is already done
        #[arg(long)]
        force: bool,
        /// No progress bar
        #[arg(long)]
        quiet: bool,
    },
    /// Report the backends, devices and libtorch installation, and what to fix.
    Doctor,
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    match Cli::parse().command {
        Command::Run { spec, device, out, overrides, force, quiet } => {
            let spec = RunSpec::load(&spec, &overrides)?;
            let out = out.unwrap_or_else(|| runner::default_out(&spec));
            let options = RunOptions { device, out, progress: !quiet, force };
            let (dir, outcome) = runner::run(&spec, &options)?;
            let (verb, m) = match outcome {
                RunOutcome::Done(m) => ("finished", m),
                RunOutcome::Skipped(m) => ("already done, skipped", m),
            };
            println!("run {} {verb}: {}", spec.run_id(), dir.display());
            println!(
                "test (best valid epoch {}, {} tiles): R² {:.4}  RMSE {:.4}  MAE {:.4}  MAPE {:.4}",
                m.best_epoch, m.n, m.r2, m.rmse, m.mae, m.mape
            );
            Ok(())
        }
        Command::Doctor => doctor(),
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
    if report.compiled_backends.contains(&"flex") && report.compiled_backends.contains(&"libtorch") {
        choices.push(DeviceChoice::Flex);
    }
    choices.extend((0..report.cuda_device_count).map(DeviceChoice::Cuda));
    for choice in choices {
        match backend::device(&choice).and_then(|d| smoke(&d)) {
            Ok(v) => println!("device {choice} ({}): ok (2×2 matmul sum = {v})", backend::backend_name(&choice)),
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
