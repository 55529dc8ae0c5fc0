//! The only file that names burn backends. Everything else takes a [`Device`].
//!
//! - `flex`: burn's pure-Rust CPU backend, the install-free default (tests, CI, quickstart).
//! - `tch`: libtorch through burn-tch, on CPU or CUDA (the product's GPU path).
#![allow(deprecated)] // burn-tch is deprecated upstream; this file is the one place that uses it.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};
pub use burn::tensor::Device;

/// Keeps freed memory in the process (glibc). A training step allocates and frees tensors of
/// megabytes each (activations, im2col buffers, gradients); by default glibc serves each from a
/// fresh `mmap` and unmaps it on free, so every step pays page faults and the kernel's zeroing of
/// the pages again: on flex, 0.55 s of system time in a 7-step bench, halved by this. Blocks up
/// to 32 MiB (glibc's largest threshold) now come from the heap, which keeps up to 1 GiB of free
/// memory at its top. Peak memory is unchanged; memory once used is not returned early.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// Runs `f` (inference: no weight changes inside) with the weights flex's convolutions
/// rearrange kept between calls instead of rearranged on every call; at a batch of 32 that pass
/// cost more than the small-map convolutions' products (burn-flex PATCH.md item 8). Kept copies
/// hold their weights' storage, which therefore cannot be updated in place until `f` returns;
/// training inside would be correct but copy its weights. libtorch needs nothing of the kind.
pub fn with_prepared_weights<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(feature = "flex")]
    return burn_flex::with_prepared_weights(f);
    #[cfg(not(feature = "flex"))]
    f()
}

/// What the user asked for with `--device`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The best CPU backend compiled in: libtorch CPU with `tch`, else flex.
    Cpu,
    /// burn's pure-Rust CPU backend, even when libtorch is compiled in.
    Flex,
    /// A CUDA device through libtorch.
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "flex" => Ok(Self::Flex),
            "cuda" => Ok(Self::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(i)) => Ok(Self::Cuda(i)),
                _ => bail!("unknown device `{s}`: expected cpu, flex, cuda or cuda:N"),
            },
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::Flex => write!(f, "flex"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// Backend name as recorded in run metadata.
pub fn backend_name(choice: &DeviceChoice) -> &'static str {
    match choice {
        DeviceChoice::Flex => "flex",
        DeviceChoice::Cpu if cfg!(feature = "tch") => "libtorch-cpu",
        DeviceChoice::Cpu => "flex",
        DeviceChoice::Cuda(_) => "libtorch-cuda",
    }
}

/// The burn device for a choice, or an error that says how to get it.
pub fn device(choice: &DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Flex => flex_device(),
        DeviceChoice::Cpu => {
            #[cfg(feature = "tch")]
            return Ok(Device::libtorch());
            #[cfg(not(feature = "tch"))]
            return flex_device();
        }
        DeviceChoice::Cuda(index) => {
            #[cfg(feature = "tch")]
            {
                let count = libtorch::cuda_device_count();
                if count == 0 {
                    bail!(
                        "--device {choice}: libtorch sees no CUDA device (is this a CPU-only torch wheel, \
                         or is the NVIDIA driver missing?); run `opencarbon doctor`"
                    );
                }
                if *index >= count {
                    bail!("--device {choice}: libtorch sees {count} CUDA device(s), indices 0..{count}");
                }
                Ok(Device::libtorch_cuda(*index))
            }
            #[cfg(not(feature = "tch"))]
            {
                let _ = index;
                bail!(
                    "--device {choice} needs libtorch: run scripts/setup-libtorch.sh, source the env file it \
                     prints, and build with `--features tch`"
                )
            }
        }
    }
}

fn flex_device() -> Result<Device> {
    #[cfg(feature = "flex")]
    return Ok(Device::flex());
    #[cfg(not(feature = "flex"))]
    bail!("this build has no flex backend: rebuild with `--features flex`")
}

