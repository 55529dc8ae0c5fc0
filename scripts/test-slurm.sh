#!/usr/bin/env bash
# The Slurm launcher against a real Slurm (scripts/slurm-cluster.sh: munged, slurmctld and slurmd
# on loopback in a temporary directory, installed from Debian's packages when missing):
#  1. submits experiments/ci.yaml as a job array (its first fold, 4 epochs, no expectations: short);
#  2. cancels one network run's task while it trains;
#  3. checks the finishing job ran after every task and failed, naming the missing run;
#  4. re-submits: the new manifest holds only the cancelled run, and the finishing job succeeds;
#  5. checks the summary holds every run exactly once, no finished run was trained twice, and the
#     summary equals a local run's (--jobs 2) of the same spec.
# Tears down only the processes it started. Usage: scripts/test-slurm.sh [path/to/opencarbon]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(realpath "${1:-${CARGO_TARGET_DIR:-target}/debug/opencarbon}")"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/opencarbon-slurm.XXXXXX")"
CLUSTER="$WORK/cluster"
mkdir -p "$CLUSTER"
chmod 755 "$WORK"   # munged needs its socket's directories world-executable
started=$(date +%s)
cleanup() {
    scripts/slurm-cluster.sh stop "$CLUSTER" || true
    rm -rf "$WORK"
}
trap cleanup EXIT
conf="$(scripts/slurm-cluster.sh start "$CLUSTER")" || { echo "test-slurm: the cluster did not start" >&2; exit 1; }
eval "$conf"
export SLURM_CONF
SPEC=experiments/ci.yaml
SET=(--set train.epochs=4 --set "expect=[]" --only fold=0)
OUT="$WORK/ci"
fail() { echo "test-slurm: FAILED: $*" >&2; exit 1; }

echo "== submit" >&2
"$BIN" run "$SPEC" --out "$OUT" --launcher slurm --quiet "${SET[@]}" | tee "$WORK/submit1.txt"
ARRAY=$(python3 -c "import json;print(json.load(open('$OUT/slurm/jobs.json'))[0]['array_job'])")
FINISH=$(python3 -c "import json;print(json.load(open('$OUT/slurm/jobs.json'))[0]['finish_job'])")
mapfile -t IDS < <(grep -v '^#' "$OUT/slurm/manifest-1.txt")
TOTAL=${#IDS[@]}
[[ $TOTAL -gt 2 ]] || fail "manifest has $TOTAL runs"

echo "== cancel one running network task" >&2
CANCELLED=""
for _ in $(seq 600); do
    while read -r line; do
        task=$(sed -n 's/.*ArrayTaskId=\([0-9]*\).*/\1/p' <<<"$line")
        [[ -n "$task" ]] || continue
        grep -q "JobState=RUNNING" <<<"$line" || continue
        id="${IDS[$task]}"
        # A network run writes normalization.json before its first epoch; baselines never do.
        if [[ -f "$OUT/runs/$id/normalization.json" && ! -f "$OUT/runs/$id/test_metrics.json" ]]; then
            scancel "${ARRAY}_${task}"
            CANCELLED="$id"
            break
        fi
    done < <(timeout 10 scontrol -o show job "$ARRAY" 2>/dev/null || true)
    [[ -n "$CANCELLED" ]] && break
    sleep 0.2
done
[[ -n "$CANCELLED" ]] || fail "no network task was seen running"
echo "cancelled task of run $CANCELLED" >&2

echo "== wait for the finishing job" >&2
for _ in $(seq 900); do
    state=$(timeout 10 scontrol -o show job "$FINISH" | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
    [[ "$state" =~ ^(PENDING|RUNNING|CONFIGURING|COMPLETING)$ ]] || break
    sleep 1
done
[[ "$state" == FAILED ]] || fail "the finishing job ended $state, expected FAILED (a run is missing)"
grep -q "$CANCELLED" "$OUT"/slurm/logs/finish-"$FINISH".log || fail "the finishing job's log does not name $CANCELLED"
"$BIN" status "$OUT" | tee "$WORK/status1.txt" | tail -1
grep "^$CANCELLED" "$WORK/status1.txt" | grep -q "CANCELLED" || fail "status does not show the cancelled task"
# Started times of every run, to show later that none was trained again.
for id in "${IDS[@]}"; do
    [[ "$id" == "$CANCELLED" ]] && continue
    grep -o '"started": *"[^"]*"' "$OUT/runs/$id/meta.json" || fail "run $id has no meta.json"
done > "$WORK/started1.txt"

echo "== re-submit" >&2
"$BIN" run "$SPEC" --out "$OUT" --launcher slurm --quiet --wait "${SET[@]}" > "$WORK/submit2.txt" ||
    { cat "$WORK/submit2.txt"; fail "the re-submission did not finish"; }
mapfile -t AGAIN < <(grep -v '^#' "$OUT/slurm/manifest-2.txt")
[[ ${#AGAIN[@]} -eq 1 && "${AGAIN[0]}" == "$CANCELLED" ]] || fail "re-submitted ${AGAIN[*]}, expected only $CANCELLED"
for id in "${IDS[@]}"; do
    [[ "$id" == "$CANCELLED" ]] && continue
    grep -o '"started": *"[^"]*"' "$OUT/runs/$id/meta.json"
done > "$WORK/started2.txt"
cmp -s "$WORK/started1.txt" "$WORK/started2.txt" || fail "a finished run was trained again"

echo "== the finishing jobs ran last" >&2
python3 - "$OUT" <<'PY'
import json, subprocess, sys
out = sys.argv[1]
for s in json.load(open(f"{out}/slurm/jobs.json")):
    def show(job):
        text = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True, check=True).stdout
        return [dict(kv.split("=", 1) for kv in line.split() if "=" in kv) for line in text.splitlines() if line.strip()]
    tasks, finish = show(s["array_job"]), show(s["finish_job"])[0]
    last_end = max(t["EndTime"] for t in tasks)
    assert finish["StartTime"] >= last_end, (finish["StartTime"], last_end)
    print(f"array {s['array_job']}: {len(tasks)} tasks, last ended {last_end}; finishing job {s['finish_job']} started {finish['StartTime']}, {finish['JobState']}")
PY

echo "== every run exactly once, and the same summary as a local run" >&2
"$BIN" status "$OUT" --require-done "$OUT/slurm/manifest-1.txt" | tail -1
python3 - "$OUT/summary.csv" "$TOTAL" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
runs = sum(int(r["runs"]) for r in rows)
assert runs == int(sys.argv[2]), f"summary counts {runs} runs, the spec has {sys.argv[2]}"
print(f"summary.csv: {len(rows)} variants, {runs} runs")
PY
"$BIN" run "$SPEC" --out "$WORK/local" --jobs 2 --quiet --no-report "${SET[@]}" > /dev/null
cmp "$OUT/summary.csv" "$WORK/local/summary.csv" || fail "the Slurm summary differs from the local one"
echo "test-slurm: passed in $(( $(date +%s) - started )) s" >&2
