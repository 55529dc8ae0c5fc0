//! Cities as data: canonical directories round-trip and reject bad input with one clear error
//! each; the ODIAC importer reads the real tables; splits and neighbourhoods keep their promises.

use crate::common;

use std::collections::HashSet;
use std::path::Path;

use opencarbon::data::canonical;
use opencarbon::data::split::{BoundingBox, Buffer, Region};
use opencarbon::data::{
    odiac, City, ImageStack, NeighbourIndex, PoiStack, SplitConfig, Tabular, TileKey,
};
use proptest::prelude::*;

/// A small city with every modality, built directly.
fn handmade(keys: &[(i64, i64)], emissions: &[f64], seed: u8) -> City {
    let n = keys.len();
    let side = 8;
    City {
        name: "handmade".into(),
        keys: keys.iter().map(|&(x, y)| TileKey { x, y }).collect(),
        emission: emissions.to_vec(),
        images: Some(ImageStack {
            side,
            data: (0..n * 3 * side * side)
                .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
                .collect(),
        }),
        poi: Some(PoiStack {
            categories: vec!["a".into(), "b".into()],
            side,
            data: (0..n * 2 * side * side)
                .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
                .collect(),
            scale: vec![0.25, 1.5],
        }),
        tabular: Some(Tabular {
            columns: vec!["pop".into(), "gdp, m".into()],
            values: (0..n * 2).map(|i| i as f32 * 0.37 - 1.0).collect(),
        }),
        district: Some((0..n).map(|i| format!("d{}", i % 3)).collect()),
    }
}

#[test]
fn synthetic_city_round_trips_through_a_directory() {
    let city = common::tiny_city(4);
    let dir = tempfile::tempdir().unwrap();
    canonical::write(&city, dir.path(), &common::manifest()).unwrap();
    assert_eq!(canonical::load(dir.path()).unwrap(), city);
}

/// Writes a valid city, applies `damage`, and returns the load error.
fn load_error(damage: impl FnOnce(&Path)) -> String {
    let city = handmade(&[(0, 0), (1, 0), (0, 1), (1, 1)], &[1.0, 2.0, 0.0, 3.5], 1);
    let dir = tempfile::tempdir().unwrap();
    canonical::write(&city, dir.path(), &common::manifest()).unwrap();
    damage(dir.path());
    format!("{:#}", canonical::load(dir.path()).unwrap_err())
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from} not in {}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn each_bad_input_gets_one_clear_error() {
    let e = load_error(|d| std::fs::remove_file(d.join("city.yaml")).unwrap());
    assert!(e.contains("city.yaml"), "{e}");
    let e = load_error(|d| edit(&d.join("city.yaml"), "target:", "targte: x\ntarget:"));
    assert!(
        e.contains("city.yaml") && e.contains("targte") && e.contains("did you mean `target`"),
        "{e}"
    );
    let e = load_error(|d| edit(&d.join("tiles.csv"), "1,0,2,", "1,0,NaN,"));
    assert!(
        e.contains("tiles.csv") && e.contains("(1, 0)") && e.contains("NaN"),
        "{e}"
    );
    let e = load_error(|d| edit(&d.join("tiles.csv"), "1,0,2,", "1,0,-2,"));
    assert!(e.contains("(1, 0)") && e.contains("≥ 0"), "{e}");
    let e = load_error(|d| edit(&d.join("tiles.csv"), "1,0,2,", "1,0,,"));
    assert!(e.contains("(1, 0)") && e.contains("no `emission`"), "{e}");
    let e = load_error(|d| edit(&d.join("tiles.csv"), "1,0,2,", "0,0,2,"));
    assert!(e.contains("(0, 0)") && e.contains("already appears"), "{e}");
    let e = load_error(|d| edit(&d.join("tiles.csv"), "x,y,emission", "x,yy,emission"));
    assert!(e.contains("no column `y`"), "{e}");
    let e = load_error(|d| edit(&d.join("tiles.csv"), "1,0,2,", "1,zero,2,"));
    assert!(
        e.contains("line 3") && e.contains("`y`") && e.contains("zero"),
        "{e}"
    );
    let e = load_error(|d| std::fs::remove_file(d.join("images/1_1.png")).unwrap());
    assert!(e.contains("(1, 1)") && e.contains("no image"), "{e}");
    let e = load_error(|d| {
        image::GrayImage::new(8, 8)
            .save(d.join("images/1_1.png"))
            .unwrap()
    });
    assert!(e.contains("(1, 1)") && e.contains("1 channel"), "{e}");
    let e = load_error(|d| {
        image::RgbImage::new(9, 8)
            .save(d.join("images/1_1.png"))
            .unwrap()
    });
    assert!(e.contains("(1, 1)") && e.contains("9×8"), "{e}");
    let e = load_error(|d| std::fs::write(d.join("images/1_1.png"), b"not a png").unwrap());
    assert!(e.contains("(1, 1)") && e.contains("cannot read"), "{e}");
    let e = load_error(|d| {
        use ndarray_npy::WriteNpyExt;
        let a = ndarray::Array4::<u8>::zeros((3, 2, 8, 8));
        a.write_npy(std::fs::File::create(d.join("poi.npy")).unwrap())
            .unwrap();
    });
    assert!(
        e.contains("poi.npy") && e.contains("[3, 2, 8, 8]") && e.contains("4 tiles"),
        "{e}"
    );
    let e = load_error(|d| {
        use ndarray_npy::WriteNpyExt;
        let mut a = ndarray::Array4::<f32>::zeros((4, 2, 8, 8));
        a[[2, 1, 0, 0]] = f32::NAN;
        a.write_npy(std::fs::File::create(d.join("poi.npy")).unwrap())
            .unwrap();
    });
    assert!(e.contains("(0, 1)") && e.contains("`b`"), "{e}");
    let e = load_error(|d| {
        let path = d.join("tiles.csv");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<String> = text
            .lines()
            .map(|l| {
                if l.starts_with("1,0,") {
                    let mut f: Vec<&str> = l.split(',').collect();
                    f[4] = "inf";
                    f.join(",")
                } else {
                    l.to_string()
                }
            })
            .collect();
        std::fs::write(&path, lines.join("\n")).unwrap();
    });
    assert!(e.contains("(1, 0)") && e.contains("`pop`"), "{e}");
}

