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

`buffer: {auto: {detrend: linear | quadratic}}` computes the variogram of the residuals from a
trend surface instead: ln emission fitted by ordinary least squares (numpy's lstsq) on the tile
keys measured from their mean, on 1, x, y (linear) or 1, x, y, x^2, xy, y^2 (quadratic), the
variogram then as above on z - trend. The centring changes no residual; it keeps the quadratic
columns well-conditioned.

The data stay outside the repository (../shared/data, see its README); only the numbers derived
from them go into the fixtures.

usage: variogram_reference.py [--labels DIR] [--fixture PATH] [--detrended-fixture PATH]
                              [--trend-only] [CITY ...]
  CITY                 label files to read (default: Beijing Shanghai)
  --labels             folder of <City>.csv (default: ../shared/data/odiac-tiles/labels beside the repo)
  --fixture            write the first city's variogram to PATH as JSON
                       (tests/fixtures/variogram_beijing.json)
  --detrended-fixture  write every city's variogram without a trend and with each trend to PATH
                       (tests/fixtures/variogram_detrended.json)
  --trend-only         print the trend surfaces as JSON (numpy only, no scikit-gstat): the live
                       check of tests/variogram.rs

Needs scikit-gstat (`pip install scikit-gstat`, e.g. into ~/.cache/opencarbon/venv-tools), except
with --trend-only.
"""
import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np

N_LAGS = 10
DETRENDS = ("none", "linear", "quadratic")
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


def detrend(coords, values, kind):
    """The OLS trend surface `kind` of `values` over `coords`: its origin, terms, coefficients,
    R^2 and residuals (for "none": the values themselves)."""
    origin = coords.mean(axis=0)
    x, y = coords[:, 0] - origin[0], coords[:, 1] - origin[1]
    columns = {
        "none": [],
        "linear": [("1", np.ones_like(x)), ("x", x), ("y", y)],
        "quadratic": [("1", np.ones_like(x)), ("x", x), ("y", y),
                      ("x^2", x * x), ("xy", x * y), ("y^2", y * y)],
    }[kind]
    if not columns:
        return {"detrend": kind}, values
    design = np.column_stack([c for _, c in columns])
    beta, _, rank, _ = np.linalg.lstsq(design, values, rcond=None)
    assert rank == design.shape[1], f"{kind} trend: rank {rank}"
    residuals = values - design @ beta
    r2 = 1.0 - float(np.sum(residuals ** 2)) / float(np.sum((values - values.mean()) ** 2))
    trend = {
        "detrend": kind,
        "origin": [float(o) for o in origin],
        "terms": [t for t, _ in columns],
        "coefficients": [float(b) for b in beta],
        "r2": r2,
        "residual_sum_of_squares": float(np.sum(residuals ** 2)),
    }
    return trend, residuals


def variogram(coords, values):
    import skgstat as skg
    from scipy.spatial.distance import pdist

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


def source():
    import skgstat as skg

    return f"scikit-gstat {skg.__version__} (scripts/variogram_reference.py)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cities", nargs="*", default=["Beijing", "Shanghai"])
    parser.add_argument("--labels", type=Path,
                        default=ROOT.parent / "shared" / "data" / "odiac-tiles" / "labels")
    parser.add_argument("--fixture", type=Path)
    parser.add_argument("--detrended-fixture", type=Path)
    parser.add_argument("--trend-only", action="store_true")
    args = parser.parse_args()
    if args.trend_only:
        trends = {}
        for city in args.cities:
            coords, values = read_city(args.labels / f"{city}.csv")
            trends[city] = {kind: detrend(coords, values, kind)[0] for kind in DETRENDS[1:]}
        print(json.dumps(trends, indent=2))
        return 0
    detrended = {
        "source": source() + "; trends: numpy " + np.__version__ + " lstsq",
        "coords": "BD09 zoom-16 tile keys (x, y), Euclidean distance in tiles; the trend's x and y "
                  "are measured from their mean (origin)",
        "values": "ln carbon_emissions (ton) of the tiles with emission > 0, less the OLS trend "
                  "surface (none: the values themselves)",
        "weights": "N / h^2 (fit_sigma = h / sqrt(N), h the bin's upper edge)",
        "cities": {},
    }
    for i, city in enumerate(args.cities):
        coords, values = read_city(args.labels / f"{city}.csv")
        detrended["cities"][city] = {}
        for kind in DETRENDS:
            if kind != "none" and not args.detrended_fixture:
                continue
            trend, residuals = detrend(coords, values, kind)
            out = variogram(coords, residuals)
            if kind == "none":
                described = {
                    "city": city,
                    "source": source(),
                    "coords": "BD09 zoom-16 tile keys (x, y), Euclidean distance in tiles",
                    "values": "ln carbon_emissions (ton) of the tiles with emission > 0",
                    "weights": "N / h^2 (fit_sigma = h / sqrt(N), h the bin's upper edge)",
                    **out,
                }
                if i == 0 and args.fixture:
                    args.fixture.write_text(json.dumps(described, indent=2) + "\n")
                    print(f"wrote {args.fixture}")
            detrended["cities"][city][kind] = {**trend, **out}
            r2 = f", trend R^2 {trend['r2']:.4f}" if "r2" in trend else ""
            print(f"{city}, detrend {kind}{r2}: {out['n_samples']} tiles, maxlag "
                  f"{out['maxlag']:.4f}: range {out['range']:.4f} tiles (buffer "
                  f"{math.ceil(out['range'])}), partial sill {out['sill']:.4f}, nugget "
                  f"{out['nugget']:.4f}; unweighted range {out['unweighted']['range']:.4f}")
    if args.detrended_fixture:
        args.detrended_fixture.write_text(json.dumps(detrended, indent=2) + "\n")
        print(f"wrote {args.detrended_fixture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
