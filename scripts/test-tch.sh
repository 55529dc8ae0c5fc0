#!/usr/bin/env bash
# The libtorch build's tests (CI runs the default backend only): every test on libtorch CPU with
# libtorch's kernels (the default routes), then the parity and kernel tests again on burn's routes.
# Sets up torch first (scripts/setup-libtorch.sh; TORCH_VERSION=2.11.0 by default, as the GPU
# machine has).
#
#   scripts/test-tch.sh
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/libtorch-env.sh
TOOLS="${OPENCARBON_TOOLS_VENV:-$HOME/.cache/opencarbon/venv-tools}"
[[ -x "$TOOLS/bin/python" ]] && export OPENCARBON_PYTHON="$TOOLS/bin/python"

cargo test --locked --no-default-features --features tch "$@"
OPENCARBON_CONV_GRAD=burn OPENCARBON_TCH_BATCH_NORM=burn OPENCARBON_ADAM=burn \
    cargo test --locked --no-default-features --features tch --test integration -- parity:: kernels::
