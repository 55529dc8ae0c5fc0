//! The `opencarbon report` subcommand.

use std::path::PathBuf;

use anyhow::Result;

/// Write the figures and pages of an experiment: `<DIR>/report/{index.html,report.md,*.png,*.svg}`.
#[derive(clap::Args)]
pub struct ReportArgs {
    /// Experiment directory (results/<name>)
    dir: PathBuf,
}

pub fn main(args: ReportArgs) -> Result<()> {
    let report = super::write(&args.dir)?;
    for s in &report.skipped {
        eprintln!("warning: {s}");
    }
    println!(
        "{} figures → {}",
        report.figures.len(),
        report.dir.join("index.html").display()
    );
    Ok(())
}
