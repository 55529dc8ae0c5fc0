"""Convert the original OpenCarbon release (JinweiZzz/OpenCarbon) into a canonical city directory.

The release stores Python pickles, so this converter is Python (numpy + pillow):

  tile2poi_distribution_<city>.npy   pickled dict (x, y) -> H x W x C POI density raster
  til2carbon_<city>.npy              pickled dict (x, y) -> emission (raw, >= 0)
  tile2poi_count_<city>.npy          optional: pickled dict (x, y) -> C POI counts
  satellite_images_<city>/<x>_<y>.png
  *train*.pkl, *val*.pkl, *test*.pkl optional: pickled lists of (x, y) tiles

usage: convert_opencarbon_release.py <src> --city <city> --out <dir>

Writes city.yaml, tiles.csv (x, y, emission, poi_count_<i>), images/<x>_<y>.png, poi.npy
(float32 [N, C, H, W]; the loader stores it as u8 with a per-channel scale) and, when split
files exist, split.csv (x, y, split). Every problem names the file and the tile.
"""
import argparse
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("src", type=Path)
    ap.add_argument("--city", required=True)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    src, city, out = a.src, a.city, a.out

    poi_path = src / f"tile2poi_distribution_{city}.npy"
    carbon_path = src / f"til2carbon_{city}.npy"
    count_path = src / f"tile2poi_count_{city}.npy"
    image_dir = src / f"satellite_images_{city}"
    for p in (poi_path, carbon_path):
        if not p.exists():
            fail(f"{p}: missing (is {src} an OpenCarbon release folder for city `{city}`?)")
    poi = {key_of(k, poi_path): v for k, v in load_dict(poi_path).items()}
    carbon = {key_of(k, carbon_path): v for k, v in load_dict(carbon_path).items()}
    counts = {key_of(k, count_path): v for k, v in load_dict(count_path).items()} if count_path.exists() else None

    tiles = sorted(set(poi) | set(carbon))
    shape = None
    for t in tiles:
        if t not in carbon:
            fail(f"{carbon_path}: tile {t} has a POI raster but no emission")
        if t not in poi:
            fail(f"{poi_path}: tile {t} has an emission but no POI raster")
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
        p = image_dir / f"{t[0]}_{t[1]}.png"
        if not p.exists():
            fail(f"{p}: missing image for tile {t}")
        with Image.open(p) as im:
            if im.mode != "RGB":
                fail(f"{p}: tile {t} image is {im.mode}; expected RGB")
            if im.width != im.height or (image_size is not None and im.width != image_size):
                fail(f"{p}: tile {t} image is {im.width}x{im.height}; expected square images of one size")
            image_size = im.width
        shutil.copyfile(p, out / "images" / p.name)

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
    for name, patterns in (("train", ["*train*.pkl"]), ("valid", ["*valid*.pkl", "*val*.pkl"]), ("test", ["*test*.pkl"])):
        found = sorted({p for pat in patterns for p in src.glob(pat)})
        if len(found) > 1:
            fail(f"{src}: several {name} split files: {[str(p) for p in found]}")
        if found:
            with open(found[0], "rb") as f:
                for k in pickle.load(f):
                    t = key_of(k, found[0])
                    if t not in carbon:
                        fail(f"{found[0]}: tile {t} is not a tile of the city")
                    if t in splits:
                        fail(f"{found[0]}: tile {t} is already in the {splits[t]} split")
                    splits[t] = name
    if splits:
        with open(out / "split.csv", "w") as f:
            f.write("x,y,split\n")
            for t, s in sorted(splits.items()):
                if float(carbon[t]) > 0:
                    f.write(f"{t[0]},{t[1]},{s}\n")
    print(f"{city}: {len(tiles)} tiles, {channels} POI channels at {side}x{side}, images {image_size}px -> {out}")


if __name__ == "__main__":
    main()
