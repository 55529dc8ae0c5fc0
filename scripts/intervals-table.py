#!/usr/bin/env python3
"""results/intervals-transfer/coverage.md from the committed predict.json files: the 90 %
conformal bands of a network trained on one city (its 10 spatial-CV fold runs, CV+) mapped
onto the other city, and their coverage on its labelled tiles inside and outside the area of
applicability. Regenerate the predictions with the commands in docs/predict.md, then run this.

  scripts/intervals-table.py
"""
import json
from pathlib import Path

root = Path(__file__).resolve().parent.parent / "results" / "intervals-transfer"
pct = lambda v: "—" if v is None else f"{100 * v:.1f} %"
lines = [
    "| trained on → mapped | method | calibration tiles | mean width (ln) | coverage | in AOA | outside AOA | ±1.96σ of the runs |",
    "|---|---|---|---|---|---|---|---|",
]
for d in sorted(p for p in root.iterdir() if p.is_dir()):
    s = json.load(open(d / "predict.json"))
    b = s["interval"]
    src, dst = d.name.split("-to-")
    lines.append(
        f"| {src} → {dst} | {b['method']} ({100 * b['level']:.0f} %) | {b['calibration_points']} | "
        f"{b['mean_width']:.3f} | {pct(b.get('coverage'))} | "
        f"{pct(b.get('coverage_in_aoa'))} ({b['labelled_in_aoa']} tiles) | "
        f"{pct(b.get('coverage_outside_aoa'))} ({b['labelled_outside_aoa']} tiles) | "
        f"{pct(s.get('band_coverage'))} |"
    )
(root / "coverage.md").write_text(
    "# Prediction intervals across cities\n\n"
    "The `network` variant of `network-spatial-cv` (10 runs: 2 seeds × 5 spatial folds) mapped onto the "
    "other city with `opencarbon predict --from results/network-spatial-cv --variant network --dataset "
    "<city>`: 90 % CV+ bands calibrated on the training city's out-of-fold residuals, scored on every "
    "labelled tile of the other city.\n\n" + "\n".join(lines) + "\n"
)
print((root / "coverage.md").read_text())