#[test]
fn f32_poi_files_are_quantised_per_channel() {
    let city = handmade(&[(0, 0), (1, 0)], &[1.0, 2.0], 0);
    let dir = tempfile::tempdir().unwrap();
    canonical::write(&city, dir.path(), &common::manifest()).unwrap();
    use ndarray_npy::WriteNpyExt;
    let values = ndarray::Array4::<f32>::from_shape_fn((2, 2, 8, 8), |(t, c, y, x)| {
        (t + c * 10 + y * x) as f32 * 0.5
    });
    values
        .write_npy(std::fs::File::create(dir.path().join("poi.npy")).unwrap())
        .unwrap();
    let text = std::fs::read_to_string(dir.path().join("city.yaml")).unwrap();
    let cut = text.find("  scale:").unwrap();
    let end = cut + text[cut..].find("\ntabular").unwrap();
    std::fs::write(
        dir.path().join("city.yaml"),
        format!("{}{}", &text[..cut], &text[end + 1..]),
    )
    .unwrap();
    let poi = canonical::load(dir.path()).unwrap().poi.unwrap();
    for ((t, c, y, x), v) in values.indexed_iter() {
        let stored = poi.data[((t * 2 + c) * 8 + y) * 8 + x] as f32 * poi.scale[c];
        assert!(
            (stored - v).abs() <= poi.scale[c] / 2.0 + 1e-4,
            "tile {t} channel {c}: stored {stored} vs {v} (scale {})",
            poi.scale[c]
        );
    }
}

/// The real Beijing labels (OPENCARBON_DATA, default ../shared/data), or None: skipped, a failure
/// under OPENCARBON_REQUIRE_TOOLS=1.
fn beijing() -> Option<std::path::PathBuf> {
    common::shared_data_file("odiac-tiles/labels/Beijing.csv")
}

#[test]
fn odiac_beijing_imports() {
    let Some(beijing) = beijing() else { return };
    let (city, _) = odiac::import(&beijing).unwrap();
    assert_eq!(city.len(), 4587);
    assert_eq!(city.samples().len(), 4581);
    assert_eq!(city.keys[0], TileKey { x: 12659, y: 4738 });
    assert!((city.emission[0] - 564.68396).abs() < 1e-9);
    let t = city.tabular.as_ref().unwrap();
    assert!((t.values[0] - (1917f32).ln()).abs() < 1e-5);
    assert_eq!(t.values[5], 1.0, "row 2 has gdp 10000.0, flagged");
    // The full 82×56 grid: almost every tile has its 8 neighbours.
    let index = NeighbourIndex::new(&city, 1);
    let inner = index
        .windows
        .iter()
        .filter(|w| w.iter().all(Option::is_some))
        .count();
    assert!(inner > 4000, "{inner}");
}

