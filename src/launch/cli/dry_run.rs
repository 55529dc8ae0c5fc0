//! `opencarbon run SPEC --dry-run`: every run the spec expands into, one line each, after
//! loading what the runs would load (each distinct city, its labels and rasters, through the
//! loader a run uses, and each run's split), so that a missing or bad file fails here, named,
//! and not an hour into a sweep. Each line gives the run's epochs and an estimate of its
//! duration from a measured optimisation step of that run's network on its own city.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use burn::module::Module;

use crate::backend::{self, DeviceChoice};
use crate::checked::Checked;
use crate::data::{load_city, City, CityOptions, Split};
use crate::record::state as resume;
use crate::spec::RunSpec;
use crate::train::trainer::{evaluate, optimizer, train_step, Prepared};

/// Optimisation steps timed per distinct network (after one untimed warm-up step); the
/// estimate takes their median.
const TIMED_STEPS: usize = 3;
/// Up to this many when a step takes less than a few tens of milliseconds.
const MORE_STEPS: usize = 50;

/// What a run trains on: its city (a transfer run's source and targets joined) and its split.
struct Loaded {
    /// Which city this is (runs on the same city share a step timing).
    city_key: String,
    city: std::rc::Rc<City>,
    split: Split,
    /// Transfer runs: per target, its samples (for the fine-tuning estimate).
    target_samples: Vec<usize>,
}

/// Loads every run's data (failing with every unreadable file named), then prints one line
/// per run: id, dataset, variant, seed, epochs, estimated duration, state.
pub fn main(
    runs: &[&Checked<RunSpec>],
    out: &Path,
    choice: &DeviceChoice,
    precision: backend::Precision,
) -> Result<()> {
    let loaded = load_all(runs)?;
    backend::set_precision(choice, precision)?;
    let device = backend::device(choice)?;
    let mut timings: HashMap<String, Result<Timing, String>> = HashMap::new();
    for (run, data) in runs.iter().zip(&loaded) {
        let state = resume::check(&out.join("runs").join(run.run_id()), Some(run));
        let (epochs, estimate) = match (&run.baseline, &state) {
            // Done: what the run took, from its record.
            (Some(_), resume::State::Done(m)) => {
                ("—".to_string(), format!("took {}", human(m.train_seconds)))
            }
            (None, resume::State::Done(m)) => (
                format!("{} of {}", m.epochs_run, run.train.epochs),
                format!("took {}", human(m.train_seconds)),
            ),
            (Some(_), _) => ("—".to_string(), "—".to_string()),
            (None, _) => {
                let key = timing_key(run, data);
                let timing = timings
                    .entry(key)
                    .or_insert_with(|| {
                        time_network(run, data, &device).map_err(|e| format!("{e:#}"))
                    })
                    .clone()
                    .map_err(|e| {
                        anyhow::anyhow!("run {}: timing one step of its network: {e}", run.run_id())
                    })?;
                let steps = steps_per_epoch(data.split.train.len(), run.train.batch_size);
                (
                    format!("{} × {steps} steps", run.train.epochs),
                    format!("est. ≤ {}", human(estimate(run, data, &timing))),
                )
            }
        };
        let state = match state {
            resume::State::Done(_) => "done".to_string(),
            resume::State::NotDone(status) if status == "unknown" => "todo".into(),
            resume::State::NotDone(status) => format!("todo ({status})"),
            resume::State::Broken(why) => format!("todo (broken: {why})"),
        };
        let tiles = format!(
            "{}/{}/{}",
            data.split.train.len(),
            data.split.valid.len(),
            data.split.test.len()
        );
        println!(
            "{:<16} {:<24} {:<20} seed {:<6} tiles {tiles:<14} epochs {epochs:<16} {estimate:<18} {state}",
            run.run_id(),
            run.dataset_label(),
            run.variant,
            run.seed,
        );
    }
    // On stderr: stdout is one line per run (scripts read the run ids off it).
    eprintln!(
        "tiles: train/valid/test; epochs: × optimisation steps per epoch; est.: median of {TIMED_STEPS} or more timed steps of each network on its own city ({choice}, under this machine's present load) × steps × epochs, + validations, test and fine-tuning (≤: early stopping may end a run sooner), baselines —; a done run: the epochs it ran and the training time it took"
    );
    Ok(())
}

