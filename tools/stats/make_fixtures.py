"""Reference values for src/stats (tests/stats.rs): SciPy (and statsmodels for Holm) on fixed
inputs, written once to tests/fixtures/stats.json and committed.

    python -m venv ~/.cache/opencarbon/venv-scipy
    ~/.cache/opencarbon/venv-scipy/bin/pip install numpy scipy statsmodels
    ~/.cache/opencarbon/venv-scipy/bin/python tools/stats/make_fixtures.py
"""
import json
import pathlib

import numpy as np
import scipy
import scipy.special as sp
import scipy.stats as st
import statsmodels
from statsmodels.stats.multitest import multipletests

rng = np.random.default_rng(20261202)
out = {"scipy": scipy.__version__, "statsmodels": statsmodels.__version__}

out["ln_gamma"] = [[x, float(sp.gammaln(x))] for x in [0.1, 0.5, 1.0, 1.5, 2.5, 7.3, 20.0, 171.5]]
out["beta_inc"] = [[a, b, x, float(sp.betainc(a, b, x))]
                   for a, b, x in [(0.5, 0.5, 0.3), (2.0, 3.0, 0.4), (4.5, 0.5, 0.9), (10.0, 0.5, 0.99), (0.5, 12.0, 0.01), (30.0, 40.0, 0.45)]]
out["gamma_q"] = [[a, x, float(sp.gammaincc(a, x))]
                  for a, x in [(0.5, 0.1), (0.5, 4.0), (1.0, 2.0), (3.5, 1.0), (3.5, 9.0), (12.0, 20.0)]]
out["normal_cdf"] = [[z, float(st.norm.cdf(z))] for z in [-8.0, -3.1, -1.0, -0.2, 0.0, 0.7, 2.5, 6.0]]
out["t_two_sided"] = [[t, df, float(2 * st.t.sf(abs(t), df))]
                      for t, df in [(0.3, 1), (2.1, 4), (-3.7, 9), (1.0, 29), (5.5, 14), (0.0, 3)]]
out["t_critical"] = [[p, df, float(st.t.isf(p / 2, df))] for p, df in [(0.05, 1), (0.05, 4), (0.05, 29), (0.01, 9), (0.2, 2)]]
out["chi2_sf"] = [[x, k, float(st.chi2.sf(x, k))] for x, k in [(0.5, 1), (3.2, 2), (7.8, 3), (15.0, 6), (1.0, 9)]]
out["nct_cdf"] = [[t, df, d, float(st.nct.cdf(t, df, d))]
                  for t, df, d in [(2.0, 4, 1.0), (-1.5, 9, 0.5), (2.262, 9, 3.0), (1.5, 29, -0.7), (3.0, 2, 2.5), (0.5, 14, 0.0)]]

# Paired t-tests on differences a - b, plain (ttest_rel) and Nadeau-Bengio corrected.
paired = []
for n, shift in [(3, 0.05), (5, 0.02), (8, -0.01), (15, 0.03), (30, 0.004)]:
    a = rng.normal(0.7, 0.05, n)
    b = a - shift - rng.normal(0, 0.03, n)
    d = a - b
    r = st.ttest_rel(a, b)
    ratio = 0.25
    m, s2 = d.mean(), d.var(ddof=1)
    t_nb = m / np.sqrt((1 / n + ratio) * s2)
    p_nb = 2 * st.t.sf(abs(t_nb), n - 1)
    dz = m / np.sqrt(s2)
    paired.append({"a": a.tolist(), "b": b.tolist(), "t": float(r.statistic), "p": float(r.pvalue),
                   "ratio": ratio, "t_corrected": float(t_nb), "p_corrected": float(p_nb), "dz": float(dz)})
out["paired_t"] = paired

# Wilcoxon signed-rank, scipy's defaults (method='auto').
def wil(d):
    r = st.wilcoxon(d)
    return {"d": [float(v) for v in d], "statistic": float(r.statistic), "p": float(r.pvalue)}
cases = [
    [0.1, -0.3, 0.25, 0.4, 0.05],                                   # exact
    rng.normal(0.02, 0.05, 10).tolist(),                            # exact
    rng.normal(0.01, 0.05, 20).tolist(),                            # exact
    [0.1, -0.1, 0.25, 0.4, 0.05, 0.7],                              # ties, n <= 13: permutation
    [0.0, -0.1, 0.25, 0.4, 0.05, 0.7],                              # a zero: permutation
    (np.round(rng.normal(0.01, 0.05, 20), 2)).tolist(),             # ties, n > 13: asymptotic
    rng.normal(0.005, 0.05, 60).tolist(),                           # n > 50: asymptotic
]
out["wilcoxon"] = [wil(c) for c in cases]

# Power of the two-sided paired t-test, and the pairs needed for 80 %.
def power(dz, n, alpha=0.05):
    df = n - 1
    c = st.t.isf(alpha / 2, df)
    nc = dz * np.sqrt(n)
    return float(1 - st.nct.cdf(c, df, nc) + st.nct.cdf(-c, df, nc))
out["power"] = [[dz, n, power(dz, n)] for dz, n in [(0.5, 10), (1.2, 5), (0.2, 100), (-0.8, 12), (2.0, 3)]]
def needed(dz):
    n = 2
    while power(dz, n) < 0.8:
        n += 1
    return n
out["pairs_for_power"] = [[dz, needed(dz)] for dz in [0.3, 0.5, 1.0, -0.8, 2.5]]

# The Nadeau-Bengio corrected test: noncentrality d_z / sqrt(1/n + ratio).
def power_corrected(dz, n, ratio, alpha=0.05):
    df = n - 1
    c = st.t.isf(alpha / 2, df)
    nc = dz / np.sqrt(1 / n + ratio)
    return float(1 - st.nct.cdf(c, df, nc) + st.nct.cdf(-c, df, nc))
out["power_corrected"] = [[dz, n, r, power_corrected(dz, n, r)] for dz, n, r in [(2.0, 10, 0.25), (3.5, 6, 0.5), (1.0, 30, 0.1)]]
def needed_corrected(dz, ratio):
    n = 2
    while power_corrected(dz, n, ratio) < 0.8:
        n += 1
        if n > 100000:
            return None
    return n
# 0.5 with ratio 0.25 levels off below 80 %: never.
out["pairs_for_power_corrected"] = [[dz, r, needed_corrected(dz, r)] for dz, r in [(2.0, 0.25), (3.5, 0.5), (0.5, 0.25)]]

ps = [0.01, 0.04, 0.03, 0.20, 0.005]
out["holm"] = {"p": ps, "adjusted": multipletests(ps, method="holm")[1].tolist()}

tables = [
    rng.normal(0.6, 0.1, (6, 4)).tolist(),
    [[0.8, 0.7, 0.7, 0.5], [0.6, 0.6, 0.5, 0.4], [0.9, 0.8, 0.85, 0.8], [0.7, 0.65, 0.6, 0.6]],  # ties
]
out["friedman"] = []
for t in tables:
    arr = np.array(t)
    r = st.friedmanchisquare(*arr.T)
    ranks = np.mean([st.rankdata(-row) for row in arr], axis=0)
    out["friedman"].append({"table": t, "statistic": float(r.statistic), "p": float(r.pvalue),
                            "mean_ranks_higher_better": ranks.tolist()})
out["nemenyi_q"] = [[k, float(st.studentized_range.ppf(0.95, k, np.inf) / np.sqrt(2))] for k in range(2, 11)]

path = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "stats.json"
path.write_text(json.dumps(out, indent=1) + "\n")
print("wrote", path)
