#!/usr/bin/env bash
# Build the `opencarbon` binary a GPU machine without Rust runs (scripts/gpu-check.sh): libtorch
# from the torch wheel that machine has (2.11.0 by default), stripped and xz-compressed into
# .gpu/opencarbon.xz (git-ignored; ~15 MB, under the 64 MiB a device call carries).
#
#   scripts/gpu-binary.sh                  # then carry .gpu and run scripts/gpu-check.sh .gpu/opencarbon.xz $OUT
#   TORCH_VERSION=2.9.0 scripts/gpu-binary.sh
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION="${TORCH_VERSION:-2.11.0}"
TORCH_VERSION="$TORCH_VERSION" scripts/setup-libtorch.sh
# shellcheck disable=SC1090
source "$(TORCH_VERSION="$TORCH_VERSION" scripts/setup-libtorch.sh --env-file)"
# One target dir per torch version: changing a LIBTORCH* variable rebuilds most of burn.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/opencarbon/target-tch$(echo "${TORCH_VERSION%.*}" | tr -d .)}"
cargo build --locked --no-default-features --features tch
mkdir -p .gpu
strip -o .gpu/opencarbon "$CARGO_TARGET_DIR/debug/opencarbon"
xz -T2 -6 -f .gpu/opencarbon
ls -l .gpu/opencarbon.xz
