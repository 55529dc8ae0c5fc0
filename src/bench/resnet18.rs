//! A ResNet-18 training step, phase by phase: forward, backward, Adam with weight decay, each
//! followed by a device synchronisation. The same step as `tools/bench/pytorch_reference.py
//! --resnet18`, so burn and PyTorch compare on the same libtorch, op for op.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use serde::Serialize;

use super::table::Table;
use super::trace;
use crate::backend::{self, DeviceChoice};
use crate::model::config::{ChannelOrder, ImageEncoderConfig};
use crate::model::image_encoder::ImageEncoder;
use crate::train::trainer::optimizer;
use crate::train::TrainConfig;

/// ImageNet's class count: the step trains torchvision's classifier shape.
const CLASSES: usize = 1000;

#[derive(Debug, Clone, Serialize)]
pub struct ResnetStepRow {
    pub backend: String,
    pub device: String,
    /// Kernel routes of the libtorch backend ([`backend::kernel_routes`]) and the Adam update.
    pub kernels: String,
    pub adam: String,
    pub precision: backend::Precision,
    pub batch: usize,
    pub side: usize,
    pub steps: usize,
    /// Mean milliseconds per phase over the timed steps.
    pub forward_ms: f64,
    pub backward_ms: f64,
    pub optimizer_ms: f64,
    pub total_ms: f64,
}

fn sync(device: &Device) -> Result<()> {
    device
        .sync()
        .map_err(|e| anyhow::anyhow!("device synchronisation failed: {e:?}"))
}

/// Mean phase times of `steps` steps after `warmup` steps, at `batch` images of `side`². With
/// `profile`, [`trace::PROFILED_STEPS`] more steps run under libtorch's profiler, whose trace and
/// summary go to that folder.
pub fn run(
    choice: &DeviceChoice,
    batch: usize,
    side: usize,
    warmup: usize,
    steps: usize,
    precision: backend::Precision,
    profile: Option<&Path>,
) -> Result<ResnetStepRow> {
    let device = backend::device(choice)?;
    let autodiff = device.clone().autodiff();
    device.seed(0);
    let input = ImageEncoderConfig {
        channel_order: ChannelOrder::Rgb,
        ..Default::default()
    };
    let mut model = ImageEncoder::new(CLASSES, input, &autodiff);
    let x = Tensor::<4>::random(
        [batch, 3, side, side],
        Distribution::Normal(0.0, 1.0),
        &device,
    )
    .autodiff();
    let labels: Vec<i64> = (0..batch).map(|i| (i * 37 % CLASSES) as i64).collect();
    let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &autodiff)
        .reshape([batch, 1]);
    let config = TrainConfig {
        weight_decay: 5e-3,
        ..Default::default()
    };
    let mut optim = optimizer(&config);
    let (mut forward, mut backward, mut step) = (0.0, 0.0, 0.0);
    let mut train_step = |model: ImageEncoder| -> Result<(ImageEncoder, [f64; 3])> {
        sync(&device)?;
        let t0 = Instant::now();
        let logits = model.forward(x.clone());
        let loss = log_softmax(logits, 1)
            .gather(1, labels.clone())
            .mean()
            .neg();
        sync(&device)?;
        let t1 = Instant::now();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        sync(&device)?;
        let t2 = Instant::now();
        let model = optim.step(config.lr, model, grads);
        sync(&device)?;
        let t3 = Instant::now();
        Ok((model, [t1 - t0, t2 - t1, t3 - t2].map(|d| d.as_secs_f64())))
    };
    for i in 0..warmup + steps {
        let (next, [f, b, o]) = train_step(model)?;
        model = next;
        if i >= warmup {
            forward += f;
            backward += b;
            step += o;
        }
    }
    if let Some(dir) = profile {
        let name = format!(
            "resnet18_{}_b{batch}_s{side}",
            choice.to_string().replace(':', "")
        );
        let session = trace::Session::start(choice, dir, &name)?;
        for _ in 0..trace::PROFILED_STEPS {
            model = train_step(model)?.0;
        }
        session.finish()?;
    }
    drop(train_step);
    let adam_kind = optim.kind();
    let ms = |s: f64| 1e3 * s / steps.max(1) as f64;
    Ok(ResnetStepRow {
        backend: backend::backend_name(choice).into(),
        device: choice.to_string(),
        kernels: backend::kernel_routes(choice),
        adam: adam_kind.into(),
        precision,
        batch,
        side,
        steps,
        forward_ms: ms(forward),
        backward_ms: ms(backward),
        optimizer_ms: ms(step),
        total_ms: ms(forward + backward + step),
    })
}

/// The rows as a Markdown table.
pub fn table(rows: &[ResnetStepRow]) -> String {
    let mut table = Table::new(&[
        "backend",
        "device",
        "kernels",
        "adam",
        "precision",
        "batch",
        "side",
        "forward ms",
        "backward ms",
        "Adam ms",
        "total ms",
    ]);
    for r in rows {
        table.row(vec![
            r.backend.clone(),
            r.device.clone(),
            r.kernels.clone(),
            r.adam.clone(),
            r.precision.to_string(),
            r.batch.to_string(),
            r.side.to_string(),
            format!("{:.1}", r.forward_ms),
            format!("{:.1}", r.backward_ms),
            format!("{:.1}", r.optimizer_ms),
            format!("{:.1}", r.total_ms),
        ]);
    }
    table.markdown()
}
