//! The `opencarbon results` subcommand: rebuild an experiment's tables, and check its
//! expectations.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::expect::{self, Expectation};
use super::TableOptions;
use crate::track::atomic;

#[derive(clap::Args)]
pub struct ResultsArgs {
    /// The experiment directory (results/<name>)
    dir: PathBuf,
    /// Check the spec's expectations (`expect:`, saved in experiment.json by `run`); exit
    /// non-zero when one fails
    #[arg(long)]
    check: bool,
    /// With --check, also write them as JUnit XML to this file
    #[arg(long, requires = "check")]
    junit: Option<PathBuf>,
    /// Replace the tables even when they would be built from fewer runs than they hold
    #[arg(long)]
    force: bool,
}

pub fn main(args: ResultsArgs) -> Result<()> {
    print!("{}", super::write_summary(&args.dir, args.force)?);
    // After a Slurm sweep this is the finishing job: the runs' records join the archive.
    crate::record::archive::export(&args.dir)?;
    if args.check {
        check_expectations(&args.dir, args.junit.as_deref())?;
    }
    Ok(())
}

/// Prints each expectation of `dir` with its evidence (and writes JUnit XML); fails when one
/// does not hold.
pub fn check_expectations(dir: &Path, junit: Option<&Path>) -> Result<()> {
    let options = TableOptions::read(dir)?;
    if options.expect.is_empty() {
        println!(
            "{}: no expectations (a spec states them under `expect:`)",
            dir.display()
        );
    }
    let rows = super::collect(dir)?;
    let mut order = options.variants.clone();
    for r in &rows {
        if !order.contains(&r.variant) {
            order.push(r.variant.clone());
        }
    }
    let reference = options
        .reference
        .clone()
        .or_else(|| order.first().cloned())
        .unwrap_or_default();
    let table = super::comparison::compare(&rows, &reference, &order);
    let outcomes: Vec<expect::Outcome> = options
        .expect
        .iter()
        .map(|line| {
            let e = Expectation::parse(line).with_context(|| {
                format!(
                    "{}: expectation `{line}`",
                    dir.join(super::TABLE_OPTIONS).display()
                )
            })?;
            Ok(expect::check(line, &e, &rows, &table))
        })
        .collect::<Result<_>>()?;
    print!("{}", expect::report(&outcomes));
    if let Some(path) = junit {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        atomic::write(path, expect::junit(&name, &outcomes).as_bytes())?;
    }
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    if failed > 0 {
        bail!("{failed} of {} expectation(s) failed", outcomes.len());
    }
    Ok(())
}