/// Facts for `opencarbon doctor` and run metadata.
/// Float32 arithmetic on CUDA: where libtorch may use TF32 tensor cores (fp32 storage, products
/// with a 10-bit mantissa). Process-wide; no effect on CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// libtorch's (and PyTorch's) defaults: TF32 in cuDNN convolutions, fp32 matmuls.
    #[default]
    Default,
    /// Strict fp32 everywhere.
    Fp32,
    /// TF32 in convolutions and matmuls.
    Tf32,
}

impl FromStr for Precision {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "default" => Ok(Self::Default),
            "fp32" => Ok(Self::Fp32),
            "tf32" => Ok(Self::Tf32),
            _ => bail!("unknown precision `{s}`: expected default, fp32 or tf32"),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Default => "default",
            Self::Fp32 => "fp32",
            Self::Tf32 => "tf32",
        })
    }
}

/// Applies `precision` for `choice`. Anything but `default` needs a CUDA device: elsewhere it
/// would change nothing while the run record claimed it did.
pub fn set_precision(choice: &DeviceChoice, precision: Precision) -> Result<()> {
    if precision == Precision::Default && !matches!(choice, DeviceChoice::Cuda(_)) {
        return Ok(());
    }
    if !matches!(choice, DeviceChoice::Cuda(_)) {
        bail!("--precision {precision} applies to CUDA devices only (got --device {choice})");
    }
    #[cfg(feature = "tch")]
    {
        let (matmul, convolution) = match precision {
            Precision::Default => (false, true),
            Precision::Fp32 => (false, false),
            Precision::Tf32 => (true, true),
        };
        burn_tch::native::set_tf32(burn_tch::native::Tf32 {
            matmul,
            convolution,
        })
        .map_err(|e| anyhow::anyhow!("--precision {precision}: {e}"))
    }
    #[cfg(not(feature = "tch"))]
    bail!("--device {choice} needs libtorch (build with `--features tch`)")
}

/// Peak memory of the CUDA caching allocator since the last [`reset_device_memory_peak`].
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct DeviceMemory {
    /// The most MiB held by live tensors.
    pub peak_allocated_mib: f64,
    /// The most MiB the allocator held from the driver (what nvidia-smi sees, less the context).
    pub peak_reserved_mib: f64,
}

/// Restarts the peak counters on a CUDA device (nothing elsewhere).
pub fn reset_device_memory_peak(choice: &DeviceChoice) {
    #[cfg(feature = "tch")]
    if let DeviceChoice::Cuda(index) = choice {
        // Before the first CUDA allocation the counters are zero anyway.
        let _ = burn_tch::native::cuda_reset_peak_memory(*index);
    }
    let _ = choice;
}

/// The CUDA allocator's peaks on a CUDA device; None elsewhere.
pub fn device_memory_peak(choice: &DeviceChoice) -> Option<DeviceMemory> {
    #[cfg(feature = "tch")]
    if let DeviceChoice::Cuda(index) = choice {
        let mib = |bytes: i64| bytes as f64 / (1024.0 * 1024.0);
        return burn_tch::native::cuda_memory(*index)
            .ok()
            .map(|m| DeviceMemory {
                peak_allocated_mib: mib(m.peak_allocated),
                peak_reserved_mib: mib(m.peak_reserved),
            });
    }
    let _ = choice;
    None
}

/// Whether `choice` can be profiled: libtorch's profiler needs a libtorch device.
pub fn check_profiler(choice: &DeviceChoice) -> Result<()> {
    if backend_name(choice) == "flex" {
        bail!(
            "--profile needs libtorch (a `--features tch` build with --device cpu or cuda); --device {choice} runs on flex"
        );
    }
    Ok(())
}

/// Starts libtorch's Kineto profiler (CPU operators, and CUDA kernels on a CUDA device).
pub fn profiler_start(choice: &DeviceChoice) -> Result<()> {
    check_profiler(choice)?;
    #[cfg(feature = "tch")]
    return burn_tch::native::profiler_start(matches!(choice, DeviceChoice::Cuda(_)))
        .map_err(|e| anyhow::anyhow!("starting the profiler: {e}"));
    #[cfg(not(feature = "tch"))]
    bail!("--profile needs libtorch: this build has none (build with `--features tch`)")
}

