#!/usr/bin/env bash
# The Slurm launcher against a real Slurm (scripts/slurm-cluster.sh: munged, slurmctld and two
# slurmd, node1 and node2, on loopback in a temporary directory, installed from Debian's packages
# when missing):
#  1. submits experiments/ci.yaml as a job array (its first fold, 4 epochs, a resumable checkpoint
#     every epoch, no expectations: short);
#  2. cancels one network run's task while it trains;
#  3. requeues another network run's task (`scontrol requeue`) after its first epoch, away from the
#     node it ran on: Slurm's SIGTERM stops the run at a checkpoint ("preempted"), and the task
#     runs again on the other node and resumes from that checkpoint, not from epoch 1;
#  4. checks the finishing job ran after every task and failed, naming the missing run;
#  5. re-submits: the new manifest holds only the cancelled run, and the finishing job succeeds;
#  6. checks the summary holds every run exactly once, no finished run was trained twice, and the
#     summary (and the requeued run's predictions) equal a local run's (--jobs 2) of the same spec;
#  7. runs a nested search (a ridge penalty searched on inner folds, docs/tuning.md): one job array
#     per round, then the refits; its trials and tables equal a local run's.
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
SET=(--set train.epochs=4 --set 'train.checkpoint_every={epochs: 1}' --set "expect=[]" --only fold=0)
OUT="$WORK/ci"
fail() { echo "test-slurm: FAILED: $*" >&2; exit 1; }
# One field of `scontrol -o show job` for an array task (the last occurrence: NodeList comes twice).
field() { timeout 10 scontrol -o show job "$1" | grep -o " $2=[^ ]*" | tail -1 | cut -d= -f2-; }

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

echo "== requeue another network task mid-training, away from its node" >&2
REQUEUED=""
for _ in $(seq 1500); do
    while read -r line; do
        task=$(sed -n 's/.*ArrayTaskId=\([0-9]*\).*/\1/p' <<<"$line")
        [[ -n "$task" ]] || continue
        grep -q "JobState=RUNNING" <<<"$line" || continue
        id="${IDS[$task]}"
        [[ "$id" == "$CANCELLED" ]] && continue
        # At least one epoch trained (its checkpoint written), and not finished.
        if [[ $(grep -c ',train,l1,' "$OUT/runs/$id/metrics.csv" 2>/dev/null) -ge 1 &&
              ! -f "$OUT/runs/$id/test_metrics.json" ]]; then
            NODE1=$(sed -n 's/.* BatchHost=\([^ ]*\).*/\1/p' <<<"$line")
            timeout 10 scontrol requeue "${ARRAY}_${task}"
            REQUEUED="$id"
            RTASK="$task"
            break
        fi
    done < <(timeout 10 scontrol -o show job "$ARRAY" 2>/dev/null || true)
    [[ -n "$REQUEUED" ]] && break
    sleep 0.2
done
[[ -n "$REQUEUED" ]] || fail "no network task was seen running after an epoch"
requeued_at=$(date +%s)
echo "requeued task ${ARRAY}_$RTASK (run $REQUEUED) on $NODE1" >&2
# Slurm signals it (SIGTERM) and puts it back to PENDING; the next attempt may not use NODE1.
for _ in $(seq 300); do
    state=$(field "${ARRAY}_$RTASK" JobState)
    [[ "$state" == PENDING ]] && break
    sleep 0.1
done
[[ "$state" == PENDING ]] || fail "the requeued task is $state, not PENDING"
timeout 10 scontrol update jobid="${ARRAY}_$RTASK" ExcNodeList="$NODE1"
echo "pending again after $(( $(date +%s) - requeued_at )) s: restarts $(field "${ARRAY}_$RTASK" Restarts), reason $(field "${ARRAY}_$RTASK" Reason)" >&2
# Its first attempt stopped through the handler: checkpoint written, "preempted", lock released.
python3 - "$OUT/runs/$REQUEUED" <<'PY' || fail "the requeued run did not stop at a checkpoint"
import json, os, sys
run = sys.argv[1]
meta = json.load(open(f"{run}/meta.json"))
assert meta["status"] == "preempted", meta["status"]
assert "SIGTERM" in meta["failure"], meta["failure"]
assert os.path.isfile(f"{run}/checkpoints/resume.ckpt")
print(f"first attempt: {meta['status']}: {meta['failure']}")
PY
# A requeued attempt's log replaces the previous one's: keep the first.
cp "$OUT/slurm/logs/task-${ARRAY}_$RTASK.log" "$WORK/requeued-attempt1.log"
"$BIN" status "$OUT" > "$WORK/status0.txt"
grep "^$REQUEUED" "$WORK/status0.txt" | grep -E "^[^ ]+ +(requeued|running) " >&2 ||
    fail "status does not show the requeued task as requeued: $(grep "^$REQUEUED" "$WORK/status0.txt")"

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

