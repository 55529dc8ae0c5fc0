//! `opencarbon report`: every figure of a small cross-validated sweep over two cities is written
//! as PNG and SVG at its stated size and is not blank; a map's pixel at a known tile has the
//! colour of that tile's value; the transfer heat map colours a known cell; the HTML page is
//! self-contained and renders in a real headless Chromium with every image loaded; a damaged
//! run file is an error naming it; a clone with only the records reports the same figures.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use opencarbon::report::{self, figure::Figure, inputs::Inputs};
use opencarbon::spec::Experiment;

/// Two small cities, spatial 3-fold CV, one seed: two networks (2 epochs) and two baselines.
const SPEC: &str = "name: report
seeds: [1]
datasets:
  mono: {kind: synthetic, preset: monocentric, width: 6, height: 6, tile_side: 16, poi_categories: 4, seed: 5}
  poly: {kind: synthetic, preset: polycentric, width: 6, height: 6, tile_side: 16, poi_categories: 4, seed: 6}
split: {kind: spatial_cv, folds: 3, block: 2}
train: {epochs: 2, batch_size: 16, validate_every: 1, standardize_target: true, early_stopping: {rule: off}}
variants:
  full: {}
  no_neighbourhood: {model: {neighbourhood: 0}}
  ridge: {baseline: {kind: ridge, columns: [ln_population, ln_gdp, 'poi:*']}}
  mean: {baseline: {kind: mean}}
";

/// The sweep, run once for the tests of this file; the directory lives for the process.
fn experiment() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // A static is never dropped, so a tempdir here would stay behind after every run
        // (500 MB each): the fixture lives under the target dir, one per test process, and the
        // fixtures of processes that have ended are removed first.
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
        if let Ok(entries) = std::fs::read_dir(root) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let ended = name
                    .strip_prefix("report-fixture-")
                    .is_some_and(|pid| !Path::new("/proc").join(pid).exists());
                if ended && Path::new("/proc/self").exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let tmp = root.join(format!("report-fixture-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let out = tmp.join("report");
        let e = Experiment::parse(SPEC, "report.yaml", &[]).unwrap();
        let (sweep, _) = common::sweep(&e, &common::run_options(&out), &[]);
        assert!(sweep.failed.is_empty(), "{:?}", sweep.failed);
        report::write(&out).unwrap();
        out
    })
}

fn rgb(path: &Path) -> image::RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

/// Variance of the pixels' luminance: 0 for a blank image.
fn variance(img: &image::RgbImage) -> f64 {
    let l: Vec<f64> = img
        .pixels()
        .map(|p| 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64)
        .collect();
    let mean = l.iter().sum::<f64>() / l.len() as f64;
    l.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / l.len() as f64
}

