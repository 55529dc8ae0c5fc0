# Sourced by the libtorch scripts (gpu-binary.sh, test-tch.sh): sets up torch ($TORCH_VERSION,
# 2.11.0 by default, as the GPU machine has), exports the environment a `--features tch` build
# needs, and a target dir per torch version (changing a LIBTORCH* variable rebuilds most of burn).
TORCH_VERSION="${TORCH_VERSION:-2.11.0}"
TORCH_VERSION="$TORCH_VERSION" scripts/setup-libtorch.sh
# shellcheck disable=SC1090
source "$(TORCH_VERSION="$TORCH_VERSION" scripts/setup-libtorch.sh --env-file)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/opencarbon/target-tch$(echo "${TORCH_VERSION%.*}" | tr -d .)}"