echo "== the requeued task resumed on the other node" >&2
[[ "$(field "${ARRAY}_$RTASK" JobState)" == COMPLETED ]] || fail "the requeued task ended $(field "${ARRAY}_$RTASK" JobState)"
[[ "$(field "${ARRAY}_$RTASK" Restarts)" == 1 ]] || fail "the requeued task ran $(field "${ARRAY}_$RTASK" Restarts) more times, expected 1"
NODE2=$(field "${ARRAY}_$RTASK" BatchHost)
[[ "$NODE2" != "$NODE1" ]] || fail "the requeued task ran again on $NODE1"
grep -q "preempted by SIGTERM" "$WORK/requeued-attempt1.log" ||
    fail "the requeued task's first attempt did not stop through the handler: $(tail -3 "$WORK/requeued-attempt1.log")"
grep -q "resuming from its checkpoint at epoch" "$OUT/slurm/logs/task-${ARRAY}_$RTASK.log" ||
    fail "the requeued task did not resume: $(tail -3 "$OUT/slurm/logs/task-${ARRAY}_$RTASK.log")"
python3 - "$OUT/runs/$REQUEUED" 4 <<'PY' || fail "the requeued run was not resumed from its checkpoint"
import csv, json, re, sys
run, epochs = sys.argv[1], int(sys.argv[2])
meta = json.load(open(f"{run}/meta.json"))
assert meta["status"] == "done", meta["status"]
at = meta.get("resumed_from") or ""
m = re.fullmatch(r"epoch (\d+), batch (\d+)", at)
assert m and (int(m[1]), int(m[2])) != (0, 0), f"resumed_from: {at!r}"
# Trained once: one training loss per epoch, none twice (a restart would log epoch 1 again).
train = [r["epoch"] for r in csv.DictReader(open(f"{run}/metrics.csv")) if r["split"] == "train" and r["metric"] == "l1"]
assert sorted(train, key=int) == [str(e) for e in range(1, epochs + 1)], train
print(f"requeued run: resumed from {at}, {len(train)} training epochs logged once each")
PY
grep "^$REQUEUED" "$WORK/status1.txt" | grep -q "resumed from epoch" || fail "status does not say the requeued run resumed"
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
# scancel's SIGTERM too stops a run at a checkpoint when it comes after its first step.
echo "the cancelled run $(python3 -c "import json,sys;m=json.load(open(sys.argv[1]));print('resumed from', m['resumed_from']) if m.get('resumed_from') else print('trained from the start')" "$OUT/runs/$CANCELLED/meta.json")" >&2
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
cmp "$OUT/runs/$REQUEUED/predictions.csv" "$WORK/local/runs/$REQUEUED/predictions.csv" ||
    fail "the requeued run's predictions differ from the same run's uninterrupted"
echo "== a nested search, one job array per round" >&2
cat > "$WORK/search.yaml" <<'YAML'
name: slurm-search
seeds: [1]
dataset: {kind: synthetic, preset: monocentric, width: 8, height: 8, tile_side: 16, poi_categories: 3, seed: 4}
split: {kind: spatial_cv, folds: 2, block: 2}
compare: {reference: ridge_tuned}
variants:
  ridge: {baseline: {kind: ridge, columns: ['poi:*'], lambda: 1000.0}}
  ridge_tuned:
    baseline: {kind: ridge, columns: ['poi:*'], lambda: 1000.0}
    search: {space: {baseline.lambda: 'log(interval(0.001, 1000))'}, sampler: {kind: random, seed: 1}, trials: 3, inner_folds: 2}
YAML
"$BIN" run "$WORK/search.yaml" --out "$WORK/search" --launcher slurm --wait --quiet > "$WORK/search.txt" ||
    { cat "$WORK/search.txt"; fail "the search on Slurm did not finish"; }
rounds=$(python3 -c "import json;print(len(json.load(open('$WORK/search/search/slurm/jobs.json'))))")
[[ $rounds -eq 3 ]] || fail "the search submitted $rounds arrays, expected 3 (one per trial round)"
"$BIN" run "$WORK/search.yaml" --out "$WORK/search-local" --jobs 2 --quiet --no-report > /dev/null
cmp "$WORK/search/search/trials.csv" "$WORK/search-local/search/trials.csv" || fail "the trials on Slurm differ from the local ones"
cmp "$WORK/search/tuning.csv" "$WORK/search-local/tuning.csv" || fail "the tuning table on Slurm differs from the local one"
echo "search: $rounds rounds as job arrays, trials and tuning table equal to a local run's" >&2

echo "test-slurm: passed in $(( $(date +%s) - started )) s" >&2
