#!/usr/bin/env python3
"""MAPIE's prediction intervals on numbers given as JSON, for tests/conformal.rs.

Input (argv[1], JSON): level; calibration targets `cal_y`, their out-of-fold predictions
`cal_pred` and folds `cal_fold`; for each test point the prediction of each fold's model
`test_fold_pred` (n_test × K) and a point prediction `test_pred`.
Output (stdout, JSON): split-conformal bounds (SplitConformalRegressor, prefit, calibrated on
all calibration points, around `test_pred`) and CV+ bounds (CrossConformalRegressor,
method="plus", the given folds as a PredefinedSplit), as lists of floats (repr: exact).

Models are lookups: each "fitted" fold model answers with the given predictions, so MAPIE
computes its intervals on exactly the numbers the Rust code sees.

With scales (`cal_scale`, `test_scale`, `test_fold_scale`): normalised split conformal through
MAPIE's ResidualNormalisedScore with a prefit residual model that answers with the given scales,
and normalised CV+ written out here from its definition (MAPIE's normalised score refuses cross
methods): fold k contributes mu_k(x) -/+ (R_i / s_i) * s_k(x), bounds as MAPIE's CV+ quantiles.
"""
import json
import sys

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.model_selection import PredefinedSplit
from mapie.conformity_scores import ResidualNormalisedScore
from mapie.regression import CrossConformalRegressor, SplitConformalRegressor

d = json.load(open(sys.argv[1]))
level = d["level"]
cal_y = np.array(d["cal_y"], dtype=float)
cal_pred = np.array(d["cal_pred"], dtype=float)
cal_fold = np.array(d["cal_fold"], dtype=int)
test_fold_pred = np.array(d["test_fold_pred"], dtype=float)
test_pred = np.array(d["test_pred"], dtype=float)
n_cal, n_test = len(cal_y), len(test_pred)
folds = sorted(set(cal_fold.tolist()))

# X is one column: a row id; ids < n_cal are calibration points, the others test points.
X_cal = np.arange(n_cal, dtype=float).reshape(-1, 1)
X_test = (n_cal + np.arange(n_test, dtype=float)).reshape(-1, 1)


class FoldLookup(RegressorMixin, BaseEstimator):
    """The model of one fold: fit() learns which fold it left out from the rows it sees."""

    def fit(self, X, y):
        seen = set(X[:, 0].astype(int).tolist())
        left_out = [k for k in folds if not any(i in seen for i in np.where(cal_fold == k)[0])]
        # MAPIE also fits one model on everything (its point prediction): `test_pred`.
        assert len(left_out) <= 1, left_out
        self.fold_ = left_out[0] if left_out else None
        self.fitted_ = True
        return self

    def predict(self, X):
        out = []
        for i in X[:, 0].astype(int):
            if self.fold_ is None:
                out.append(cal_pred[i] if i < n_cal else test_pred[i - n_cal])
            elif i < n_cal:
                assert cal_fold[i] == self.fold_, "a fold model asked about a tile it trained on"
                out.append(cal_pred[i])
            else:
                out.append(test_fold_pred[i - n_cal][folds.index(self.fold_)])
        return np.array(out)


class PointLookup(RegressorMixin, BaseEstimator):
    """A prefit model: the out-of-fold prediction of a calibration point, `test_pred` of a test point."""

    def fit(self, X, y):
        self.fitted_ = True
        return self

    def predict(self, X):
        ids = X[:, 0].astype(int)
        return np.array([cal_pred[i] if i < n_cal else test_pred[i - n_cal] for i in ids])


split = SplitConformalRegressor(PointLookup().fit(X_cal, cal_y), confidence_level=level, prefit=True)
split.conformalize(X_cal, cal_y)
_, split_bounds = split.predict_interval(X_test)

cv = CrossConformalRegressor(
    FoldLookup(), confidence_level=level, method="plus", cv=PredefinedSplit(cal_fold)
)
cv.fit_conformalize(X_cal, cal_y)
_, cv_bounds = cv.predict_interval(X_test)

out = {
    "split_low": split_bounds[:, 0, 0].tolist(),
    "split_high": split_bounds[:, 1, 0].tolist(),
    "cv_plus_low": cv_bounds[:, 0, 0].tolist(),
    "cv_plus_high": cv_bounds[:, 1, 0].tolist(),
}

if "cal_scale" in d:
    cal_scale = np.array(d["cal_scale"], dtype=float)
    test_scale = np.array(d["test_scale"], dtype=float)
    test_fold_scale = np.array(d["test_fold_scale"], dtype=float)

    class ScaleLookup(RegressorMixin, BaseEstimator):
        """A prefit residual model: the given scale of each point."""

        def fit(self, X, y):
            self.fitted_ = True
            return self

        def predict(self, X):
            ids = X[:, 0].astype(int)
            return np.array([cal_scale[i] if i < n_cal else test_scale[i - n_cal] for i in ids])

    score = ResidualNormalisedScore(residual_estimator=ScaleLookup().fit(X_cal, cal_y), prefit=True)
    scaled = SplitConformalRegressor(
        PointLookup().fit(X_cal, cal_y), confidence_level=level, prefit=True,
        conformity_score=score,
    )
    scaled.conformalize(X_cal, cal_y)
    _, scaled_bounds = scaled.predict_interval(X_test)
    out["scaled_split_low"] = scaled_bounds[:, 0, 0].tolist()
    out["scaled_split_high"] = scaled_bounds[:, 1, 0].tolist()

    # Normalised CV+ by its definition, with MAPIE's conformal quantile rule:
    # the lower bound is the floor(alpha (n+1))-th smallest, the upper the ceil((1-alpha)(n+1))-th.
    alpha = round(1 - level, 10)
    n = n_cal
    scores = np.abs(cal_y - cal_pred) / cal_scale
    lows, highs = [], []
    for t in range(n_test):
        mu = test_fold_pred[t][[folds.index(k) for k in cal_fold]]
        s_x = test_fold_scale[t][[folds.index(k) for k in cal_fold]]
        lo = np.sort(mu + -(scores * s_x))
        hi = np.sort(mu + scores * s_x)
        k_hi = int(np.ceil((1 - alpha) * (n + 1)))
        k_lo = n + 1 - k_hi
        lows.append(float(lo[k_lo - 1]))
        highs.append(float(hi[k_hi - 1]))
    out["scaled_cv_plus_low"] = lows
    out["scaled_cv_plus_high"] = highs

print(json.dumps(out))
