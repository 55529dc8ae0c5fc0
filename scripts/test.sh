#!/usr/bin/env bash
# The project's test command (README, and .ci/run calls exactly this).
# - builds in a persistent target dir outside the clone (CARGO_TARGET_DIR, default ~/.cache/opencarbon/target);
# - installs TensorBoard's Python package into a small venv (~/.cache/opencarbon/venv-tools) so that a
#   test reads the run's event file back with TensorBoard's own reader;
# - runs every test on the default (install-free) backend;
# - runs the CI sweep (experiments/ci.yaml: every ablation variant and baseline on a small synthetic
#   city) from scratch and prints its summary table.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/opencarbon/target}"
TOOLS="${OPENCARBON_TOOLS_VENV:-$HOME/.cache/opencarbon/venv-tools}"
if ! "$TOOLS/bin/python" -c 'import tensorboard, numpy, PIL' 2>/dev/null; then
    echo "installing the tensorboard Python package into $TOOLS" >&2
    python3 -m venv "$TOOLS"
    "$TOOLS/bin/pip" install --quiet --disable-pip-version-check tensorboard numpy pillow
fi
export OPENCARBON_PYTHON="$TOOLS/bin/python"

cargo test --locked "$@"

CI_OUT="${OPENCARBON_CI_OUT:-${TMPDIR:-/tmp}/opencarbon-ci}"
rm -rf "$CI_OUT"
cargo run --locked --quiet -- run experiments/ci.yaml --quiet --out "$CI_OUT"
