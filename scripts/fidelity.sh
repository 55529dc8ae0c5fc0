#!/usr/bin/env bash
# The fidelity comparison (experiments/paper/fidelity.yaml, docs/fidelity.md): the authors'
# main_contrastive.py and opencarbon trained on the same synthetic city and split, 3 seeds, raw and
# centred targets, on CPU. Bring the script (JinweiZzz/OpenCarbon; not part of this repository):
#
#   scripts/fidelity.sh path/to/main_contrastive.py [more compare.py arguments]
#
# Uses the torch venv of scripts/setup-libtorch.sh (adding what the script imports), builds
# opencarbon on libtorch CPU (the flex build gives the same numbers, 3× slower) and writes
# results/fidelity/{table.md,results.json}. About 30 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
SCRIPT="$(realpath "${1:?usage: scripts/fidelity.sh path/to/main_contrastive.py}")"
shift
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
(
    source scripts/libtorch-env.sh >&2
    export CARGO_TARGET_DIR="$TARGET"
    cargo build --locked --quiet --no-default-features --features tch
    mkdir -p "$TARGET/fidelity"
    cp "$CARGO_TARGET_DIR/debug/opencarbon" "$TARGET/fidelity/opencarbon-tch"
)
PY="$(dirname "$(TORCH_VERSION="${TORCH_VERSION:-2.11.0}" scripts/setup-libtorch.sh --env-file)")/bin/python"
"$PY" -c 'import torchvision, cv2, sklearn, setproctitle, tensorboard, tqdm, numpy' 2>/dev/null ||
    "$PY" -m pip install --quiet --disable-pip-version-check "torchvision==0.26.0" \
        opencv-python-headless scikit-learn setproctitle tensorboard tqdm numpy
CITY=datasets/fidelity-city
[[ -f "$CITY/city.yaml" ]] || "$TARGET/fidelity/opencarbon-tch" datasets synth --preset monocentric \
    --seed 7 --size 16x16 --tile-side 32 --poi-categories 6 --out "$CITY"
mkdir -p results/fidelity
"$PY" tools/fidelity/compare.py --script "$SCRIPT" --opencarbon "$TARGET/fidelity/opencarbon-tch" \
    --city "$CITY" --split results/fidelity/split.csv --spec experiments/paper/fidelity.yaml \
    --work "$TARGET/fidelity/work" "$@" | tee "$TARGET/fidelity/table.md"
# The committed table is replaced only once the comparison has finished (set -o pipefail above
# makes a failing compare.py stop the script here, the old table intact).
mv "$TARGET/fidelity/table.md" results/fidelity/table.md
cp "$TARGET/fidelity/work/results.json" results/fidelity/results.json
