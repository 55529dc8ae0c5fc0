#!/usr/bin/env bash
# One benchmark run of the local launcher: experiments/ci.yaml's first fold (expectations off) from
# scratch with --jobs 1 (in process, one run after another) and with --jobs N (default 2: one worker
# process per core), wall time of each, their ratio, and a check that both give the same summary.
#   scripts/bench-jobs.sh [N] [extra `run` arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-2}"
shift || true
BIN="${CARGO_TARGET_DIR:-target}/debug/opencarbon"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/opencarbon-bench-jobs.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
seconds() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N); python3 -c "print($t1 - $t0)"; }
FIRST=(--only fold=0 --set "expect=[]")
one=$(seconds "$BIN" run experiments/ci.yaml --out "$WORK/jobs1" --jobs 1 --quiet --no-report "${FIRST[@]}" "$@")
many=$(seconds "$BIN" run experiments/ci.yaml --out "$WORK/jobsN" --jobs "$N" --quiet --no-report "${FIRST[@]}" "$@")
cmp -s "$WORK/jobs1/summary.csv" "$WORK/jobsN/summary.csv" && same="identical" || same="DIFFERENT"
printf 'cores %s | --jobs 1: %.1f s | --jobs %s: %.1f s | speed-up %.2f× | summaries %s\n' \
    "$(nproc)" "$one" "$N" "$many" "$(python3 -c "print($one / $many)")" "$same"
[[ "$same" == identical ]]
