#!/usr/bin/env bash
# Install libtorch from the PyPI `torch` wheel into a venv (never a build-time download: torch-sys's
# download host is unreachable here) and write the environment a `--features tch` build needs.
#
#   scripts/setup-libtorch.sh            # torch 2.9.0, what torch-sys 0.22 (burn-tch 0.22.1) expects
#   TORCH_VERSION=2.11.0 scripts/setup-libtorch.sh   # e.g. to match a GPU machine's PyTorch
#   source "$(scripts/setup-libtorch.sh --env-file)"  # then: cargo build --features tch
#
# The venv lives outside the clone (default ~/.cache/opencarbon/venv-torch-<version>) so CI and later
# sessions reuse it. Re-running is cheap: an installed, importable torch of the right version is kept.
set -euo pipefail

TORCH_VERSION="${TORCH_VERSION:-2.9.0}"
VENV="${OPENCARBON_TORCH_VENV:-$HOME/.cache/opencarbon/venv-torch-$TORCH_VERSION}"
ENV_FILE="$VENV/opencarbon-libtorch.env"

if [[ "${1:-}" == "--env-file" ]]; then
    echo "$ENV_FILE"
    exit 0
fi

PY="${PYTHON:-python3}"
if [[ ! -x "$VENV/bin/python" ]]; then
    echo "creating venv $VENV" >&2
    "$PY" -m venv "$VENV"
fi

have=$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)
if [[ "$have" != "$TORCH_VERSION" ]]; then
    echo "installing torch==$TORCH_VERSION (with the CUDA runtime wheels libtorch loads) into $VENV" >&2
    # The full wheel with its nvidia-* dependencies: the wheel alone links but does not load, even on CPU.
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
fi

TORCH_DIR=$("$VENV/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
BYPASS=""
if [[ "$TORCH_VERSION" != "2.9.0" ]]; then
    BYPASS="export LIBTORCH_BYPASS_VERSION_CHECK=1"
fi
cat > "$ENV_FILE" <<ENV
# written by scripts/setup-libtorch.sh: source it before building or running with --features tch
export LIBTORCH="$TORCH_DIR"
export LIBTORCH_CXX11_ABI=1
export LD_LIBRARY_PATH="$TORCH_DIR/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
$BYPASS
ENV
echo "libtorch: torch $TORCH_VERSION at $TORCH_DIR" >&2
echo "environment written to $ENV_FILE:" >&2
cat "$ENV_FILE" >&2
