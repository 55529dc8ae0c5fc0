#!/usr/bin/env bash
# The project's test command (README, and .ci/run calls exactly this). In order:
# 1. every test on the default (install-free) flex backend, TensorBoard's own reader included
#    (TensorBoard's Python package, rasterio and MAPIE go into ~/.cache/opencarbon/venv-tools), the
#    MLflow tracking tests against real `mlflow server`s they start on loopback (PyPI's
#    `mlflow[auth]`, same venv), and the report page rendered in headless Chromium (Debian's
#    `chromium`, installed when missing);
# 2. the CI sweep (experiments/ci.yaml: the full network against ablations and baselines, spatial
#    CV on a small synthetic city) from scratch, printing its summary table and writing its report;
# 3. the Slurm launcher against a real Slurm started on loopback (scripts/test-slurm.sh; installs
#    Debian's slurmctld slurmd slurm-client munge when missing; OPENCARBON_SKIP_SLURM=1 skips it);
#    then the fault campaign in its bounded form (scripts/fault-campaign.py: kill -9 and resume);
# 4. the libtorch build's tests on CPU (scripts/test-tch.sh; installs the torch wheel into
#    ~/.cache/opencarbon/venv-torch-<version> if missing). OPENCARBON_SKIP_TCH=1 skips them.
#
# One build for everything: without CARGO_TARGET_DIR, the clone's ./target is used, and when the
# clone has none yet it becomes a link to ~/.cache/opencarbon/target, which outlives clones. So
# `cargo run` (the quickstart) and this script share one build, whichever comes first.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${CARGO_TARGET_DIR:-}" ]]; then
    if [[ -L target ]]; then
        mkdir -p "$(readlink target)"   # the cache it points at may have been cleared
    elif [[ ! -e target ]]; then
        mkdir -p "$HOME/.cache/opencarbon/target"
        ln -s "$HOME/.cache/opencarbon/target" target
        echo "linked ./target to ~/.cache/opencarbon/target (one build shared by clones)" >&2
    fi
    export CARGO_TARGET_DIR="$PWD/target"
fi
TOOLS="${OPENCARBON_TOOLS_VENV:-$HOME/.cache/opencarbon/venv-tools}"
if ! "$TOOLS/bin/python" -c 'import tensorboard, numpy, PIL, rasterio, mapie' 2>/dev/null; then
    echo "installing tensorboard, rasterio (GDAL) and mapie into $TOOLS" >&2
    python3 -m venv "$TOOLS"
    "$TOOLS/bin/pip" install --quiet --disable-pip-version-check tensorboard numpy pillow rasterio mapie
fi
# The tests and the CI sweep track nothing into a lab's MLflow server a developer's shell points at
# (tests/mlflow.rs starts its own servers).
unset MLFLOW_TRACKING_URI MLFLOW_TRACKING_TOKEN MLFLOW_TRACKING_USERNAME MLFLOW_TRACKING_PASSWORD
# The MLflow tests start `mlflow server` (SQLite store, artifacts served; `[auth]`: Flask-WTF for
# its basic-auth app) and read back with MLflow's own client (tests/mlflow.rs).
if ! "$TOOLS/bin/python" -c 'import mlflow, flask_wtf' 2>/dev/null || [[ ! -x "$TOOLS/bin/mlflow" ]]; then
    echo "installing mlflow[auth] into $TOOLS" >&2
    "$TOOLS/bin/pip" install --quiet --disable-pip-version-check 'mlflow[auth]'
fi
# tests/tuning.rs pins the TPE sampler against Optuna's own (private) internals: one version.
if ! "$TOOLS/bin/python" -c 'import optuna, sys; sys.exit(optuna.__version__ != "5.1.0")' 2>/dev/null; then
    echo "installing optuna 5.1.0 into $TOOLS" >&2
    "$TOOLS/bin/pip" install --quiet --disable-pip-version-check 'optuna==5.1.0'
fi
export OPENCARBON_PYTHON="$TOOLS/bin/python"
# The report test opens index.html in a real headless Chromium (Debian's package).
if ! command -v chromium >/dev/null 2>&1; then
    echo "installing Debian's chromium (for the report test)" >&2
    SUDO=""
    [[ "$(id -u)" != 0 ]] && SUDO=sudo
    $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null ||
        { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
fi
export OPENCARBON_CHROMIUM="$(command -v chromium)"
# Every test runs here: a missing reader (this Python and its modules, Chromium) or the
# real data (OPENCARBON_DATA, default ../shared/data) fails its test instead of skipping it.
export OPENCARBON_REQUIRE_TOOLS=1

step() { echo "== $1 ($(date -u +%H:%M:%S))" >&2; }

step "tests, flex backend"
cargo test --locked "$@"

step "CI sweep"
CI_OUT="${OPENCARBON_CI_OUT:-${TMPDIR:-/tmp}/opencarbon-ci}"
rm -rf "$CI_OUT"
cargo run --locked --quiet -- run experiments/ci.yaml --quiet --out "$CI_OUT"

if [[ "${OPENCARBON_SKIP_SLURM:-0}" != 1 ]]; then
    step "Slurm launcher against a real single-node Slurm"
    scripts/test-slurm.sh "$CARGO_TARGET_DIR/debug/opencarbon"
fi

step "fault campaign (bounded)"
python3 scripts/fault-campaign.py --bin "$CARGO_TARGET_DIR/debug/opencarbon" \
    --kills "${OPENCARBON_FAULT_KILLS:-20}" --work "${TMPDIR:-/tmp}/opencarbon-fault-campaign"

if [[ "${OPENCARBON_SKIP_TCH:-0}" != 1 ]]; then
    step "tests, libtorch backend (CPU)"
    # A subshell: the libtorch environment must not reach later flex builds.
    (scripts/test-tch.sh)
fi
step "all passed"
