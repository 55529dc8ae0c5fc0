"""Export a canonical city (opencarbon's city directory) and a split into the data layout the
authors' `main_contrastive.py` loads for `--city beijing`, so both programs train on the same tiles,
targets and split:

  <out>/beijing_data/tile2poi_distribution_beijing.npy   {(x, y): float32 [H, W, C]}  (np.save of a dict)
  <out>/beijing_data/til2carbon_beijing.npy              {(x, y): emission}  (0 = not a sample)
  <out>/beijing_data/tile2poi_count_beijing.npy          {(x, y): 1}  (the script only tests membership)
  <out>/beijing_data/satellite_images_beijing/<district>/<x>_<y>.png   in the script's 6 districts
  <out>/train_test_split_beijing_fengtai.pkl             (train, valid, test) lists of (x, y)

The script lists the districts in a fixed order (dongcheng, xicheng, haidian, shijingshan, chaoyang,
fengtai) and, within each, the files os.listdir returns; its tile 0, where a missing neighbour
points, is the first tile it lists. Tiles go to the district named in tiles.csv's `district` column
when it holds one of those six, else to dongcheng. POI rasters are the values opencarbon feeds the
network (u8 · scale), images the PNG bytes as they are (OpenCV reads them as BGR, as opencarbon's
default `channel_order: bgr` feeds them).

With --centre, every emission is divided by exp(mean ln emission over the training tiles), so that
ln(emission) is centred on the training mean for both programs; a canonical copy of the city with
those emissions is written to <out>/city for opencarbon to train on.

usage: python export_script_layout.py CITY_DIR SPLIT_CSV OUT [--centre]
(SPLIT_CSV: x,y,split as every opencarbon run directory writes it)
"""
import argparse
import csv
import math
import os
import pickle
import shutil
from pathlib import Path

import numpy as np

DISTRICTS = ["dongcheng", "xicheng", "haidian", "shijingshan", "chaoyang", "fengtai"]


def read_city(city):
    manifest = {}
    # city.yaml without a YAML dependency: the two keys needed here.
    text = (city / "city.yaml").read_text()
    lines = text.splitlines()
    scales = []
    in_scale = False
    for line in lines:
        if line.strip().startswith("scale:"):
            in_scale = True
            continue
        if in_scale:
            if line.strip().startswith("- "):
                scales.append(float(line.strip()[2:]))
                continue
            in_scale = False
        if line.startswith("target:"):
            manifest["target"] = line.split(":", 1)[1].strip()
    manifest["scale"] = scales
    with open(city / "tiles.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return manifest, rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("city", type=Path)
    ap.add_argument("split", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--centre", action="store_true")
    a = ap.parse_args()

    manifest, rows = read_city(a.city)
    target = manifest.get("target", "emission")
    keys = [(int(r["x"]), int(r["y"])) for r in rows]
    emission = {k: float(r[target]) for k, r in zip(keys, rows)}
    split = {"train": [], "valid": [], "test": []}
    with open(a.split, newline="") as f:
        for r in csv.DictReader(f):
            if r["split"] in split:
                split[r["split"]].append((int(r["x"]), int(r["y"])))
    shift = 1.0
    if a.centre:
        mean = sum(math.log(emission[k]) for k in split["train"]) / len(split["train"])
        shift = math.exp(mean)
        print(f"centred: emissions divided by exp({mean:.6f})")
    carbon = {k: (e / shift if e > 0 else 0.0) for k, e in emission.items()}

    poi = np.load(a.city / "poi.npy")  # [N, C, H, W] u8
    scale = np.asarray(manifest["scale"], dtype=np.float32).reshape(1, -1, 1, 1)
    poi = (poi.astype(np.float32) * scale) if poi.dtype == np.uint8 else poi.astype(np.float32)
    data = a.out / "beijing_data"
    images = data / "satellite_images_beijing"
    for d in DISTRICTS:
        (images / d).mkdir(parents=True, exist_ok=True)
    for k, r in zip(keys, rows):
        district = r.get("district") if r.get("district") in DISTRICTS else DISTRICTS[0]
        src = a.city / "images" / f"{k[0]}_{k[1]}.png"
        shutil.copyfile(src, images / district / f"{k[0]}_{k[1]}.png")
    np.save(data / "tile2poi_distribution_beijing.npy",
            {k: poi[i].transpose(1, 2, 0).copy() for i, k in enumerate(keys)}, allow_pickle=True)
    np.save(data / "til2carbon_beijing.npy", carbon, allow_pickle=True)
    np.save(data / "tile2poi_count_beijing.npy", {k: 1 for k in keys}, allow_pickle=True)
    with open(a.out / "train_test_split_beijing_fengtai.pkl", "wb") as f:
        pickle.dump((split["train"], split["valid"], split["test"]), f)

    # opencarbon's copy: the same tiles, emissions as exported, everything else linked.
    city_out = a.out / "city"
    city_out.mkdir(parents=True, exist_ok=True)
    for name in ["city.yaml", "poi.npy", "images"]:
        link = city_out / name
        if not link.exists():
            os.symlink((a.city / name).resolve(), link)
    with open(a.city / "tiles.csv", newline="") as f, open(city_out / "tiles.csv", "w", newline="") as g:
        reader = csv.DictReader(f)
        writer = csv.DictWriter(g, fieldnames=reader.fieldnames, lineterminator="\n")
        writer.writeheader()
        for k, r in zip(keys, reader):
            r[target] = repr(carbon[k])
            writer.writerow(r)
    first = sorted(os.listdir(images / DISTRICTS[0]))[0]
    print(f"exported {len(keys)} tiles ({', '.join(f'{n} {len(v)}' for n, v in split.items())}) to {a.out}; "
          f"the script's tile 0 under sorted listing: {first}, opencarbon's: {keys[0][0]}_{keys[0][1]}.png")


if __name__ == "__main__":
    main()
