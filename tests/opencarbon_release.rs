//! The original OpenCarbon release layout: the test writes a tiny fixture in exactly that layout
//! (pickled dicts in .npy, PNG tiles, split .pkl files), converts it with
//! `opencarbon datasets import-opencarbon` and checks what the loader reads back.
//! Needs Python with numpy and pillow: `scripts/test.sh` provides it through OPENCARBON_PYTHON.

use std::path::Path;
use std::process::Command;

use crate::common;

use opencarbon::data::canonical;
use opencarbon::data::TileKey;

const FIXTURE: &str = r#"
import pickle, sys
from pathlib import Path
import numpy as np
from PIL import Image
src = Path(sys.argv[1]); src.mkdir(parents=True, exist_ok=True)
tiles = [(10, 20), (11, 20), (10, 21), (11, 21)]
rng = np.random.default_rng(0)
poi = {t: (rng.random((12, 12, 3)) * [1.0, 2.0, 4.0]).astype(np.float32) for t in tiles}
carbon = {t: float(v) for t, v in zip(tiles, [120.5, 0.0, 33.25, 9.0])}
counts = {t: np.array([i, 2 * i, 3], dtype=np.int64) for i, t in enumerate(tiles)}
np.save(src / "tile2poi_distribution_demo.npy", poi, allow_pickle=True)
np.save(src / "til2carbon_demo.npy", carbon, allow_pickle=True)
np.save(src / "tile2poi_count_demo.npy", counts, allow_pickle=True)
(src / "satellite_images_demo").mkdir(exist_ok=True)
for i, t in enumerate(tiles):
    Image.fromarray(np.full((16, 16, 3), 40 * i, dtype=np.uint8)).save(src / "satellite_images_demo" / f"{t[0]}_{t[1]}.png")
for name, part in [("demo_train", [(10, 20)]), ("demo_valid", [(10, 21)]), ("demo_test", [(11, 21)])]:
    with open(src / f"{name}.pkl", "wb") as f:
        pickle.dump(part, f)
np.save(src / "expected_poi.npy", np.stack([poi[t].transpose(2, 0, 1) for t in sorted(tiles)]))
"#;

/// OPENCARBON_PYTHON with numpy and pillow, or None (skipped; OPENCARBON_REQUIRE_TOOLS=1: fails).
fn python() -> Option<String> {
    common::python(&["numpy", "PIL"])
}

fn write_fixture(python: &str, src: &Path) {
    let status = Command::new(python)
        .args(["-c", FIXTURE])
        .arg(src)
        .status()
        .unwrap();
    assert!(status.success(), "writing the fixture failed");
}

fn convert(python: &str, src: &Path, out: &Path) -> std::process::Output {
    convert_city(python, src, "demo", out)
}

fn convert_city(python: &str, src: &Path, city: &str, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_opencarbon"))
        .args(["datasets", "import-opencarbon"])
        .arg(src)
        .args(["--city", city, "--out"])
        .arg(out)
        .args(["--python", python])
        .output()
        .unwrap()
}

