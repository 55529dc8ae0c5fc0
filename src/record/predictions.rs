//! A run's test predictions (`predictions.csv`: x, y, target, prediction), read from its run
//! directory or from the archive, exactly (a float's text is its shortest round-trip form).

use std::path::Path;

use anyhow::{bail, Context, Result};
use polars::prelude::DataFrame;

use super::archive;

const HEADER: &str = "x,y,target,prediction";

/// One test tile: its key, label and prediction (ln scale).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TilePrediction {
    pub x: i64,
    pub y: i64,
    pub target: f64,
    pub prediction: f64,
}

/// `predictions.csv` at `path`; an error naming the file and line for a bad header, field count
/// or number. An empty file holds none.
pub fn read_csv(path: &Path) -> Result<Vec<TilePrediction>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim() == HEADER => {}
        Some((_, h)) => bail!("{}: header is `{h}`, expected `{HEADER}`", path.display()),
        None => return Ok(Vec::new()),
    }
    lines
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let line = i + 1;
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            if f.len() != 4 {
                bail!(
                    "{} line {line}: {} fields, expected 4",
                    path.display(),
                    f.len()
                );
            }
            Ok(TilePrediction {
                x: parse(path, line, f[0], "x")?,
                y: parse(path, line, f[1], "y")?,
                target: parse(path, line, f[2], "target")?,
                prediction: parse(path, line, f[3], "prediction")?,
            })
        })
        .collect()
}

fn parse<T: std::str::FromStr>(path: &Path, line: usize, field: &str, what: &str) -> Result<T> {
    field.parse().map_err(|_| {
        anyhow::anyhow!(
            "{} line {line}: {what} `{field}` is not a number",
            path.display()
        )
    })
}

/// The archived rows of a run (`archive::predictions`).
pub fn from_frame(frame: &DataFrame) -> Result<Vec<TilePrediction>> {
    let (x, y) = (frame.column("x")?.i64()?, frame.column("y")?.i64()?);
    let target = frame.column("target")?.f64()?;
    let prediction = frame.column("prediction")?.f64()?;
    (0..frame.height())
        .map(
            |i| match (x.get(i), y.get(i), target.get(i), prediction.get(i)) {
                (Some(x), Some(y), Some(target), Some(prediction)) => Ok(TilePrediction {
                    x,
                    y,
                    target,
                    prediction,
                }),
                _ => bail!("archived predictions row {} has an empty field", i + 1),
            },
        )
        .collect()
}

/// A finished run's predictions: its directory's `predictions.csv` when there is one, else the
/// archive of `experiment_dir`.
pub fn of_run(experiment_dir: &Path, run_id: &str) -> Result<Vec<TilePrediction>> {
    let file = experiment_dir
        .join("runs")
        .join(run_id)
        .join("predictions.csv");
    if file.is_file() {
        return read_csv(&file);
    }
    let frame = archive::predictions(experiment_dir, run_id)
        .with_context(|| format!("run {run_id}: archived predictions"))?;
    from_frame(&frame).with_context(|| format!("run {run_id}: archived predictions"))
}
