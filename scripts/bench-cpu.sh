#!/usr/bin/env bash
# The CPU comparison of `opencarbon bench --compare-cpu`, one run: this repository built on flex
# (the default) and on libtorch CPU, and the PyTorch reference (tools/bench/pytorch_reference.py)
# in the torch venv, each training the same network at the same size on both data paths. Defaults
# are the quickstart's city (256 tiles of 32 px, 6 POI categories) and batch 32; extra arguments go
# to bench, e.g. `scripts/bench-cpu.sh --steps 20 --json cpu.jsonl`.
#
# Run it on an idle machine: the three programs run one after another, each with every core.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TARGET_DIR="$TARGET"
WORK="$TARGET/bench-cpu"
mkdir -p "$WORK"

# The libtorch build (a subshell: its environment must not reach the flex build).
(
    source scripts/libtorch-env.sh >&2
    cargo build --locked --quiet --no-default-features --features tch
    cp "$CARGO_TARGET_DIR/debug/opencarbon" "$WORK/opencarbon-tch"
)
# The same torch venv as the libtorch build's (its env file sits in the venv).
TORCH_PYTHON="$(dirname "$(TORCH_VERSION="${TORCH_VERSION:-2.11.0}" scripts/setup-libtorch.sh --env-file)")/bin/python"
"$TORCH_PYTHON" -c 'import numpy' 2>/dev/null ||
    "$TORCH_PYTHON" -m pip install --quiet --disable-pip-version-check numpy   # the reference's
cargo build --locked --quiet
cp "$TARGET/debug/opencarbon" "$WORK/opencarbon-flex"

"$WORK/opencarbon-flex" bench --compare-cpu --tch-binary "$WORK/opencarbon-tch" \
    --torch-python "$TORCH_PYTHON" --tiles 256 --side 32 --poi-categories 6 --batch 32 \
    --warmup 3 --steps 10 "$@"
