#!/usr/bin/env bash
# Build the `opencarbon` binary a GPU machine without Rust runs (scripts/gpu-check.sh): libtorch
# from the torch wheel that machine has (2.11.0 by default), stripped and xz-compressed into
# .gpu/opencarbon.xz (git-ignored; ~15 MB, under the 64 MiB a device call carries).
#
#   scripts/gpu-binary.sh                  # then carry .gpu and run scripts/gpu-check.sh .gpu/opencarbon.xz $OUT
#   TORCH_VERSION=2.9.0 scripts/gpu-binary.sh
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/libtorch-env.sh
cargo build --locked --no-default-features --features tch
mkdir -p .gpu
strip -o .gpu/opencarbon "$CARGO_TARGET_DIR/debug/opencarbon"
xz -T2 -6 -f .gpu/opencarbon
ls -l .gpu/opencarbon.xz
