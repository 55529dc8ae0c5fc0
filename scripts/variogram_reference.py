"""Reference variogram for `split.buffer: auto`, computed with scikit-gstat.

`buffer: auto` (src/data/variogram.rs) sets a cross-validation buffer from the spatial
autocorrelation range of the target, as blockCV's cv_spatial_autocor does: an empirical
(Matheron) semivariogram of ln emission over the tiles, distances in tile units between tile
keys, and a spherical model fitted by weighted least squares. This script computes the same
variogram with scikit-gstat, so that tests/variogram.rs can pin ours against it:

    skg.Variogram(coords, values, n_lags=10, maxlag=<half the largest pairwise distance>,
                  bin_func='even', estimator='matheron', model='spherical', fit_method='trf',
                  use_nugget=True, fit_sigma=h / sqrt(N))

`fit_sigma = h / sqrt(N)` (h: a bin's upper edge, N: its pair count) makes curve_fit's weights
N / h², gstat's default `fit.method = 7`, which blockCV's fit (automap) uses. `use_nugget=True`
fits a nugget (scikit-gstat's default fixes it at 0). scikit-gstat's bounds apply: range in
[0, maxlag], partial sill in [0, max γ], nugget in [0, 0.99 max γ]; `sill` below is scikit-gstat's
partial sill (the model's height above the nugget).

The data stay outside the repository (../shared/data, see its README); only the numbers derived
from them go into the fixture.

usage: variogram_reference.py [--labels DIR] [--fixture PATH] [CITY ...]
  CITY       label files to read (default: Beijing Shanghai)
  --labels   folder of <City>.csv (default: ../shared/data/odiac-tiles/labels beside the repo)
  --fixture  write the first city's variogram to PATH as JSON (tests/fixtures/variogram_beijing.json)

Needs scikit-gstat (`pip install scikit-gstat`, e.g. into ~/.cache/opencarbon/venv-tools).
"""
import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import skgstat as skg
from scipy.spatial.distance import pdist

N_LAGS = 10
ROOT = Path(__file__).resolve().parent.parent


def read_city(path: Path):
    """Tile keys (x, y) and ln emission of the tiles with emission > 0."""
    coords, values = [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            x, y = (int(v) for v in row["BD09 coordinate"].strip().strip("()").split(","))
            carbon = float(row["carbon_emissions (ton)"])
            if carbon > 0:
                coords.append((float(x), float(y)))
                values.append(math.log(carbon))
    return np.array(coords), np.array(values)


def variogram(coords, values):
    maxlag = 0.5 * float(np.max(pdist(coords)))
    kwargs = dict(n_lags=N_LAGS, maxlag=maxlag, bin_func="even", estimator="matheron",
                  model="spherical", fit_method="trf", use_nugget=True)
    # The weights need the bins and their counts, which the first (unweighted) fit computes.
    unweighted = skg.Variogram(coords, values, **kwargs)
    bins = unweighted.bins
    counts = np.array([int(np.sum(unweighted.lag_groups() == i)) for i in range(len(bins))])
    if np.any(counts == 0):
        sys.exit("an empty lag bin: scikit-gstat's fit_sigma must cover every bin")
    sigma = bins / np.sqrt(counts)
    v = skg.Variogram(coords, values, fit_sigma=sigma, **kwargs)
    assert np.array_equal(v.bins, bins)
    d = v.describe()
    u = unweighted.describe()
    return {
        "n_samples": int(len(values)),
        "n_lags": N_LAGS,
        "maxlag": maxlag,
        "bins": [float(b) for b in v.bins],
        "semivariance": [float(g) for g in v.experimental],
        "counts": [int(c) for c in counts],
        "range": float(d["effective_range"]),
        "sill": float(d["sill"]),
        "nugget": float(d["nugget"]),
        "unweighted": {
            "range": float(u["effective_range"]),
            "sill": float(u["sill"]),
            "nugget": float(u["nugget"]),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cities", nargs="*", default=["Beijing", "Shanghai"])
    parser.add_argument("--labels", type=Path,
                        default=ROOT.parent / "shared" / "data" / "odiac-tiles" / "labels")
    parser.add_argument("--fixture", type=Path)
    args = parser.parse_args()
    for i, city in enumerate(args.cities):
        coords, values = read_city(args.labels / f"{city}.csv")
        out = {
            "city": city,
            "source": f"scikit-gstat {skg.__version__} (scripts/variogram_reference.py)",
            "coords": "BD09 zoom-16 tile keys (x, y), Euclidean distance in tiles",
            "values": "ln carbon_emissions (ton) of the tiles with emission > 0",
            "weights": "N / h^2 (fit_sigma = h / sqrt(N), h the bin's upper edge)",
            **variogram(coords, values),
        }
        print(f"{city}: {out['n_samples']} tiles, maxlag {out['maxlag']:.4f}: range "
              f"{out['range']:.4f} tiles (buffer {math.ceil(out['range'])}), partial sill "
              f"{out['sill']:.4f}, nugget {out['nugget']:.4f}; unweighted range "
              f"{out['unweighted']['range']:.4f}")
        if i == 0 and args.fixture:
            args.fixture.write_text(json.dumps(out, indent=2) + "\n")
            print(f"wrote {args.fixture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