#[test]
fn odiac_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let Some(beijing) = beijing() else { return };
    let path = dir.path().join("Bad.csv");
    let text = std::fs::read_to_string(beijing).unwrap();
    let mut lines: Vec<&str> = text.lines().take(4).collect();
    let broken = lines[2].replacen("\"(12668,4714)\"", "\"(12668;4714)\"", 1);
    lines[2] = &broken;
    std::fs::write(&path, lines.join("\n")).unwrap();
    let e = format!("{:#}", odiac::import(&path).unwrap_err());
    assert!(e.contains("line 3") && e.contains("BD09"), "{e}");
}

#[test]
fn holdout_by_bbox_and_district() {
    let keys: Vec<(i64, i64)> = (0..6).flat_map(|y| (0..6).map(move |x| (x, y))).collect();
    let city = handmade(&keys, &vec![1.0; 36], 0);
    let split = SplitConfig::Holdout {
        test: Region {
            bbox: Some(BoundingBox {
                x: [0, 1],
                y: [0, 5],
            }),
            districts: None,
        },
        valid: 0.25,
        block: 2,
        seed: Some(1),
        buffer: None,
    }
    .split(&city, 0)
    .unwrap();
    assert!(split.test.iter().all(|&i| city.keys[i].x <= 1));
    assert_eq!(split.test.len(), 12);
    let by_district = SplitConfig::Holdout {
        test: Region {
            bbox: None,
            districts: Some(vec!["d0".into()]),
        },
        valid: 0.25,
        block: 2,
        seed: None,
        buffer: None,
    }
    .split(&city, 0)
    .unwrap();
    assert!(by_district
        .test
        .iter()
        .all(|&i| city.district.as_ref().unwrap()[i] == "d0"));
}

