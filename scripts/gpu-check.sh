#!/usr/bin/env bash
# The device check, run on a GPU machine that has PyTorch but no Rust toolchain, with a stripped
# `opencarbon` built here against the same torch version (see README, "libtorch and GPUs"):
#   doctor → ResNet-18 train step (burn with libtorch's convolution weight gradient, burn's default,
#   PyTorch) → quickstart on CUDA → bench (ours vs the authors' data path) → PyTorch reference.
# usage: scripts/gpu-check.sh <opencarbon-binary or .xz of it> <out-dir>
set -uo pipefail
BIN=${1:?binary}
OUT=${2:?out dir}
mkdir -p "$OUT"
if [[ "$BIN" == *.xz ]]; then
    # The stripped binary with polars is ~75 MB; it travels xz-compressed.
    python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open('/tmp/opencarbon', 'wb'))" "$BIN"
    chmod +x /tmp/opencarbon
    BIN=/tmp/opencarbon
fi
TORCH_LIB=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
LOG="$OUT/log.txt"
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
    "$BIN" doctor
    echo "== ResNet-18 step, 256², batches 32 and 128 (vendor/burn-tch/PATCH.md)"
    for mode in native burn; do
        echo "-- OPENCARBON_CONV_WEIGHT_GRAD=$mode"
        OPENCARBON_CONV_WEIGHT_GRAD=$mode timeout 120 "$BIN" bench --device cuda --resnet18 32,128 --side 256 \
            --warmup 3 --steps 10 --json "$OUT/resnet18_$mode.jsonl"
    done
    echo "-- OPENCARBON_CONV_WEIGHT_GRAD=native OPENCARBON_TCH_BATCH_NORM=native"
    OPENCARBON_CONV_WEIGHT_GRAD=native OPENCARBON_TCH_BATCH_NORM=native timeout 120 "$BIN" bench --device cuda \
        --resnet18 32,128 --side 256 --warmup 3 --steps 10 --json "$OUT/resnet18_native_bn.jsonl"
    timeout 120 python3 tools/bench/pytorch_reference.py --device cuda --resnet18 32,128 --side 256 --warmup 3 \
        --steps 10 >"$OUT/resnet18_pytorch.jsonl"
    cat "$OUT/resnet18_pytorch.jsonl"
    echo "== quickstart on cuda"
    /usr/bin/time -f "quickstart wall %e s, max RSS %M KiB" timeout 240 "$BIN" run experiments/quickstart.yaml --device cuda --out "$OUT/qs" --quiet
    cp "$OUT"/qs/runs/*/test_metrics.json "$OUT/quickstart_test_metrics.json"
    rm -rf "$OUT/qs"
} >"$LOG" 2>&1

nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$OUT/gpu_memory_ours.txt" 2>/dev/null &
SMI=$!
timeout 240 "$BIN" bench --device cuda --tiles 1024 --side 256 --poi-categories 15 --batch 32 --warmup 3 --steps 20 \
    --json "$OUT/bench_ours.jsonl" >>"$LOG" 2>&1
kill $SMI 2>/dev/null
echo "== pytorch reference" >>"$LOG"
timeout 200 python3 tools/bench/pytorch_reference.py --device cuda --tiles 1024 --side 256 --poi 15 --batch 32 \
    --warmup 3 --steps 20 >"$OUT/bench_pytorch.jsonl" 2>>"$LOG"
echo "done $(date -u)" >>"$LOG"