#[test]
fn converter_round_trips_the_fixture() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (src, out) = (dir.path().join("release"), dir.path().join("city"));
    write_fixture(&python, &src);
    let output = convert(&python, &src, &out);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let city = canonical::load(&out).unwrap();
    let keys = [(10, 20), (10, 21), (11, 20), (11, 21)].map(|(x, y)| TileKey { x, y });
    assert_eq!(city.keys, keys);
    assert_eq!(city.emission, vec![120.5, 33.25, 0.0, 9.0]);
    assert_eq!(
        city.samples().len(),
        3,
        "the zero-emission tile is a neighbour, not a sample"
    );
    let images = city.images.as_ref().unwrap();
    assert_eq!(images.side, 16);
    assert_eq!(
        images.data[2 * 3 * 256],
        40,
        "city tile 2 is (11, 20), fixture tile 1 (value 40)"
    );
    let tab = city.tabular.as_ref().unwrap();
    assert_eq!(
        tab.columns,
        vec!["poi_count_0", "poi_count_1", "poi_count_2"]
    );
    assert_eq!(
        &tab.values[3..6],
        &[2.0, 4.0, 3.0],
        "tile (10, 21) is fixture tile 2"
    );

    use ndarray_npy::ReadNpyExt;
    let expected = ndarray::Array4::<f32>::read_npy(
        std::fs::File::open(src.join("expected_poi.npy")).unwrap(),
    )
    .unwrap();
    let poi = city.poi.as_ref().unwrap();
    assert_eq!((poi.categories.len(), poi.side), (3, 12));
    for ((t, c, y, x), v) in expected.indexed_iter() {
        let got = poi.data[((t * 3 + c) * 12 + y) * 12 + x] as f32 * poi.scale[c];
        assert!(
            (got - v).abs() <= poi.scale[c] / 2.0 + 1e-5,
            "tile {t} channel {c}: {got} vs {v}"
        );
    }

    let split = std::fs::read_to_string(out.join("split.csv")).unwrap();
    assert_eq!(split, "x,y,split\n10,20,train\n10,21,valid\n11,21,test\n");
}

#[test]
fn converter_names_the_missing_image() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (src, out) = (dir.path().join("release"), dir.path().join("city"));
    write_fixture(&python, &src);
    std::fs::remove_file(src.join("satellite_images_demo/11_21.png")).unwrap();
    let output = convert(&python, &src, &out);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("11_21.png") && stderr.contains("(11, 21)"),
        "{stderr}"
    );
}

/// Each city branch of main_contrastive.py, in the layout that branch reads (paths, district
/// folders, .npz for the transfer cities, the (train, valid, test) split tuple), written the way the
/// script's own loading code expects it: 4 tiles with POI data (one of them zero-emission), plus an
/// image of a tile without POI counts that the script skips.
const SCRIPT_LAYOUT: &str = r#"
import pickle, sys
from pathlib import Path
import numpy as np
from PIL import Image
src, city = Path(sys.argv[1]), sys.argv[2]
tiles = [(10, 20), (11, 20), (10, 21), (11, 21)]
rng = np.random.default_rng(1)
poi = {t: rng.random((12, 12, 3)).astype(np.float32) for t in tiles}
carbon = {t: float(v) for t, v in zip(tiles, [120.5, 0.0, 33.25, 9.0])}
carbon[(12, 22)] = 5.0
counts = {t: np.array([i, 1, 2], dtype=np.int64) for i, t in enumerate(tiles)}
side = 20 if city == "yinchuan" else 16
def images(dirs):
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    for i, t in enumerate(tiles + [(12, 22)]):
        d = dirs[i % len(dirs)]
        Image.fromarray(np.full((side, side, 3), 40 * i, dtype=np.uint8)).save(d / f"{t[0]}_{t[1]}.png")
split = ([(10, 20)], [(10, 21)], [(11, 21)])
if city == "beijing":
    d = src / "beijing_data"; d.mkdir(parents=True)
    np.save(d / "tile2poi_distribution_beijing.npy", poi, allow_pickle=True)
    np.save(d / "til2carbon_beijing.npy", carbon, allow_pickle=True)
    np.save(d / "tile2poi_count_beijing.npy", counts, allow_pickle=True)
    districts = ["dongcheng", "xicheng", "haidian", "shijingshan", "chaoyang", "fengtai"]
    images([d / "satellite_images_beijing" / x for x in districts[:2]])
    for x in districts[2:]:
        (d / "satellite_images_beijing" / x).mkdir()
    pickle.dump(split, open(src / "train_test_split_beijing_fengtai.pkl", "wb"))
