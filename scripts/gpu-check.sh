#!/usr/bin/env bash
# The device check, run on a GPU machine that has PyTorch but no Rust toolchain, with a stripped
# `opencarbon` built here against the same torch version (see docs/backends.md, "libtorch and GPUs"):
#   doctor → ResNet-18 train step (libtorch's kernels, profiled; burn's; TF32; PyTorch, profiled) →
#   quickstart on CUDA at each precision → bench (ours vs the authors' data path, profiled; then
#   TF32) → PyTorch reference. Traces and their summaries land in <out-dir>/prof.
# The most important measurements come first; a device call ends at 600 s, so run it with that
# timeout and whatever finished is in <out-dir>.
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
    echo "-- libtorch's kernels (default: native convolution gradients and BatchNorm, fused Adam)"
    timeout 120 "$BIN" bench --device cuda --resnet18 32,128 --side 256 --warmup 3 --steps 10 \
        --json "$OUT/resnet18_native.jsonl"
    echo "-- burn's composite kernels and per-parameter Adam"
    OPENCARBON_CONV_GRAD=burn OPENCARBON_TCH_BATCH_NORM=burn OPENCARBON_ADAM=burn timeout 120 "$BIN" bench \
        --device cuda --resnet18 32,128 --side 256 --warmup 3 --steps 10 --json "$OUT/resnet18_burn.jsonl"
    echo "-- libtorch's kernels, TF32 matmuls too"
    timeout 120 "$BIN" bench --device cuda --resnet18 32,128 --side 256 --warmup 3 --steps 10 --precision tf32 \
        --json "$OUT/resnet18_native_tf32.jsonl"
    timeout 120 python3 tools/bench/pytorch_reference.py --device cuda --resnet18 32,128 --side 256 --warmup 3 \
        --steps 10 >"$OUT/resnet18_pytorch.jsonl"
    cat "$OUT/resnet18_pytorch.jsonl"
    # Profiles apart from the timings, so a profiler failure costs no measurement.
    echo "== per-operator profiles of the ResNet-18 step at batch 128 (ours, then PyTorch's)"
    timeout 120 "$BIN" bench --device cuda --resnet18 128 --side 256 --warmup 3 --steps 1 --profile "$OUT/prof"
    timeout 120 python3 tools/bench/pytorch_reference.py --device cuda --resnet18 128 --side 256 --warmup 3 \
        --steps 1 --profile "$OUT/prof" >/dev/null
    for trace in "$OUT"/prof/resnet18_pytorch_*.trace.json; do
        echo "-- $trace"
        "$BIN" bench --summarize "$trace" --steps 3
    done
    for precision in default fp32 tf32; do
        echo "== quickstart on cuda, --precision $precision"
        /usr/bin/time -f "quickstart wall %e s, max RSS %M KiB" timeout 240 "$BIN" run experiments/quickstart.yaml \
            --device cuda --precision $precision --out "$OUT/qs" --quiet
        cp "$OUT"/qs/runs/*/test_metrics.json "$OUT/quickstart_test_metrics_$precision.json"
        rm -rf "$OUT/qs"
    done
} >"$LOG" 2>&1

nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$OUT/gpu_memory_ours.txt" 2>/dev/null &
SMI=$!
timeout 240 "$BIN" bench --device cuda --tiles 1024 --side 256 --poi-categories 15 --batch 32 --warmup 3 --steps 20 \
    --json "$OUT/bench_ours.jsonl" >>"$LOG" 2>&1
kill $SMI 2>/dev/null
echo "== pytorch reference" >>"$LOG"
timeout 200 python3 tools/bench/pytorch_reference.py --device cuda --tiles 1024 --side 256 --poi 15 --batch 32 \
    --warmup 3 --steps 20 >"$OUT/bench_pytorch.jsonl" 2>>"$LOG"
# Lower priority last: a device call ends at 600 s.
timeout 200 "$BIN" bench --device cuda --tiles 1024 --side 256 --poi-categories 15 --batch 32 --warmup 3 --steps 20 \
    --path ours --precision tf32 --json "$OUT/bench_ours_tf32.jsonl" >>"$LOG" 2>&1
echo "== per-operator profile of the full network, our data path" >>"$LOG"
timeout 200 "$BIN" bench --device cuda --tiles 1024 --side 256 --poi-categories 15 --batch 32 --warmup 3 --steps 1 \
    --path ours --profile "$OUT/prof" >>"$LOG" 2>&1
# Traces travel compressed (the summaries sit beside them as JSON).
python3 - "$OUT"/prof/*.trace.json <<'PY'
import lzma, os, shutil, sys
for path in sys.argv[1:]:
    with open(path, "rb") as src, lzma.open(path + ".xz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.remove(path)
PY
echo "done $(date -u)" >>"$LOG"
