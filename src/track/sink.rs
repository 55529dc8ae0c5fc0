//! Where per-epoch scalars go: `metrics.csv` and a TensorBoard event file, behind one trait.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};

/// A destination for scalars logged during a run.
pub trait MetricSink {
    /// One scalar: e.g. (epoch 5, split "valid", metric "r2", 0.81).
    fn log(&mut self, epoch: usize, split: &str, metric: &str, value: f64) -> Result<()>;
    /// Makes everything logged so far durable.
    fn flush(&mut self) -> Result<()>;
}

/// `metrics.csv` with columns epoch, split, metric, value.
pub struct CsvSink {
    out: BufWriter<File>,
}

impl CsvSink {
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = BufWriter::new(file);
        writeln!(out, "epoch,split,metric,value")?;
        Ok(Self { out })
    }
}

impl MetricSink for CsvSink {
    fn log(&mut self, epoch: usize, split: &str, metric: &str, value: f64) -> Result<()> {
        writeln!(self.out, "{epoch},{split},{metric},{value}")?;
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        self.out.flush()?;
        // Durable, not only handed to the kernel: a finished run's history survives a power cut.
        self.out.get_ref().sync_data()?;
        Ok(())
    }
}

/// TensorBoard scalars `<split>/<metric>` at step = epoch, through tensorboard-rs. Only its
/// scalar path is used: its text, hparams and histogram calls panic. It writes on a background
/// thread; the event file is complete once this sink is dropped.
pub struct TensorboardSink {
    writer: tensorboard_rs::summary_writer::SummaryWriter,
}

impl TensorboardSink {
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self {
            writer: tensorboard_rs::summary_writer::SummaryWriter::new(dir),
        })
    }
}

impl MetricSink for TensorboardSink {
    fn log(&mut self, epoch: usize, split: &str, metric: &str, value: f64) -> Result<()> {
        self.writer
            .add_scalar(&format!("{split}/{metric}"), value as f32, epoch);
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        self.writer.flush();
        Ok(())
    }
}

/// Sends every scalar to several sinks.
#[derive(Default)]
pub struct Sinks(pub Vec<Box<dyn MetricSink>>);

impl MetricSink for Sinks {
    fn log(&mut self, epoch: usize, split: &str, metric: &str, value: f64) -> Result<()> {
        self.0
            .iter_mut()
            .try_for_each(|s| s.log(epoch, split, metric, value))
    }
    fn flush(&mut self) -> Result<()> {
        self.0.iter_mut().try_for_each(|s| s.flush())
    }
}

/// Keeps scalars in memory (tests, and callers that want the history).
#[derive(Default, Debug, Clone)]
pub struct MemorySink(pub Vec<(usize, String, String, f64)>);

impl MetricSink for MemorySink {
    fn log(&mut self, epoch: usize, split: &str, metric: &str, value: f64) -> Result<()> {
        self.0
            .push((epoch, split.to_string(), metric.to_string(), value));
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}
