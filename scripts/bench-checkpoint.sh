#!/usr/bin/env bash
# What the resumable checkpoint costs: the quickstart's run (flex, the default backend) with a
# checkpoint after every epoch, against its training time. Prints per-checkpoint seconds, the
# epoch time, and the overhead at `checkpoint_every: {epochs: 1}` and at
# the default `{minutes: 5}`. docs/reliability.md quotes it.
#
#   scripts/bench-checkpoint.sh [epochs]        # default 20
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS="${1:-20}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/opencarbon-bench-ckpt.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
cargo run --locked --quiet -- run experiments/quickstart.yaml --quiet --no-report --out "$WORK" \
    --set "train.epochs=$EPOCHS" --set 'train.checkpoint_every={epochs: 1}' >/dev/null
python3 - "$WORK" "$EPOCHS" <<'PY'
import glob, json, os, sys
work, epochs = sys.argv[1], int(sys.argv[2])
meta = json.load(open(glob.glob(f"{work}/runs/*/meta.json")[0]))
count, seconds = meta["checkpoints"]
train = meta["train_seconds"]
per = seconds / count
epoch = (train - seconds) / epochs
print(f"backend {meta['backend']}, cpu {meta.get('cpu')}, threads {meta.get('threads')}")
print(f"{count} checkpoints in {seconds:.2f} s: {per*1000:.0f} ms each; training {train:.1f} s, {epoch:.2f} s per epoch")
print(f"overhead with a checkpoint every epoch: {100*seconds/(train-seconds):.2f} %")
print(f"overhead at the default (every 5 minutes): {100*per/300:.3f} %")
PY
