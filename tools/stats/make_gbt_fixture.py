"""Reference for the gbt baseline (tests/gbt_reference.rs): scikit-learn's histogram GBM on the
Friedman #1 regression problem (5 informative and 3 noise features), fitted with the settings our
`gbt` uses (200 trees, depth 4, learning rate 0.05) and with its own defaults. Written once to
tests/fixtures/gbt_reference.json and committed.

    ~/.cache/opencarbon/venv-scipy/bin/pip install scikit-learn
    ~/.cache/opencarbon/venv-scipy/bin/python tools/stats/make_gbt_fixture.py
"""
import json
import pathlib

import numpy as np
import sklearn
from sklearn.datasets import make_friedman1
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.metrics import r2_score

x, y = make_friedman1(n_samples=900, n_features=8, noise=1.0, random_state=7)
x_train, y_train, x_test, y_test = x[:600], y[:600], x[600:], y[600:]
ours = HistGradientBoostingRegressor(max_iter=200, max_depth=4, learning_rate=0.05, early_stopping=False, random_state=0)
default = HistGradientBoostingRegressor(random_state=0)
out = {
    "sklearn": sklearn.__version__,
    "x_train": np.round(x_train, 6).tolist(),
    "y_train": np.round(y_train, 6).tolist(),
    "x_test": np.round(x_test, 6).tolist(),
    "y_test": np.round(y_test, 6).tolist(),
    "r2_same_settings": float(r2_score(y_test, ours.fit(x_train, y_train).predict(x_test))),
    "r2_defaults": float(r2_score(y_test, default.fit(x_train, y_train).predict(x_test))),
}
path = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "gbt_reference.json"
path.write_text(json.dumps(out) + "\n")
print("wrote", path, out["r2_same_settings"], out["r2_defaults"])
