#!/usr/bin/env python3
"""Power of the outer evaluation (issue 31): how many paired outer folds (spatial CV folds ×
repeats) the corrected resampled t-test (Nadeau & Bengio) needs to detect a 0.05 R² difference,
from the spread of paired differences in the committed network-spatial-cv records.

The test's statistic is d̄ / sqrt((1/J + n_test/n_train) s²) over J pairs: however many folds or
repeats are added, its noncentrality stays below δ / (σ_d sqrt(n_test/n_train)), so the power
levels off. Usage: scripts/tuning-power.py [results/network-spatial-cv] (tools venv: pandas,
scipy)."""
import json
import sys

import numpy as np
import pandas as pd
from scipy import stats

DELTA = 0.05
ALPHA = 0.05
exp = sys.argv[1] if len(sys.argv) > 1 else "results/network-spatial-cv"
runs = pd.read_parquet(f"{exp}/records/runs.parquet")
rows = []
for _, r in runs.iterrows():
    spec = r["spec"]
    variant = next(l.split(":", 1)[1].strip() for l in spec.splitlines() if l.startswith("variant:"))
    dataset = next(l.split(":", 1)[1].strip() for l in spec.splitlines() if l.startswith("dataset_name:"))
    seed = int(next(l.split(":", 1)[1] for l in spec.splitlines() if l.startswith("seed:")))
    fold = json.loads(r["meta"])["run_id"].split("-")[1]
    m = json.loads(r["test_metrics"])
    rows.append(dict(variant=variant, dataset=dataset, seed=seed, fold=fold, r2=m["r2"],
                     ratio=r["split_test"] / r["split_train"]))
df = pd.DataFrame(rows)


def power(sd, ratio, pairs):
    """Two-sided power of the corrected resampled t-test at α for a true difference δ."""
    ncp = DELTA / (sd * np.sqrt(1.0 / pairs + ratio))
    t = stats.t.ppf(1 - ALPHA / 2, pairs - 1)
    return stats.nct.sf(t, pairs - 1, ncp) + stats.nct.cdf(-t, pairs - 1, ncp)


print(f"| dataset | pair | σ of paired R² differences | n_test/n_train | power at 10 pairs (5 folds × 2) | 25 pairs | 50 pairs | limit (∞ pairs) | δ at 80 %, ∞ pairs |")
print("|---|---|---|---|---|---|---|---|---|")
for dataset in sorted(df.dataset.unique()):
    d = df[df.dataset == dataset]
    for a, b in [("network", "gbt_lag"), ("network", "ridge_lag"), ("network_tuned", "network")]:
        x = d[d.variant == a].set_index(["seed", "fold"])
        y = d[d.variant == b].set_index(["seed", "fold"])
        diff = (x.r2 - y.r2).dropna()
        sd = diff.std(ddof=1)
        ratio = x.ratio.mean()
        limit = stats.norm.sf(stats.norm.ppf(1 - ALPHA / 2) - DELTA / (sd * np.sqrt(ratio)))
        print(f"| {dataset} | {a} − {b} | {sd:.4f} | {ratio:.3f} | {power(sd, ratio, 10):.2f} | "
              f"{power(sd, ratio, 25):.2f} | {power(sd, ratio, 50):.2f} | {limit:.2f} | "
              f"{(stats.norm.ppf(1 - ALPHA / 2) + stats.norm.ppf(0.8)) * sd * np.sqrt(ratio):.3f} |")
