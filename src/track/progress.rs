//! Progress bars: one per run (epoch, loss, last validation R²).

use indicatif::{ProgressBar, ProgressStyle};

pub fn run_bar(epochs: usize, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(epochs as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] epoch {pos}/{len} {msg} ({elapsed}, eta {eta})",
        )
        .expect("static progress template")
        .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}