elif city == "yinchuan":
    d = src / "yinchuan_data"; d.mkdir(parents=True)
    np.save(d / "tile2poi_distribution.npy", poi, allow_pickle=True)
    np.save(d / "tile2carbon.npy", carbon, allow_pickle=True)
    np.save(d / "tile2poi_count.npy", counts, allow_pickle=True)
    images([d / "satellite_images_yinchuan"])
    pickle.dump(split, open(src / "train_test_split_yinchuan.pkl", "wb"))
elif city == "london":
    d = src / "london_data"; d.mkdir(parents=True)
    np.save(d / "tile2poi_distribution_london.npy", poi, allow_pickle=True)
    np.save(d / "til2carbon_london.npy", carbon, allow_pickle=True)
    np.save(d / "tile2poi_count_london.npy", counts, allow_pickle=True)
    images([d / "satellite_images_london"])
else:
    d = src / "transfer_experiments" / city; d.mkdir(parents=True)
    np.savez(d / f"tile2poi_distribution_{city}.npz", poi_distribution=np.array(poi, dtype=object))
    np.save(d / f"til2carbon_{city}.npy", carbon, allow_pickle=True)
    images([d / f"satellite_images_{city}"])
"#;

fn write_script_layout(python: &str, src: &Path, city: &str) {
    let status = Command::new(python)
        .args(["-c", SCRIPT_LAYOUT])
        .arg(src)
        .arg(city)
        .status()
        .unwrap();
    assert!(status.success(), "writing the {city} fixture failed");
}

#[test]
fn converter_reads_every_branch_of_the_scripts_layout() {
    let Some(python) = python() else { return };
    for city in ["beijing", "yinchuan", "london", "west_midland"] {
        let dir = tempfile::tempdir().unwrap();
        let (src, out) = (dir.path().join("release"), dir.path().join("city"));
        write_script_layout(&python, &src, city);
        let output = convert_city(&python, &src, city, &out);
        assert!(
            output.status.success(),
            "{city}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let loaded = canonical::load(&out).unwrap();
        // (12, 22) has an image and an emission but no POI data: the script skips it. The
        // transfer cities test membership on the POI rasters instead of the counts.
        let keys = [(10, 20), (10, 21), (11, 20), (11, 21)].map(|(x, y)| TileKey { x, y });
        assert_eq!(loaded.keys, keys, "{city}");
        assert_eq!(loaded.emission, vec![120.5, 33.25, 0.0, 9.0], "{city}");
        let images = loaded.images.as_ref().unwrap();
        let side = if city == "yinchuan" { 256 } else { 16 };
        assert_eq!(
            images.side, side,
            "{city}: yinchuan's images are resized to 256 px"
        );
        // Fixture tile 1 (11, 20) has value 40 in every pixel, wherever its folder is.
        assert_eq!(images.data[2 * 3 * side * side], 40, "{city}");
        let split = std::fs::read_to_string(out.join("split.csv")).ok();
        match city {
            "beijing" | "yinchuan" => assert_eq!(
                split.as_deref(),
                Some("x,y,split\n10,20,train\n10,21,valid\n11,21,test\n"),
                "{city}: the split tuple"
            ),
            _ => assert_eq!(split, None, "{city}: the script splits it at random"),
        }
    }
}

#[test]
fn converter_names_a_split_that_is_not_the_scripts_tuple() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (src, out) = (dir.path().join("release"), dir.path().join("city"));
    write_script_layout(&python, &src, "beijing");
    let pickle = src.join("train_test_split_beijing_fengtai.pkl");
    let status = Command::new(&python)
        .args([
            "-c",
            "import pickle, sys; pickle.dump([(10, 20)], open(sys.argv[1], 'wb'))",
        ])
        .arg(&pickle)
        .status()
        .unwrap();
    assert!(status.success());
    let output = convert_city(&python, &src, "beijing", &out);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("train_test_split_beijing_fengtai.pkl")
            && stderr.contains("(train, valid, test)"),
        "{stderr}"
    );
}