/// Stops the profiler and writes its Chrome trace to `path`.
pub fn profiler_stop(path: &std::path::Path) -> Result<()> {
    #[cfg(feature = "tch")]
    return burn_tch::native::profiler_stop(path)
        .map_err(|e| anyhow::anyhow!("writing the trace {}: {e}", path.display()));
    #[cfg(not(feature = "tch"))]
    bail!("no profiler in this build (writing {})", path.display())
}

/// Which kernels the libtorch backend routes to, as set by the environment (for benchmark rows):
/// the convolution gradients (`OPENCARBON_CONV_GRAD`) and BatchNorm (`OPENCARBON_TCH_BATCH_NORM`).
pub fn kernel_routes(choice: &DeviceChoice) -> String {
    if backend_name(choice) == "flex" {
        return "flex".into();
    }
    // Anything but `burn` selects libtorch's kernels (as vendor/burn-tch reads the variables).
    let route = |name: &str| match std::env::var(name).as_deref() {
        Ok("burn") => "burn",
        _ => "native",
    };
    format!(
        "conv-grad={} bn={}",
        route("OPENCARBON_CONV_GRAD"),
        route("OPENCARBON_TCH_BATCH_NORM")
    )
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BackendReport {
    pub compiled_backends: Vec<&'static str>,
    pub burn_version: &'static str,
    pub libtorch_lib: Option<String>,
    pub libtorch_version: Option<String>,
    pub cuda_available: bool,
    pub cuda_device_count: usize,
}

pub fn report() -> BackendReport {
    let mut compiled = Vec::new();
    if cfg!(feature = "flex") {
        compiled.push("flex");
    }
    if cfg!(feature = "tch") {
        compiled.push("libtorch");
    }
    #[cfg(feature = "tch")]
    let (lib, version, count) = (
        Some(env!("OPENCARBON_LIBTORCH_LIB").to_string()),
        libtorch::version(env!("OPENCARBON_LIBTORCH_LIB")),
        libtorch::cuda_device_count(),
    );
    #[cfg(not(feature = "tch"))]
    let (lib, version, count) = (None, None, 0usize);
    BackendReport {
        compiled_backends: compiled,
        burn_version: env!("OPENCARBON_BURN_VERSION"),
        libtorch_lib: lib,
        libtorch_version: version,
        cuda_available: count > 0,
        cuda_device_count: count,
    }
}

#[cfg(feature = "tch")]
mod libtorch {
    /// Number of CUDA devices libtorch can use (0 on a CPU-only wheel or without a driver).
    pub fn cuda_device_count() -> usize {
        // SAFETY: plain query functions of libtorch's C API, no arguments, no shared state.
        unsafe {
            if torch_sys::cuda::atc_cuda_is_available() == 0 {
                return 0;
            }
            torch_sys::cuda::atc_cuda_device_count().max(0) as usize
        }
    }

    /// The version of the torch wheel libtorch came from, read beside its `lib` folder.
    pub fn version(lib: &str) -> Option<String> {
        let torch_dir = std::path::Path::new(lib).parent()?;
        let text = std::fs::read_to_string(torch_dir.join("version.py")).ok()?;
        let line = text.lines().find(|l| l.starts_with("__version__"))?;
        Some(line.split(['\'', '"']).nth(1)?.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_parses_and_is_cuda_only() {
        assert_eq!("tf32".parse::<Precision>().unwrap(), Precision::Tf32);
        assert_eq!(Precision::Fp32.to_string(), "fp32");
        let error = "bf16".parse::<Precision>().unwrap_err().to_string();
        assert!(error.contains("bf16") && error.contains("tf32"), "{error}");
        // The default changes nothing anywhere; anything else off CUDA would be a false record.
        set_precision(&DeviceChoice::Cpu, Precision::Default).unwrap();
        let error = set_precision(&DeviceChoice::Cpu, Precision::Tf32)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--precision tf32") && error.contains("--device cpu"),
            "{error}"
        );
    }

    #[test]
    fn flex_cannot_be_profiled() {
        let error = check_profiler(&DeviceChoice::Flex).unwrap_err().to_string();
        assert!(error.contains("--device flex"), "{error}");
        assert!(device_memory_peak(&DeviceChoice::Flex).is_none());
    }
}
