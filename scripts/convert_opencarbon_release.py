"""Convert the original OpenCarbon release (JinweiZzz/OpenCarbon) into a canonical city directory.

The release stores Python pickles, so this converter is Python (numpy + pillow). <src> is the folder
main_contrastive.py runs in; for `--city` it reads the files that script's branch for that city reads:

  beijing            beijing_data/{tile2poi_distribution_beijing,til2carbon_beijing,tile2poi_count_beijing}.npy,
                     beijing_data/satellite_images_beijing/<district>/<x>_<y>.png (dongcheng, xicheng, haidian,
                     shijingshan, chaoyang, fengtai), split train_test_split_beijing_fengtai.pkl
  yinchuan           yinchuan_data/{tile2poi_distribution,tile2carbon,tile2poi_count}.npy,
                     yinchuan_data/satellite_images_yinchuan/ (resized to 256 px, as the script does),
                     split train_test_split_yinchuan.pkl
  london             london_data/{tile2poi_distribution_london,til2carbon_london,tile2poi_count_london}.npy,
                     london_data/satellite_images_london/ (the script splits it at random: no split file)
  west_midland, south_yorkshire, manchester_cities
                     transfer_experiments/<city>/tile2poi_distribution_<city>.npz ['poi_distribution'],
                     transfer_experiments/<city>/til2carbon_<city>.npy, .../satellite_images_<city>/

A split pickle holds one (train, valid, test) tuple of (x, y) lists. As in the script, the city's
tiles are the images whose tile has POI counts (POI rasters for the transfer cities); the script's
tile 0, where its missing neighbours point, is the first image os.listdir returns, so it is not
recorded here (opencarbon's `missing_neighbour: tile0` uses the first tile of tiles.csv).

Any other city name reads a flat folder: tile2poi_distribution_<city>.npy, til2carbon_<city>.npy,
optional tile2poi_count_<city>.npy, satellite_images_<city>/<x>_<y>.png, optional *train*.pkl,
*val*.pkl, *test*.pkl (pickled lists of (x, y) tiles).

usage: convert_opencarbon_release.py <src> --city <city> --out <dir>

Writes city.yaml, tiles.csv (x, y, emission, poi_count_<i>), images/<x>_<y>.png, poi.npy
(float32 [N, C, H, W]; the loader stores it as u8 with a per-channel scale) and, when split
files exist, split.csv (x, y, split). Every problem names the file and the tile.
"""
import argparse
import os
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def load_dict(path: Path) -> dict:
    try:
        obj = np.load(path, allow_pickle=True)
        obj = obj.item() if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == () else obj
    except Exception as e:  # noqa: BLE001 - any unreadable file is reported the same way
        fail(f"{path}: cannot read ({e})")
    if not isinstance(obj, dict):
        fail(f"{path}: expected a pickled dict (x, y) -> value, found {type(obj).__name__}")
    return obj


def key_of(k, path: Path):
    try:
        x, y = k
        return int(x), int(y)
    except Exception:  # noqa: BLE001
        fail(f"{path}: key {k!r} is not an (x, y) tile")


DISTRICTS = ["dongcheng", "xicheng", "haidian", "shijingshan", "chaoyang", "fengtai"]
TRANSFER = ("west_midland", "south_yorkshire", "manchester_cities")


def script_layout(src: Path, city: str):
    """The files main_contrastive.py's branch for `city` reads (paths as it spells them), or None."""
    if city == "beijing":
        d = src / "beijing_data"
        return dict(poi=d / "tile2poi_distribution_beijing.npy", carbon=d / "til2carbon_beijing.npy",
                    count=d / "tile2poi_count_beijing.npy", split=src / "train_test_split_beijing_fengtai.pkl",
                    image_dirs=[d / "satellite_images_beijing" / x for x in DISTRICTS], resize=None)
    if city == "yinchuan":
        d = src / "yinchuan_data"
        return dict(poi=d / "tile2poi_distribution.npy", carbon=d / "tile2carbon.npy",
                    count=d / "tile2poi_count.npy", split=src / "train_test_split_yinchuan.pkl",
                    image_dirs=[d / "satellite_images_yinchuan"], resize=256)
    if city == "london":
        d = src / "london_data"
        return dict(poi=d / "tile2poi_distribution_london.npy", carbon=d / "til2carbon_london.npy",
                    count=d / "tile2poi_count_london.npy", split=None,
                    image_dirs=[d / "satellite_images_london"], resize=None)
    if city in TRANSFER:
        d = src / "transfer_experiments" / city
        return dict(poi=d / f"tile2poi_distribution_{city}.npz", carbon=d / f"til2carbon_{city}.npy",
                    count=None, split=None, image_dirs=[d / f"satellite_images_{city}"], resize=None)
    return None