#[test]
fn split_file_errors() {
    let city = handmade(&[(0, 0), (1, 0), (0, 1)], &[1.0, 2.0, 3.0], 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("split.csv");
    let check = |text: &str| {
        std::fs::write(&path, text).unwrap();
        format!(
            "{:#}",
            SplitConfig::File { path: path.clone() }
                .split(&city, 0)
                .unwrap_err()
        )
    };
    assert!(check("x,y,split\n0,0,train\n5,5,test\n").contains("(5, 5) is not a tile"));
    assert!(check("x,y,split\n0,0,train\n0,0,test\n").contains("already listed on line 2"));
    assert!(check("x,y,split\n0,0,training\n").contains("train, valid, test or unused"));
}

#[test]
fn cv_specs_expand_into_folds_and_check_their_keys() {
    use opencarbon::spec::{Experiment, RunSpec};
    let text = "name: cv\nseeds: [1, 2]\n\
        dataset: {kind: synthetic, preset: monocentric, width: 8, height: 8, tile_side: 16, poi_categories: 4, seed: 2}\n\
        split: {kind: spatial_cv, folds: 3, block: 2, buffer: 1}\n\
        variants: {full: {}, no_se: {model: {se: false}}}\n";
    let e = Experiment::parse(text, "cv.yaml", &[]).unwrap();
    // variants × seeds × folds
    assert_eq!(e.runs.len(), 2 * 2 * 3);
    let ids: HashSet<String> = e.runs.iter().map(|r| r.run_id()).collect();
    assert_eq!(ids.len(), 12);
    for r in &e.runs {
        let f = r.split.fold().unwrap();
        assert!(
            r.run_id().starts_with(&format!("s{}-f{f}-", r.seed)),
            "{}",
            r.run_id()
        );
    }
    // A fold given in the spec is one run; a single-run spec expands too.
    let one = Experiment::parse(
        &text.replace("buffer: 1}", "buffer: 1, fold: 2}"),
        "cv.yaml",
        &[],
    )
    .unwrap();
    assert_eq!(one.runs.len(), 4);
    let single = "name: cv\ndataset: {kind: synthetic, preset: monocentric, width: 8, height: 8, tile_side: 16, poi_categories: 4}\nsplit: {kind: random_cv, folds: 5}\n";
    assert_eq!(
        Experiment::parse(single, "one.yaml", &[])
            .unwrap()
            .runs
            .len(),
        5
    );
    // Bad keys name themselves.
    for (bad, says) in [
        (
            "split: {kind: spatial_cv, folds: 1, block: 2}",
            "split.folds",
        ),
        (
            "split: {kind: spatial_cv, folds: 3, block: 0}",
            "split.block",
        ),
        ("split: {kind: random_cv, folds: 3, fold: 3}", "split.fold"),
        (
            "split: {kind: random_cv, folds: 3, valid: 1.5}",
            "split.valid",
        ),
    ] {
        let text = format!("name: cv\ndataset: {{kind: synthetic, preset: monocentric, width: 8, height: 8}}\n{bad}\n");
        let e = format!("{:#}", RunSpec::parse(&text, "bad.yaml", &[]).unwrap_err());
        assert!(e.contains(says), "{bad}: {e}");
    }
    // A fold-less CV split cannot split on its own.
    let city = grid_city(6, 6, &[false], &[false]);
    let e = SplitConfig::RandomCv {
        folds: 3,
        valid: 0.25,
        seed: None,
        fold: None,
    }
    .split(&city, 0)
    .unwrap_err();
    assert!(format!("{e:#}").contains("split.fold is not set"));
}

#[test]
fn split_csv_round_trips_as_a_file_split() {
    let city = grid_city(9, 9, &[false], &[false, false, false, true]);
    let config = SplitConfig::SpatialCv {
        folds: 3,
        block: 3,
        buffer: Some(Buffer::Tiles(1)),
        valid_buffer: None,
        valid: 0.25,
        seed: Some(4),
        fold: Some(1),
        inner: None,
    };
    let split = config.split(&city, 0).unwrap();
    let text = opencarbon::data::split::to_csv(&city, &split, &city.samples());
    // Samples in the buffer are listed as unused; tiles with no emission are not listed.
    let unused = text.lines().filter(|l| l.ends_with(",unused")).count();
    assert_eq!(
        unused + split.train.len() + split.valid.len() + split.test.len(),
        city.samples().len()
    );
    assert!(unused > 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("split.csv");
    std::fs::write(&path, &text).unwrap();
    let back = SplitConfig::File { path }.split(&city, 0).unwrap();
    let sorted = |v: &[usize]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    assert_eq!(sorted(&back.train), sorted(&split.train));
    assert_eq!(sorted(&back.valid), sorted(&split.valid));
    assert_eq!(sorted(&back.test), sorted(&split.test));
}

fn grid_city(w: i64, h: i64, holes: &[bool], zero: &[bool]) -> City {
    let mut keys = Vec::new();
    let mut emissions = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let i = (y * w + x) as usize;
            if !holes[i % holes.len()] {
                keys.push((x, y));
                emissions.push(if zero[i % zero.len()] {
                    0.0
                } else {
                    1.0 + i as f64
                });
            }
        }
    }
    if emissions.iter().all(|e| *e == 0.0) && !emissions.is_empty() {
        emissions[0] = 1.0;
    }
    handmade(&keys, &emissions, 0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn splits_are_disjoint_and_cover_every_sample(
        w in 4i64..14, h in 4i64..14, seed in 0u64..1000, block in 1usize..5,
        holes in proptest::collection::vec(proptest::bool::weighted(0.1), 1..7),
        zero in proptest::collection::vec(proptest::bool::weighted(0.1), 1..5),
    ) {
        let city = grid_city(w, h, &holes, &zero);
        prop_assume!(city.samples().len() >= 12);
        for config in [
            SplitConfig::Random { test: 0.2, valid: 0.25, seed: None },
            SplitConfig::Blocks { block, test: 0.2, valid: 0.25, seed: None },
        ] {
            let Ok(split) = config.split(&city, seed) else { continue };
            let mut all: Vec<usize> = split.train.iter().chain(&split.valid).chain(&split.test).copied().collect();
            all.sort();
            let n = all.len();
            all.dedup();
            prop_assert_eq!(n, all.len(), "a sample is in two splits");
            prop_assert_eq!(all, city.samples());
            if let SplitConfig::Blocks { block, .. } = config {
                let b = block as i64;
                let part = |set: &[usize]| set.iter().map(|&i| (city.keys[i].x.div_euclid(b), city.keys[i].y.div_euclid(b))).collect::<HashSet<_>>();
                let (tr, va, te) = (part(&split.train), part(&split.valid), part(&split.test));
                prop_assert!(tr.is_disjoint(&va) && tr.is_disjoint(&te) && va.is_disjoint(&te), "a block straddles splits");
            }
        }
    }

    /// Over its k folds, a cross-validation split tests every sample exactly once; each run's
    /// train, valid and test are disjoint; spatial folds hold whole blocks, are balanced to within
    /// one block, and keep training and validation outside the buffer around the test tiles.
    #[test]
    fn cv_folds_test_every_sample_once_in_whole_blocks_outside_the_buffer(
        w in 5i64..16, h in 5i64..16, seed in 0u64..1000, block in 1usize..5,
        folds in 2usize..6, buffer in 0usize..3,
        holes in proptest::collection::vec(proptest::bool::weighted(0.1), 1..7),
    ) {
        let city = grid_city(w, h, &holes, &[false]);
        prop_assume!(city.samples().len() >= 30);
        let spatial = SplitConfig::SpatialCv { folds, block, buffer: Some(Buffer::Tiles(buffer)), valid_buffer: None, valid: 0.25, seed: None, fold: None, inner: None };
        let random = SplitConfig::RandomCv { folds, valid: 0.25, seed: None, fold: None };
        for config in [spatial, random] {
            let mut tested = Vec::new();
            let mut sizes = Vec::new();
            for f in 0..folds {
                let Ok(split) = config.with_fold(f).split(&city, seed) else { continue };
                let (tr, va, te): (HashSet<usize>, HashSet<usize>, HashSet<usize>) = (
                    split.train.iter().copied().collect(),
                    split.valid.iter().copied().collect(),
                    split.test.iter().copied().collect(),
                );
                prop_assert!(tr.is_disjoint(&va) && tr.is_disjoint(&te) && va.is_disjoint(&te));
                // The same fold and seed give the same split.
                prop_assert_eq!(config.with_fold(f).split(&city, seed).unwrap(), split.clone());
                if let SplitConfig::SpatialCv { .. } = config {
                    let b = block as i64;
                    let blocks = |set: &HashSet<usize>| set.iter().map(|&i| (city.keys[i].x.div_euclid(b), city.keys[i].y.div_euclid(b))).collect::<HashSet<_>>();
                    prop_assert!(blocks(&te).is_disjoint(&blocks(&tr)) && blocks(&te).is_disjoint(&blocks(&va)));
                    let r = buffer as i64;
                    for &i in tr.iter().chain(&va) {
                        let k = city.keys[i];
                        prop_assert!(te.iter().all(|&t| {
                            let q = city.keys[t];
                            (q.x - k.x).abs().max((q.y - k.y).abs()) > r
                        }), "tile {} lies in the buffer", k);
                    }
                    if buffer == 0 {
                        prop_assert_eq!(tr.len() + va.len() + te.len(), city.samples().len());
                    }
                } else {
                    prop_assert_eq!(tr.len() + va.len() + te.len(), city.samples().len());
                }
                sizes.push(te.len());
                tested.extend(split.test);
            }
            prop_assume!(sizes.len() == folds);
            tested.sort();
            prop_assert_eq!(&tested, &city.samples(), "every sample is tested exactly once");
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            let limit = if matches!(config, SplitConfig::RandomCv { .. }) { 1 } else { block * block };
            prop_assert!(hi - lo <= limit, "fold sizes {:?}", sizes);
        }
    }

    #[test]
    fn neighbourhoods_are_symmetric(
        w in 1i64..9, h in 1i64..9, radius in 1usize..3,
        holes in proptest::collection::vec(proptest::bool::weighted(0.2), 1..7),
    ) {
        let city = grid_city(w, h, &holes, &[false]);
        prop_assume!(!city.is_empty());
        let index = NeighbourIndex::new(&city, radius);
        let len = index.window_len();
        for (i, window) in index.windows.iter().enumerate() {
            prop_assert_eq!(window[index.centre_position()], Some(i));
            for (pos, n) in window.iter().enumerate() {
                if let Some(j) = n {
                    // offset (dx, dy) from i to j is (−dx, −dy) from j to i: the mirrored position.
                    prop_assert_eq!(index.windows[*j][len - 1 - pos], Some(i));
                    let (dx, dy) = (city.keys[*j].x - city.keys[i].x, city.keys[*j].y - city.keys[i].y);
                    prop_assert!(dx.abs() <= radius as i64 && dy.abs() <= radius as i64);
                }
            }
        }
    }

    #[test]
    fn write_then_load_round_trips_exactly(
        n in 1usize..6, seed in any::<u8>(),
        emissions in proptest::collection::vec(0.0f64..1e6, 6),
    ) {
        let keys: Vec<(i64, i64)> = (0..n as i64).map(|i| (i * 3 - 4, 7 - i)).collect();
        let mut e = emissions[..n].to_vec();
        e[0] = e[0].max(1e-3);
        let city = handmade(&keys, &e, seed);
        let dir = tempfile::tempdir().unwrap();
        canonical::write(&city, dir.path(), &common::manifest()).unwrap();
        prop_assert_eq!(canonical::load(dir.path()).unwrap(), city);
    }
}

#[test]
fn baseline_features_sum_poi_rasters_and_name_unknown_columns() {
    let city = handmade(&[(0, 0), (1, 0)], &[1.0, 2.0], 3);
    let rows =
        opencarbon::baselines::features(&city, &["poi:b".into(), "pop".into()], &[1]).unwrap();
    let p = city.poi.as_ref().unwrap();
    let plane = 64;
    let want: f64 = p.data[(2 + 1) * plane..(2 + 2) * plane]
        .iter()
        .map(|&v| v as f64)
        .sum::<f64>()
        * 1.5;
    assert!((rows[0][0] - want).abs() < 1e-9);
    assert_eq!(rows[0][1], city.tabular.as_ref().unwrap().values[2] as f64);
    assert_eq!(
        opencarbon::baselines::features(&city, &["poi:*".into()], &[0]).unwrap()[0].len(),
        2
    );
    let e = format!(
        "{:#}",
        opencarbon::baselines::features(&city, &["popu".into()], &[0]).unwrap_err()
    );
    assert!(
        e.contains("no covariate `popu`") && e.contains("pop"),
        "{e}"
    );
}

/// `lag<k>:<feature>`: the feature's mean over the (2k+1)² window, the tile included and missing
/// neighbours skipped; POI totals lag like covariates; a bad lag names itself.
#[test]
fn lagged_features_average_the_window_and_skip_missing_tiles() {
    use opencarbon::baselines::features;
    // A 3×3 grid without its (2, 2) corner.
    let keys: Vec<(i64, i64)> = (0..3)
        .flat_map(|y| (0..3).map(move |x| (x, y)))
        .filter(|&k| k != (2, 2))
        .collect();
    let city = handmade(&keys, &vec![1.0; keys.len()], 1);
    let pop = |i: usize| city.tabular.as_ref().unwrap().values[2 * i] as f64;
    let at = |x: i64, y: i64| keys.iter().position(|&k| k == (x, y)).unwrap();
    // The centre's window holds all 8 tiles; (2, 1)'s holds 5 (the missing corner skipped).
    let centre = at(1, 1);
    let lagged = features(
        &city,
        &["lag1:pop".into(), "pop".into()],
        &[centre, at(2, 1)],
    )
    .unwrap();
    let all: f64 = (0..keys.len()).map(pop).sum::<f64>() / 8.0;
    assert!((lagged[0][0] - all).abs() < 1e-12);
    assert_eq!(lagged[0][1], pop(centre));
    let edge: Vec<usize> = [(1, 0), (2, 0), (1, 1), (2, 1), (1, 2)]
        .iter()
        .map(|&(x, y)| at(x, y))
        .collect();
    let want = edge.iter().map(|&i| pop(i)).sum::<f64>() / 5.0;
    assert!((lagged[1][0] - want).abs() < 1e-12);
    // lag1:poi:* gives one lagged total per category.
    let poi = features(&city, &["lag1:poi:*".into()], &[centre]).unwrap();
    let totals = features(
        &city,
        &["poi:*".into()],
        &(0..keys.len()).collect::<Vec<_>>(),
    )
    .unwrap();
    for c in 0..2 {
        let want = totals.iter().map(|r| r[c]).sum::<f64>() / 8.0;
        assert!((poi[0][c] - want).abs() < 1e-9 * want.abs().max(1.0));
    }
    for bad in ["lag:pop", "lag0:pop", "lag9:pop", "lag1:lag1:pop"] {
        let e = format!("{:#}", features(&city, &[bad.into()], &[0]).unwrap_err());
        assert!(
            e.contains(bad) && e.contains("lag<k>:<feature>"),
            "{bad}: {e}"
        );
    }
}
