//! Tracking: the run directory, metric sinks (CSV, TensorBoard), progress bars, and MLflow.

pub mod atomic;
pub mod lock;
pub mod meta;
pub mod mlflow;
pub mod preempt;
pub mod progress;
pub mod run_dir;
pub mod sink;

pub use meta::RunMeta;
pub use run_dir::RunDir;
pub use sink::{CsvSink, MemorySink, MetricSink, Sinks, TensorboardSink};
