#!/usr/bin/env bash
# Regenerates tests/fixtures/parity/ with PyTorch: tools/parity/make_fixtures.py needs torch,
# torchvision, safetensors and pillow. The committed fixtures were written with torch 2.11.0 and
# torchvision 0.26.0 on CPU. Uses $OPENCARBON_TORCH_VENV when set (a venv that already has torch,
# e.g. the one scripts/setup-libtorch.sh made), else installs into ~/.cache/opencarbon/venv-parity.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=${TORCH_VERSION:-2.11.0}
TORCHVISION_VERSION=${TORCHVISION_VERSION:-0.26.0}
venv=${OPENCARBON_TORCH_VENV:-$HOME/.cache/opencarbon/venv-parity}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import torch, torchvision, safetensors, PIL' 2>/dev/null; then
  "$venv/bin/pip" install --quiet "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" safetensors pillow
fi
"$venv/bin/python" tools/parity/make_fixtures.py --out tests/fixtures/parity