#[test]
fn every_figure_is_written_at_its_size_and_is_not_blank() {
    let dir = experiment().join("report");
    let inputs = Inputs::read(experiment()).unwrap();
    let mut expected: Vec<(String, Option<(u32, u32)>)> = Vec::new();
    for ds in ["mono", "poly"] {
        let bars = report::bars::AblationBars::of(&inputs, ds).unwrap();
        let curves = report::curves::LearningCurves::of(&inputs, ds).unwrap();
        let scatter = report::scatter::PredictedVsTrue::of(&inputs, ds).unwrap();
        let map = report::maps::predictions(&inputs, ds).unwrap();
        let split = report::maps::split(&inputs, ds).unwrap();
        // Learning curves for the two networks only; bars and scatter for all four variants.
        assert_eq!(curves.loss.len(), 2);
        assert_eq!(scatter.panels.len(), 4);
        assert_eq!(bars.metrics[0].bars.len(), 4);
        expected.push((format!("bars-{ds}"), Some(bars.size())));
        expected.push((format!("curves-{ds}"), Some(curves.size())));
        expected.push((format!("predicted-{ds}"), Some(scatter.size())));
        expected.push((format!("map-{ds}"), Some(map.size())));
        expected.push((format!("split-{ds}"), Some(split.size())));
        expected.push((format!("city-{ds}"), None));
    }
    let cd = report::cd::CriticalDifference::of(&inputs).expect("2 datasets × 4 variants");
    expected.push(("critical-difference".into(), Some(cd.size())));
    for (stem, size) in &expected {
        let png = dir.join(format!("{stem}.png"));
        let img = rgb(&png);
        if let Some((w, h)) = size {
            assert_eq!(img.dimensions(), (*w, *h), "{stem}");
            let svg = std::fs::read_to_string(dir.join(format!("{stem}.svg"))).unwrap();
            assert!(
                svg.contains("<svg") && svg.trim_end().ends_with("</svg>"),
                "{stem}.svg"
            );
        }
        assert!(variance(&img) > 100.0, "{stem}.png looks blank");
    }
    // The pages: one image per figure in each.
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    for (stem, _) in &expected {
        assert!(
            md.contains(&format!("]({stem}.png)")),
            "report.md lacks {stem}"
        );
    }
    assert_eq!(
        html.matches("<img src=\"data:image/png;base64,").count(),
        expected.len()
    );
    // Self-contained: no scripts, nothing fetched.
    for forbidden in ["<script", "src=\"http", "href=\"http", "@import", "url("] {
        assert!(!html.contains(forbidden), "index.html contains {forbidden}");
    }
    // The CV split map has one colour per fold.
    let split = report::maps::split(&inputs, "mono").unwrap();
    match &split.panels[0].scale {
        report::maps::Scale::Categorical(labels) => {
            assert_eq!(&labels[..3], ["fold 0", "fold 1", "fold 2"])
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_maps_pixel_at_a_known_tile_has_the_colour_of_its_value() {
    let inputs = Inputs::read(experiment()).unwrap();
    let map = report::maps::predictions(&inputs, "mono").unwrap();
    let img = rgb(&experiment().join("report/map-mono.png"));
    // Out-of-fold predictions over three folds: every tile of the 6×6 city is on the map.
    assert_eq!(map.panels[0].tiles.len(), 36);
    for (panel_index, panel) in map.panels.iter().enumerate() {
        for &(x, y, value) in panel.tiles.iter().step_by(7) {
            let (px, py) = map.tile_centre(panel_index, x, y);
            let want = panel.scale.colour(value);
            let got = img.get_pixel(px, py);
            assert_eq!(
                [got[0], got[1], got[2]],
                [want.0, want.1, want.2],
                "{} at tile ({x}, {y}) = {value}",
                panel.title
            );
        }
    }
    // The target panel's values are the runs' own targets.
    let run = &inputs.runs_of("mono", "full")[0];
    let p = run.predictions[0];
    let on_map = map.panels[0]
        .tiles
        .iter()
        .find(|t| (t.0, t.1) == (p.x, p.y))
        .unwrap();
    assert_eq!(on_map.2, p.target);
}

#[test]
fn the_transfer_heat_map_colours_each_cell_by_its_r2() {
    use opencarbon::metrics::Metrics;
    use opencarbon::transfer::TransferRow;
    let mut inputs = Inputs::read(experiment()).unwrap();
    // Give the `full` runs of mono zero-shot rows on poly with a known R².
    for run in inputs.runs.iter_mut() {
        if run.row.variant == "full" && run.row.dataset == "mono" {
            run.row.transfer = vec![TransferRow {
                target: "poly".into(),
                fraction: 0.0,
                tiles: "all".into(),
                fine_tune_tiles: 0,
                metrics: Metrics {
                    r2: 0.25,
                    rmse: 1.0,
                    mae: 1.0,
                    mape: 0.1,
                    n: 36,
                },
                aoa_inside: None,
            }];
        }
    }
    let heat = report::transfer::TransferHeatmap::of(&inputs).expect("one variant transfers");
    assert_eq!(heat.matrices.len(), 1);
    let cell = heat.matrices[0].cells[&("mono".to_string(), "poly".to_string())];
    assert_eq!(cell, 0.25);
    let dir = tempfile::tempdir().unwrap();
    report::figure::save(&heat, dir.path(), "transfer", "t").unwrap();
    let img = rgb(&dir.path().join("transfer.png"));
    assert_eq!(img.dimensions(), heat.size());
    let at = |c: &str| heat.cities.iter().position(|x| x == c).unwrap();
    let (x, y) = heat.cell_pixel(0, at("mono"), at("poly"));
    let want = heat.colour(0.25);
    let got = img.get_pixel(x, y);
    assert_eq!([got[0], got[1], got[2]], [want.0, want.1, want.2]);
}

/// Renders index.html in headless Chromium: a screenshot that is not blank, and (through a
/// harness page that opens it in a frame) every image complete with a non-zero natural width.
/// The test command installs Debian's chromium and sets OPENCARBON_REQUIRE_TOOLS=1, so there
/// it cannot be skipped.
#[test]
fn index_html_renders_in_headless_chromium_with_every_image_loaded() {
    let Some(chromium) = common::chromium() else {
        return;
    };
    let dir = experiment().join("report");
    let profile = tempfile::tempdir().unwrap();
    let flags = |extra: &[&str]| {
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let screenshot = dir.join("chromium-screenshot.png");
    let page = format!("file://{}", dir.join("index.html").display());
    common::run_chromium(
        &chromium,
        &flags(&[
            &format!("--screenshot={}", screenshot.display()),
            "--window-size=1400,2400",
            "--virtual-time-budget=10000",
            &page,
        ]),
        |out| out.status.success() && screenshot.is_file(),
    );
    let shot = rgb(&screenshot);
    assert!(variance(&shot) > 100.0, "the screenshot is blank");
    std::fs::remove_file(&screenshot).unwrap();

    let harness = dir.join("harness.html");
    std::fs::write(
        &harness,
        "<!DOCTYPE html><html><body><iframe id=\"f\" src=\"index.html\" width=\"1400\" height=\"900\"></iframe>\
         <pre id=\"result\">pending</pre><script>\
         document.getElementById('f').addEventListener('load', function () {\
           var imgs = Array.from(this.contentDocument.images);\
           var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });\
           document.getElementById('result').textContent = 'images ' + imgs.length + ' loaded ' + ok.length;\
         });</script></body></html>",
    )
    .unwrap();
    let out = common::run_chromium(
        &chromium,
        &flags(&[
            "--allow-file-access-from-files",
            "--virtual-time-budget=10000",
            "--dump-dom",
            &format!("file://{}", harness.display()),
        ]),
        |out| out.status.success(),
    );
    std::fs::remove_file(&harness).unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let result = dom
        .split("<pre id=\"result\">")
        .nth(1)
        .and_then(|s| s.split("</pre>").next())
        .unwrap_or_else(|| panic!("no result in the DOM: {dom}"));
    let numbers: Vec<usize> = result
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 2, "{result}");
    assert!(numbers[0] >= 13, "{result}");
    assert_eq!(numbers[0], numbers[1], "not every image loaded: {result}");
}

/// Copies the experiment `from` to `to` without its run directories and report.
fn copy_without_runs(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if path.is_dir() {
            if name != "runs" && name != "report" {
                copy_without_runs(&path, &to.join(name));
            }
        } else {
            std::fs::copy(&path, to.join(name)).unwrap();
        }
    }
}

#[test]
fn a_clone_with_only_the_records_reports_the_same_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let clone = tmp.path().join("report");
    copy_without_runs(experiment(), &clone);
    let written = report::write(&clone).unwrap();
    assert!(written.skipped.is_empty(), "{:?}", written.skipped);
    let inputs = Inputs::read(&clone).unwrap();
    assert!(inputs
        .runs
        .iter()
        .all(|r| matches!(r.origin, report::inputs::Origin::Records { .. })));
    // Every figure (curves, scatter, maps, the split rebuilt from the spec), as from the runs.
    assert!(written.figures.len() >= 13, "{}", written.figures.len());
    for f in &written.figures {
        for ext in ["png", "svg"] {
            let name = format!("{}.{ext}", f.stem);
            let Ok(bytes) = std::fs::read(clone.join("report").join(&name)) else {
                assert_eq!(ext, "svg", "{name} not written");
                continue;
            };
            if ext == "png" {
                assert!(
                    variance(&rgb(&clone.join("report").join(&name))) > 100.0,
                    "{name}"
                );
            }
            let from_runs = std::fs::read(experiment().join("report").join(&name)).unwrap();
            assert!(
                bytes == from_runs,
                "{name} differs from the report of the runs"
            );
        }
    }
    // A damaged archive is an error naming the file and the run, not a panic.
    std::fs::write(clone.join("records/predictions.parquet"), "not parquet").unwrap();
    let err = format!(
        "{:#}",
        report::write(&clone)
            .err()
            .expect("a damaged archive fails")
    );
    assert!(
        err.contains("predictions.parquet") && err.contains("run "),
        "{err}"
    );
}

#[test]
fn a_damaged_run_file_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("damaged");
    let spec = "name: damaged
seeds: [1]
dataset: {kind: synthetic, preset: monocentric, width: 6, height: 6, tile_side: 16, poi_categories: 4, seed: 5}
split: {kind: random, test: 0.2, valid: 0.25}
variants:
  ridge: {baseline: {kind: ridge, columns: [ln_population, ln_gdp]}}
  mean: {baseline: {kind: mean}}
";
    let e = Experiment::parse(spec, "damaged.yaml", &[]).unwrap();
    common::sweep(&e, &common::run_options(&out), &[]);
    report::write(&out).unwrap();
    // A report killed mid-write leaves its scratch file; the next report sweeps a dead writer's,
    // and leaves a live one's (this process) alone.
    let dead = out.join(format!("report/.report.md.{}.tmp", common::dead_pid()));
    let live = out.join(format!("report/.notes.md.{}.tmp", std::process::id()));
    std::fs::write(&dead, "half a report").unwrap();
    std::fs::write(&live, "kept").unwrap();
    report::write(&out).unwrap();
    assert!(!dead.exists(), "a dead writer's scratch file stayed");
    assert!(live.exists());
    let run = out.join("runs").join(e.runs[0].run_id());
    // A damaged predictions.csv makes the run untrusted (record::state): the report is still
    // written, and says which run it left out and why.
    let predictions = run.join("predictions.csv");
    let text = std::fs::read_to_string(&predictions).unwrap();
    std::fs::write(&predictions, text.replacen('\n', "\n1,2,three,4\n", 1)).unwrap();
    let written = report::write(&out).unwrap();
    assert_eq!(written.skipped.len(), 1, "{:?}", written.skipped);
    assert!(
        written.skipped[0].contains(&e.runs[0].run_id()),
        "{:?}",
        written.skipped
    );
    assert!(
        written.skipped[0].contains("predictions.csv"),
        "{:?}",
        written.skipped
    );
    // The run's archived record still counts: its figures are drawn from it, and the page says so.
    assert!(
        written.skipped[0].contains("drawn from its archived record"),
        "{:?}",
        written.skipped
    );
    let html = std::fs::read_to_string(out.join("report/index.html")).unwrap();
    assert!(html.contains("drawn from its archived record"));
    // Without the records the damaged run counts nowhere: left out, saying why.
    let records = tmp.path().join("records-aside");
    std::fs::rename(out.join("records"), &records).unwrap();
    let written = report::write(&out).unwrap();
    assert!(
        written
            .skipped
            .iter()
            .any(|s| s.contains(&e.runs[0].run_id()) && s.contains("left out")),
        "{:?}",
        written.skipped
    );
    std::fs::rename(&records, out.join("records")).unwrap();
    std::fs::write(&predictions, text).unwrap();
    // A damaged split.csv of a finished run is an error naming the file, line and field.
    let split = run.join("split.csv");
    let text = std::fs::read_to_string(&split).unwrap();
    std::fs::write(&split, text.replacen('\n', "\n1,y2,test\n", 1)).unwrap();
    let err = format!(
        "{:#}",
        report::write(&out).err().expect("a damaged file fails")
    );
    assert!(
        err.contains("split.csv line 2") && err.contains("y2"),
        "{err}"
    );
    // An empty directory is an error naming it, not a panic.
    let err = format!("{:#}", report::write(tmp.path()).err().unwrap());
    assert!(err.contains("no runs/ directory"), "{err}");
}
