#!/usr/bin/env python3
"""results/intervals-transfer/coverage.md from the committed predict.json files: the 90 %
conformal bands of the network and of the best baseline (gbt_lag), each trained on one city (its
10 spatial-CV fold runs, CV+), mapped onto the other city, and their coverage on its labelled
tiles inside and outside the area of applicability. A folder is `<source>-to-<target>` for the
network and `<source>-to-<target>-<variant>` otherwise. Regenerate the predictions with the
commands in docs/predict.md, then run this.

  scripts/intervals-table.py
"""
import json
from pathlib import Path

root = Path(__file__).resolve().parent.parent / "results" / "intervals-transfer"
pct = lambda v: "—" if v is None else f"{100 * v:.1f} %"
lines = [
    "| trained on → mapped | variant | widths | R² | method | calibration tiles | median width in / outside AOA (ln) | coverage | in AOA | outside AOA | ±1.96σ of the runs |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
]
for d in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: (p.name.split("-to-")[0], "gbt_lag" in p.name, p.name.endswith("-di"))):
    s = json.load(open(d / "predict.json"))
    b = s["interval"]
    src, rest = d.name.split("-to-")
    parts = rest.split("-")
    dst, variant = parts[0], next((p for p in parts[1:] if p != "di"), "network")
    widths = "DI-scaled" if b.get("scale") == "di" else "plain"
    lines.append(
        f"| {src} → {dst} | {variant} | {widths} | {s['labelled']['r2']:.3f} | {b['method']} ({100 * b['level']:.0f} %) | {b['calibration_points']} | "
        f"{b['median_width_in_aoa']:.2f} / {b['median_width_outside_aoa']:.2f} | {pct(b.get('coverage'))} | "
        f"{pct(b.get('coverage_in_aoa'))} ({b['labelled_in_aoa']} tiles) | "
        f"{pct(b.get('coverage_outside_aoa'))} ({b['labelled_outside_aoa']} tiles) | "
        f"{pct(s.get('band_coverage'))} |"
    )
maps = ["", "## Maps", "",
        "Each folder's `map.png` (predicted ln emission; tiles outside the area of applicability greyed) "
        "and `interval_width.png` (band width, colours spanning the tiles inside the area of applicability).", ""]
for d in sorted(p for p in root.iterdir() if p.is_dir()):
    maps.append(f"**{d.name}**: prediction and band width\n")
    maps.append(f"![{d.name} prediction]({d.name}/map.png) ![{d.name} band width]({d.name}/interval_width.png)\n")
(root / "coverage.md").write_text(
    "# Prediction intervals across cities\n\n"
    "The `network` variant of `network-spatial-cv` and its best baseline, `gbt_lag` (gradient-boosted "
    "trees on the covariates and their 3×3 means; 10 runs each: 2 seeds × 5 spatial folds), mapped onto "
    "the other city with `opencarbon predict --from results/network-spatial-cv --variant <variant> "
    "--dataset <city>`: 90 % CV+ bands calibrated on the training city's out-of-fold residuals, scored "
    "on every labelled tile of the other city. R² is over those tiles; the area of applicability is the "
    "ensemble's own (its folds' training tiles pooled). DI-scaled widths (`--scale di`) divide each "
    "calibration residual by its tile's DI + β (β the calibration DIs' median, a new tile's DI capped at the "
    "largest calibration DI) and widen a new tile's band by its own DI + β.\n\n" + "\n".join(lines) + "\n" + "\n".join(maps)
)
print((root / "coverage.md").read_text())
