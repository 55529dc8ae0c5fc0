#!/usr/bin/env python3
"""Optuna's TPE internals on histories given as JSON, for tests/tuning.rs.

Input (argv[1], JSON): {"cases": [...]}, each case a `direction` (minimize | maximize), one
parameter's `distribution` ({"type": "float" | "int", "low", "high", "log", "step"} or
{"type": "categorical", "choices": [...]}), `trials` in order ({"state": complete | pruned |
running, "value", "param", "curve": [[step, value], ...]}) and `candidates` (values; a choice's
index for categorical).
Output (stdout, JSON), per case: gamma, the trial numbers Optuna puts "below" and "above"
(`_split_trials`), each estimator's mixture weights and kernels (`_build_parzen_estimator`:
mu and sigma in Optuna's working space, or categorical weights), the log densities at the
candidates and the acquisition ln l(x) - ln g(x) (`_compute_acquisition_func`); floats as repr.

A second mode, argv[1] == "--quadratic SEEDS TRIALS": the mean best value of Optuna's TPESampler
(univariate and multivariate, other settings default) and RandomSampler on f(x, y) = x^2 + y^2
over [-5, 5]^2, over seeds 0..SEEDS-1.

A third mode, "--joint CASE": multivariate TPE over several parameters, CASE as above but with
`distributions` (name -> distribution, in the search space's order), trials with `params`
(name -> value) and candidates as rows (one internal value per parameter); the same outputs,
with `kernels` per parameter.

A fourth mode, "--suggest HISTORY SEEDS": one parameter x in [-5, 5], the complete trials of
HISTORY (JSON [[x, value], ...], minimised); the next x Optuna's univariate TPESampler suggests
under each of seeds 0..SEEDS-1 (the distribution of one TPE step).
"""
import json
import sys

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import RandomSampler, TPESampler
from optuna.samplers._tpe.sampler import _split_trials, default_gamma
from optuna.trial import TrialState, create_trial

optuna.logging.set_verbosity(optuna.logging.ERROR)


def distribution(d):
    if d["type"] == "categorical":
        return CategoricalDistribution(d["choices"])
    if d["type"] == "int":
        return IntDistribution(d["low"], d["high"], log=d["log"], step=d["step"] or 1)
    return FloatDistribution(d["low"], d["high"], log=d["log"], step=d["step"])


def kernels(mpe):
    mix = mpe._mixture_distribution
    d = mix.distributions[0]
    out = {"weights": mix.weights.tolist()}
    if hasattr(d, "mu"):
        out["mus"] = np.asarray(d.mu, dtype=float).tolist()
        out["sigmas"] = np.asarray(d.sigma, dtype=float).tolist()
    else:
        out["categorical"] = np.asarray(d.weights, dtype=float).tolist()
    return out


def case(c):
    dist = distribution(c["distribution"])
    study = optuna.create_study(direction=c["direction"], sampler=TPESampler(seed=0))
    states = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED,
              "running": TrialState.RUNNING}
    for t in c["trials"]:
        state = states[t["state"]]
        study.add_trial(create_trial(
            state=state,
            value=t["value"] if state == TrialState.COMPLETE else None,
            params={"x": t["param"]},
            distributions={"x": dist},
            intermediate_values={int(s): v for s, v in t.get("curve", [])},
        ))
    sampler = study.sampler
    space = {"x": dist}
    trials = study._get_trials(deepcopy=False,
                               states=[TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING])
    n = sum(t.state != TrialState.RUNNING for t in trials)
    below, above = _split_trials(study, trials, default_gamma(n))
    mpe_below = sampler._build_parzen_estimator(study, space, below, handle_below=True)
    mpe_above = sampler._build_parzen_estimator(study, space, above, handle_below=False)
    samples = {"x": np.asarray(c["candidates"], dtype=float)}
    return {
        "gamma": default_gamma(n),
        "below": [t.number for t in below],
        "above": [t.number for t in above],
        "l": kernels(mpe_below),
        "g": kernels(mpe_above),
        "log_l": mpe_below.log_pdf(samples).tolist(),
        "log_g": mpe_above.log_pdf(samples).tolist(),
        "acquisition": sampler._compute_acquisition_func(samples, mpe_below, mpe_above).tolist(),
    }


def quadratic(seeds, trials):
    def objective(trial):
        x = trial.suggest_float("x", -5, 5)
        y = trial.suggest_float("y", -5, 5)
        return x * x + y * y

    out = {}
    samplers = [
        ("tpe_univariate", lambda s: TPESampler(seed=s, multivariate=False)),
        ("tpe_multivariate", lambda s: TPESampler(seed=s, multivariate=True)),
        ("random", lambda s: RandomSampler(seed=s)),
    ]
    for name, make in samplers:
        best = []
        for s in range(seeds):
            study = optuna.create_study(direction="minimize", sampler=make(s))
            study.optimize(objective, n_trials=trials)
            best.append(study.best_value)
        out[name] = float(np.mean(best))
    return out


def joint(c):
    space = {k: distribution(d) for k, d in c["distributions"].items()}
    study = optuna.create_study(direction=c["direction"], sampler=TPESampler(seed=0, multivariate=True))
    for t in c["trials"]:
        study.add_trial(create_trial(value=t["value"], params=t["params"], distributions=space))
    sampler = study.sampler
    trials = study._get_trials(deepcopy=False, states=[TrialState.COMPLETE])
    below, above = _split_trials(study, trials, default_gamma(len(trials)))
    mpe_below = sampler._build_parzen_estimator(study, space, below, handle_below=True)
    mpe_above = sampler._build_parzen_estimator(study, space, above, handle_below=False)
    rows = np.asarray(c["candidates"], dtype=float)
    samples = {k: rows[:, i] for i, k in enumerate(space)}

    def dims(mpe):
        mix = mpe._mixture_distribution
        out = []
        for d in mix.distributions:
            if hasattr(d, "mu"):
                out.append({"mus": np.asarray(d.mu).tolist(), "sigmas": np.asarray(d.sigma).tolist()})
            else:
                out.append({"categorical": np.asarray(d.weights).tolist()})
        return {"weights": mix.weights.tolist(), "dims": out}

    return {
        "below": [t.number for t in below],
        "l": dims(mpe_below),
        "g": dims(mpe_above),
        "acquisition": sampler._compute_acquisition_func(samples, mpe_below, mpe_above).tolist(),
    }


def suggestions(history, seeds):
    d = FloatDistribution(-5.0, 5.0)
    out = []
    for s in range(seeds):
        study = optuna.create_study(sampler=TPESampler(seed=s, multivariate=False))
        for x, v in history:
            study.add_trial(create_trial(params={"x": x}, distributions={"x": d}, value=v))
        out.append(study.ask({"x": d}).params["x"])
    return out


if __name__ == "__main__":
    if sys.argv[1] == "--joint":
        print(json.dumps(joint(json.load(open(sys.argv[2])))))
    elif sys.argv[1] == "--suggest":
        print(json.dumps(suggestions(json.load(open(sys.argv[2])), int(sys.argv[3]))))
    elif sys.argv[1] == "--quadratic":
        print(json.dumps(quadratic(int(sys.argv[2]), int(sys.argv[3]))))
    else:
        data = json.load(open(sys.argv[1]))
        print(json.dumps({"version": optuna.__version__,
                          "cases": [case(c) for c in data["cases"]]}))
