//! Ensembles as variants: `variants: {both: {ensemble: {members: [network, gbt_lag]}}}` is a
//! variant with no runs of its own. For each dataset, seed and fold where every member finished,
//! its prediction of a test tile is the mean of the members' predictions there; its row is scored
//! like a run's and paired with the other variants' in every table. Members share their split
//! (checked when the spec is parsed, `spec::ensemble`), so they predict the same test tiles.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Result};

use super::RunRow;
use crate::metrics::Metrics;
use crate::record::predictions::{self, TilePrediction};
use crate::record::TestMetrics;

/// The run-id-like name of an ensemble row: its members' run ids.
fn row_id(members: &[&RunRow]) -> String {
    let ids: Vec<&str> = members.iter().map(|r| r.run_id.as_str()).collect();
    format!("ensemble({})", ids.join("+"))
}

/// The rows of every ensemble of `ensembles` from the finished member rows in `rows`.
pub fn rows(
    dir: &Path,
    rows: &[RunRow],
    ensembles: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<RunRow>> {
    let mut out = Vec::new();
    for (name, members) in ensembles {
        // (dataset, seed, fold) → the member rows, in the members' order.
        let mut cells: BTreeMap<(String, u64, Option<usize>), Vec<Option<&RunRow>>> =
            BTreeMap::new();
        for r in rows.iter().filter(|r| r.members.is_empty()) {
            let Some(k) = members.iter().position(|m| *m == r.variant) else {
                continue;
            };
            if r.status == super::STALE {
                continue;
            }
            let cell = cells
                .entry((r.dataset.clone(), r.seed, r.fold))
                .or_insert_with(|| vec![None; members.len()]);
            cell[k] = Some(r);
        }
        for ((dataset, seed, fold), cell) in cells {
            let present: Vec<&RunRow> = cell.iter().flatten().copied().collect();
            let first = present[0];
            let mut row = RunRow {
                run_id: row_id(&present),
                variant: name.clone(),
                dataset,
                seed,
                fold,
                cv_test_train_ratio: first.cv_test_train_ratio,
                status: "done".into(),
                metrics: None,
                transfer: vec![],
                leak: {
                    let mut why: Vec<String> =
                        present.iter().filter_map(|r| r.leak.clone()).collect();
                    why.sort();
                    why.dedup();
                    (!why.is_empty()).then(|| why.join("; "))
                },
                provenance: first.provenance.clone(),
                members: present.iter().map(|r| r.run_id.clone()).collect(),
                tuning: None,
            };
            if present.len() < members.len() || present.iter().any(|r| r.metrics.is_none()) {
                let waiting: Vec<String> = members
                    .iter()
                    .zip(&cell)
                    .filter(|(_, r)| r.is_none_or(|r| r.metrics.is_none()))
                    .map(|(m, _)| m.clone())
                    .collect();
                row.status = format!("waiting for {}", waiting.join(", "));
                out.push(row);
                continue;
            }
            let tiles = mean_predictions(dir, &row)?;
            let target: Vec<f64> = tiles.iter().map(|t| t.target).collect();
            let mean: Vec<f64> = tiles.iter().map(|t| t.prediction).collect();
            let m = Metrics::compute(&target, &mean);
            let nan = f64::NAN;
            row.metrics = Some(TestMetrics {
                r2: m.r2,
                rmse: m.rmse,
                mae: m.mae,
                mape: m.mape,
                n: m.n,
                best_epoch: 0,
                // The members' validation predictions are not kept: no validation score.
                valid: Metrics {
                    r2: nan,
                    rmse: nan,
                    mae: nan,
                    mape: nan,
                    n: 0,
                },
                epochs_run: 0,
                stopped_early: false,
                pruned: false,
                train_seconds: present
                    .iter()
                    .map(|r| r.metrics.as_ref().map_or(0.0, |m| m.train_seconds))
                    .sum(),
            });
            out.push(row);
        }
    }
    Ok(out)
}

/// The test predictions of a row: a run's own, or for an ensemble row the mean of its members'
/// on each tile (the members must have predicted the same tiles).
pub fn test_predictions(dir: &Path, row: &RunRow) -> Result<Vec<TilePrediction>> {
    if row.members.is_empty() {
        return predictions::of_run(dir, &row.run_id);
    }
    mean_predictions(dir, row)
}

fn mean_predictions(dir: &Path, row: &RunRow) -> Result<Vec<TilePrediction>> {
    let mut tiles: Vec<TilePrediction> = Vec::new();
    for (k, id) in row.members.iter().enumerate() {
        let mut p = predictions::of_run(dir, id)?;
        p.sort_by_key(|t| (t.x, t.y));
        if k == 0 {
            tiles = p;
            continue;
        }
        let same =
            p.len() == tiles.len() && p.iter().zip(&tiles).all(|(a, b)| (a.x, a.y) == (b.x, b.y));
        if !same {
            bail!(
                "ensemble `{}`: run {id} predicted other test tiles than run {} ({} against {}); members must share their split",
                row.variant,
                row.members[0],
                p.len(),
                tiles.len()
            );
        }
        for (t, q) in tiles.iter_mut().zip(&p) {
            t.prediction += q.prediction;
        }
    }
    let n = row.members.len() as f64;
    for t in &mut tiles {
        t.prediction /= n;
    }
    Ok(tiles)
}