def load_poi(path: Path) -> dict:
    """A POI dict, from .npy (a pickled dict) or .npz (the transfer cities: key `poi_distribution`)."""
    if path.suffix != ".npz":
        return load_dict(path)
    try:
        with np.load(path, allow_pickle=True) as z:
            obj = z["poi_distribution"].item()
    except Exception as e:  # noqa: BLE001
        fail(f"{path}: cannot read its `poi_distribution` dict ({e})")
    if not isinstance(obj, dict):
        fail(f"{path}: `poi_distribution` is not a dict (x, y) -> raster")
    return obj


def listed_images(layout: dict, members, src: Path) -> dict:
    """Tile -> image file, as the script lists them: each folder in order, the files whose tile is in
    `members` (a file name is `<x>_<y>.<ext>`)."""
    images = {}
    for d in layout["image_dirs"]:
        if not d.is_dir():
            fail(f"{d}: missing image folder (main_contrastive.py lists it)")
        for name in sorted(os.listdir(d)):
            try:
                t = (int(name.split("_")[0]), int(name.split("_")[1].split(".")[0]))
            except (ValueError, IndexError):
                fail(f"{d / name}: not an <x>_<y> image file name")
            if t not in members:
                continue
            if t in images:
                fail(f"{d / name}: tile {t} also has {images[t]}")
            images[t] = d / name
    if not images:
        fail(f"{src}: no image of a tile with POI data in {', '.join(str(d) for d in layout['image_dirs'])}")
    return images


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("src", type=Path)
    ap.add_argument("--city", required=True)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    src, city, out = a.src, a.city, a.out

    layout = script_layout(src, city)
    if layout is not None and not layout["poi"].exists():
        fail(f"{layout['poi']}: missing (main_contrastive.py reads it for --city {city}; is {src} the folder it runs in?)")
    if layout is None:
        layout = dict(poi=src / f"tile2poi_distribution_{city}.npy", carbon=src / f"til2carbon_{city}.npy",
                      count=src / f"tile2poi_count_{city}.npy", split=None,
                      image_dirs=[src / f"satellite_images_{city}"], resize=None, flat=True)
    poi_path, carbon_path, count_path = layout["poi"], layout["carbon"], layout["count"]
    for p in (poi_path, carbon_path):
        if not p.exists():
            fail(f"{p}: missing (is {src} an OpenCarbon release folder for city `{city}`?)")
    poi = {key_of(k, poi_path): v for k, v in load_poi(poi_path).items()}
    carbon = {key_of(k, carbon_path): v for k, v in load_dict(carbon_path).items()}
    counts = None
    if count_path is not None and count_path.exists():
        counts = {key_of(k, count_path): v for k, v in load_dict(count_path).items()}

    if layout.get("flat"):
        tiles = sorted(set(poi) | set(carbon))
        image_dir = layout["image_dirs"][0]
        images = {t: image_dir / f"{t[0]}_{t[1]}.png" for t in tiles}
    else:
        # As the script: the listed images whose tile has POI counts (POI rasters without counts).
        images = listed_images(layout, counts if counts is not None else poi, src)
        tiles = sorted(images)
    shape = None
    for t in tiles:
        if t not in carbon:
            fail(f"{carbon_path}: tile {t} has no emission")
        if t not in poi:
            fail(f"{poi_path}: tile {t} has no POI raster")
        e = float(carbon[t])
        if not np.isfinite(e) or e < 0:
            fail(f"{carbon_path}: tile {t} has emission {carbon[t]!r}; it must be finite and >= 0")
        r = np.asarray(poi[t])
        if r.ndim != 3 or r.shape[0] != r.shape[1]:
            fail(f"{poi_path}: tile {t} raster has shape {r.shape}; expected H x H x C")
        if shape is None:
            shape = r.shape
        elif r.shape != shape:
            fail(f"{poi_path}: tile {t} raster has shape {r.shape}; earlier tiles have {shape}")
        if not np.all(np.isfinite(r)) or np.any(r < 0):
            fail(f"{poi_path}: tile {t} raster has negative or non-finite values")
    if not tiles:
        fail(f"{carbon_path}: no tiles")
    side, channels = shape[0], shape[2]

    out.mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(exist_ok=True)
    image_size = None
    for t in tiles:
        p = images[t]
        if not p.exists():
            fail(f"{p}: missing image for tile {t}")
        target = out / "images" / f"{t[0]}_{t[1]}{p.suffix.lower()}"
        with Image.open(p) as im:
            if im.mode != "RGB":
                fail(f"{p}: tile {t} image is {im.mode}; expected RGB")
            if layout["resize"] and im.size != (layout["resize"], layout["resize"]):
                # The script: cv.resize(im, (256, 256), interpolation=cv.INTER_AREA); PIL's BOX filter
                # is the same area average for integer factors.
                im.resize((layout["resize"], layout["resize"]), Image.BOX).save(target)
                image_size = layout["resize"]
                continue
            if im.width != im.height or (image_size is not None and im.width != image_size):
                fail(f"{p}: tile {t} image is {im.width}x{im.height}; expected square images of one size")
            image_size = im.width
        shutil.copyfile(p, target)

    rasters = np.stack([np.asarray(poi[t], dtype=np.float32).transpose(2, 0, 1) for t in tiles])
    np.save(out / "poi.npy", rasters)

    count_cols = []
    if counts is not None:
        count_cols = [f"poi_count_{i}" for i in range(len(np.asarray(counts[tiles[0]]).ravel()))]
    with open(out / "tiles.csv", "w") as f:
        f.write(",".join(["x", "y", "emission"] + count_cols) + "\n")
        for t in tiles:
            row = [str(t[0]), str(t[1]), repr(float(carbon[t]))]
            if counts is not None:
                if t not in counts:
                    fail(f"{count_path}: tile {t} has no POI counts")
                c = np.asarray(counts[t], dtype=np.float64).ravel()
                if len(c) != len(count_cols):
                    fail(f"{count_path}: tile {t} has {len(c)} counts; expected {len(count_cols)}")
                row += [repr(float(v)) for v in c]
            f.write(",".join(row) + "\n")

    cats = [f"poi_{i}" for i in range(channels)]
    lines = [f"name: {city.lower()}-opencarbon", "description: converted from the original OpenCarbon release",
             "images:", "  dir: images", f"  size: {image_size}",
             "poi:", "  file: poi.npy", "  categories: [" + ", ".join(cats) + "]"]
    if count_cols:
        lines += ["tabular: [" + ", ".join(count_cols) + "]"]
    lines += ["target: emission", f"provenance: OpenCarbon release files for {city} in {src}"]
    (out / "city.yaml").write_text("\n".join(lines) + "\n")

    splits = {}

    def assign(t, name, path):
        if t not in carbon:
            fail(f"{path}: tile {t} is not a tile of the city")
        if t in splits:
            fail(f"{path}: tile {t} is already in the {splits[t]} split")
        splits[t] = name

    if layout["split"] is not None and layout["split"].exists():
        path = layout["split"]
        with open(path, "rb") as f:
            parts = pickle.load(f)
        if not (isinstance(parts, (tuple, list)) and len(parts) == 3):
            fail(f"{path}: expected a (train, valid, test) tuple of tile lists, as main_contrastive.py unpacks it")
        for name, part in zip(("train", "valid", "test"), parts):
            for k in part:
                assign(key_of(k, path), name, path)
    for name, patterns in (("train", ["*train*.pkl"]), ("valid", ["*valid*.pkl", "*val*.pkl"]), ("test", ["*test*.pkl"])):
        if not layout.get("flat"):
            break
        found = sorted({p for pat in patterns for p in src.glob(pat)})
        if len(found) > 1:
            fail(f"{src}: several {name} split files: {[str(p) for p in found]}")
        if found:
            with open(found[0], "rb") as f:
                for k in pickle.load(f):
                    assign(key_of(k, found[0]), name, found[0])
    if splits:
        with open(out / "split.csv", "w") as f:
            f.write("x,y,split\n")
            for t, s in sorted(splits.items()):
                if float(carbon[t]) > 0:
                    f.write(f"{t[0]},{t[1]},{s}\n")
    print(f"{city}: {len(tiles)} tiles, {channels} POI channels at {side}x{side}, images {image_size}px -> {out}")


if __name__ == "__main__":
    main()