/// Every run's city and split, each distinct city loaded once. Every failure is collected, so
/// one dry run names every missing or unreadable file.
fn load_all(runs: &[&Checked<RunSpec>]) -> Result<Vec<Loaded>> {
    let mut cities: HashMap<String, Result<std::rc::Rc<City>, String>> = HashMap::new();
    let mut transfers: HashMap<String, Result<Loaded, String>> = HashMap::new();
    let mut problems: Vec<String> = Vec::new();
    let mut loaded = Vec::new();
    for run in runs {
        let outcome = load_run(run, &mut cities, &mut transfers);
        match outcome {
            Ok(l) => loaded.push(l),
            Err(e) => {
                let e = format!("{e:#}");
                if !problems.contains(&e) {
                    problems.push(e);
                }
            }
        }
    }
    if !problems.is_empty() {
        bail!(
            "dry run: {} problem(s) loading the runs' data:\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    Ok(loaded)
}

fn load_run(
    run: &Checked<RunSpec>,
    cities: &mut HashMap<String, Result<std::rc::Rc<City>, String>>,
    transfers: &mut HashMap<String, Result<Loaded, String>>,
) -> Result<Loaded> {
    if let Some(t) = &run.transfer {
        // As the run loads them: source and targets joined, with the inputs the run reads (and
        // the source's split), once per distinct such load.
        let city_key = serde_norway::to_string(&(
            &run.dataset,
            &t.targets,
            &t.normalize,
            run.modalities_read(),
        ))
        .unwrap_or_default();
        let key = format!(
            "{city_key}|{}|{}",
            serde_norway::to_string(&run.split).unwrap_or_default(),
            run.seed
        );
        let joined = transfers
            .entry(key)
            .or_insert_with(|| {
                let joined = crate::transfer::load(run.transfer_source(), t)
                    .with_context(|| format!("transfer run from `{}`", run.dataset_label()))
                    .map_err(|e| format!("{e:#}"))?;
                let target_samples = joined.parts[1..]
                    .iter()
                    .map(|p| {
                        p.range
                            .clone()
                            .filter(|&i| joined.union.emission[i] > 0.0)
                            .count()
                    })
                    .collect();
                Ok(Loaded {
                    city_key: city_key.clone(),
                    city: std::rc::Rc::new(joined.union),
                    split: joined.split,
                    target_samples,
                })
            })
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        return Ok(Loaded {
            city_key: joined.city_key.clone(),
            city: joined.city.clone(),
            split: joined.split.clone(),
            target_samples: joined.target_samples.clone(),
        });
    }
    let key = serde_norway::to_string(&run.dataset).unwrap_or_default();
    let city = cities
        .entry(key.clone())
        .or_insert_with(|| {
            load_city(&run.dataset, &CityOptions::default())
                .map(std::rc::Rc::new)
                .map_err(|e| format!("dataset `{}`: {e:#}", run.dataset_label()))
        })
        .clone()
        .map_err(|e| anyhow::anyhow!(e))?;
    let split = run
        .split
        .split(&city, run.seed)
        .with_context(|| format!("dataset `{}`: split", run.dataset_label()))?;
    Ok(Loaded {
        city_key: key,
        city,
        split,
        target_samples: vec![],
    })
}

/// A measured step: seconds per optimisation step of `batch` samples, and per evaluated sample.
#[derive(Debug, Clone, Copy)]
struct Timing {
    step: f64,
    eval_per_sample: f64,
}

/// Runs whose networks cost the same per step share a timing: the same city, network and batch.
fn timing_key(run: &Checked<RunSpec>, data: &Loaded) -> String {
    format!(
        "{}|{}|{}|{}|{}",
        data.city_key,
        serde_norway::to_string(&run.model).unwrap_or_default(),
        run.train.batch_size,
        contrastive(run),
        run.train.eval_batch_size,
    )
}

/// Whether most epochs add the contrastive term (it costs a little more).
fn contrastive(run: &Checked<RunSpec>) -> bool {
    run.train.alpha > 0.0 && run.train.contrastive_epoch < run.train.epochs
}

/// One untimed and [`TIMED_STEPS`] timed optimisation steps of the run's network on the first
/// training batch of its split (the median), and an evaluation of up to one evaluation batch.
fn time_network(run: &Checked<RunSpec>, data: &Loaded, device: &backend::Device) -> Result<Timing> {
    let train = &data.split.train;
    let batch_size = run.train.batch_size.min(train.len());
    if batch_size < 2 {
        bail!(
            "{} training tile(s): a network run needs at least 2",
            train.len()
        );
    }
    let autodiff = device.clone().autodiff();
    let prepared = Prepared::new(
        &data.city,
        &data.split,
        run.model_params(),
        &run.train,
        device,
    );
    let mut model = run
        .model_params()
        .init_seeded(&data.city.shapes(), &autodiff, run.seed)?;
    let mut optim = optimizer(&run.train);
    let batch = &train[..batch_size];
    let mut seconds = Vec::new();
    let mut step = 0;
    // At least TIMED_STEPS; fast steps (a small network) more, for a steadier median.
    while step <= TIMED_STEPS || (seconds.iter().sum::<f64>() < 0.25 && step <= MORE_STEPS) {
        step += 1;
        device.sync().ok();
        let started = Instant::now();
        let (next, l1, _) = train_step(
            model,
            &mut optim,
            &prepared,
            batch,
            &run.train,
            contrastive(run),
            &autodiff,
        )?;
        model = next;
        // Reading the loss waits for the device.
        let _ = l1.into_scalar::<f32>();
        // The first step allocates and warms up; it is not timed.
        if step > 1 {
            seconds.push(started.elapsed().as_secs_f64());
        }
    }
    seconds.sort_by(f64::total_cmp);
    let step = seconds[seconds.len() / 2] * (run.train.batch_size as f64 / batch_size as f64);
    let eval_model = model.valid();
    let samples: Vec<usize> = data
        .split
        .valid
        .iter()
        .chain(&data.split.test)
        .copied()
        .take(run.train.eval_batch_size.max(1))
        .collect();
    let eval_per_sample = if samples.is_empty() {
        0.0
    } else {
        // The second of two evaluations (the first warms up).
        evaluate(&eval_model, &prepared, &samples, run.train.eval_batch_size);
        let started = Instant::now();
        evaluate(&eval_model, &prepared, &samples, run.train.eval_batch_size);
        started.elapsed().as_secs_f64() / samples.len() as f64
    };
    Ok(Timing {
        step,
        eval_per_sample,
    })
}

/// Steps of one epoch: the training samples in batches, a last batch of one skipped (as
/// `train_epoch` does).
fn steps_per_epoch(samples: usize, batch_size: usize) -> usize {
    let batch_size = batch_size.max(1);
    samples / batch_size + usize::from(samples % batch_size >= 2)
}

/// Seconds for every epoch (early stopping may end sooner), each validation, the test, and a
/// transfer run's fine-tuning (per target and few-shot fraction, at the training step's cost).
fn estimate(run: &Checked<RunSpec>, data: &Loaded, timing: &Timing) -> f64 {
    let t = &run.train;
    let epochs = t.epochs as f64;
    let training =
        epochs * steps_per_epoch(data.split.train.len(), t.batch_size) as f64 * timing.step;
    let validations = (t.epochs / t.validate_every.max(1) + 1) as f64;
    let evaluation = (validations * data.split.valid.len() as f64 + data.split.test.len() as f64)
        * timing.eval_per_sample;
    let fine_tuning: f64 = match &run.transfer {
        None => 0.0,
        Some(transfer) => {
            let batch = transfer.fine_tune.batch_size.unwrap_or(t.batch_size);
            let per_sample = timing.step / t.batch_size.max(1) as f64;
            data.target_samples
                .iter()
                .map(|&n| {
                    let tuned: f64 = transfer
                        .fractions()
                        .iter()
                        .filter(|&&f| f > 0.0)
                        .map(|f| {
                            let tiles = (f * n as f64).ceil() as usize;
                            (transfer.fine_tune.epochs * steps_per_epoch(tiles, batch) * batch)
                                as f64
                                * per_sample
                        })
                        .sum();
                    // Every target tile is predicted zero-shot, and once per fraction after.
                    tuned + n as f64 * timing.eval_per_sample * (1 + transfer.few_shot.len()) as f64
                })
                .sum()
        }
    };
    training + evaluation + fine_tuning
}

/// `42 s`, `3 min 5 s`, `2 h 10 min`.
fn human(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "?".into();
    }
    let d = Duration::from_secs_f64(seconds.max(0.0));
    let s = d.as_secs();
    if s < 60 {
        format!("{:.0} s", d.as_secs_f64().max(1.0))
    } else if s < 3600 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{} h {} min", s / 3600, (s % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_skip_a_last_batch_of_one() {
        assert_eq!(steps_per_epoch(64, 32), 2);
        assert_eq!(steps_per_epoch(65, 32), 2);
        assert_eq!(steps_per_epoch(66, 32), 3);
        assert_eq!(steps_per_epoch(1, 32), 0);
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human(0.2), "1 s");
        assert_eq!(human(42.0), "42 s");
        assert_eq!(human(185.0), "3 min 5 s");
        assert_eq!(human(7800.0), "2 h 10 min");
    }
}
