#!/usr/bin/env python3
"""Fault campaign: kill -9 a sweep at random moments and at exact write points, resume it each
time, and check that nothing was lost.

A reference sweep runs once uninterrupted. Then, cycle after cycle, the same sweep is started
into a fresh directory and killed (SIGKILL) until a start completes:
  - timer:      at a random moment (uniform over the reference sweep's duration);
  - point:      at an exact moment, through OPENCARBON_FAULT=kill:<point>#n (mid-epoch, while
                writing a checkpoint, test_metrics.json, meta.json, a transfer file, a summary);
  - concurrent: two processes on the directory at once, one of them killed at a random moment.
After each completed cycle: every run exists exactly once and is done (the binary's own resume
check), every file parses, no scratch file is left behind, and every run's test
metrics and the summary and transfer tables equal the reference's byte for byte.

  scripts/fault-campaign.py --bin target/debug/opencarbon --kills 50      # docs/reliability.md's figures
  scripts/fault-campaign.py --bin ... --kills 20                          # what scripts/test.sh runs

Exit status 0 when nothing was lost; the report (JSON) goes to --report.
"""
import argparse
import csv
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

POINTS = [
    ("batch", 12),  # mid-epoch: the n-th training batch of the process
    ("write:best.safetensors", 4),
    ("rename:best.safetensors", 4),
    ("write:test_metrics.json", 3),
    ("rename:test_metrics.json", 3),
    ("write:meta.json", 6),
    ("write:predictions.csv", 3),
    ("write:transfer.json", 3),
    ("rename:transfer_predictions.csv", 3),
    ("write:summary.csv", 1),
    ("rename:summary.parquet", 1),
    ("write:summary.md", 1),
    ("write:transfer.csv", 1),
]


def sweep(binary, spec, out, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != "OPENCARBON_FAULT"}
    env.update(env_extra or {})
    return subprocess.Popen(
        [binary, "run", spec, "--quiet", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )


def kill(process):
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.communicate()


def check_safetensors(path):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    assert 8 + n + end == len(data), f"{len(data)} bytes, header says {8 + n + end}"


def check_file(path):
    """Parses one artefact; raises on anything malformed."""
    name = path.name
    if name.endswith(".json"):
        json.loads(path.read_text())
    elif name.endswith(".csv"):
        text = path.read_text()
        assert text.endswith("\n"), "no final newline"
        rows = list(csv.reader(text.splitlines()))
        assert rows and all(len(r) == len(rows[0]) for r in rows), "ragged rows"
    elif name.endswith(".parquet"):
        data = path.read_bytes()
        assert data[:4] == b"PAR1" and data[-4:] == b"PAR1", "not a whole parquet file"
    elif name.endswith(".safetensors"):
        check_safetensors(path)
    elif name.endswith((".yaml", ".md")):
        assert path.read_text().strip(), "empty"


def verify(binary, spec, out, reference):
    """Returns a list of problems (empty: nothing lost) and the number of files checked."""
    problems, files = [], 0
    listing = subprocess.run([binary, "run", spec, "--dry-run", "--out", str(out)],
                             capture_output=True, text=True)
    lines = [l for l in listing.stdout.splitlines() if l.strip()]
    expected = {l.split()[0] for l in lines}
    not_done = [l for l in lines if not l.rstrip().endswith(" done")]
    problems += [f"not done: {l}" for l in not_done]
    present = {p.name for p in (out / "runs").iterdir() if p.is_dir()}
    if present != expected:
        problems.append(f"run directories {sorted(present)} != runs {sorted(expected)}")
    for path in sorted(out.rglob("*")):
        if not path.is_file() or "tb" in path.parts or path.name == ".lock":
            continue
        if path.name.endswith(".tmp"):
            problems.append(f"scratch file left behind: {path.relative_to(out)}")
            continue
        files += 1
        try:
            check_file(path)
        except Exception as e:  # noqa: BLE001 - any failure to parse is a finding
            problems.append(f"{path.relative_to(out)} does not parse: {e}")
    for run in sorted(expected & present):
        mine = json.loads((out / "runs" / run / "test_metrics.json").read_text())
        theirs = json.loads((reference / "runs" / run / "test_metrics.json").read_text())
        mine.pop("train_seconds"), theirs.pop("train_seconds")
        if mine != theirs:
            problems.append(f"run {run}: test metrics differ from the uninterrupted sweep")
    for table in ["summary.csv", "transfer.csv"]:
        a, b = out / table, reference / table
        if b.exists() and (not a.exists() or a.read_bytes() != b.read_bytes()):
            problems.append(f"{table} differs from the uninterrupted sweep's")
    return problems, files


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin", required=True, help="the opencarbon binary")
    parser.add_argument("--spec", default="experiments/fault/soak.yaml")
    parser.add_argument("--kills", type=int, default=50, help="kills to make in all")
    parser.add_argument("--work", default=None, help="working directory (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--report", default=None, help="write the report (JSON) here")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(args.work or f"{os.environ.get('TMPDIR', '/tmp')}/opencarbon-fault-campaign")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    started = time.time()
    reference = work / "reference"
    p = sweep(args.bin, args.spec, reference)
    _, err = p.communicate()
    if p.returncode != 0:
        sys.exit(f"the reference sweep failed:\n{err}")
    duration = time.time() - started
    print(f"reference sweep: {duration:.1f} s", flush=True)

    kills = {"timer": 0, "point": 0, "concurrent": 0}
    by_point = {}
    cycles, starts, files_checked, problems = 0, 0, 0, []
    while sum(kills.values()) < args.kills:
        cycles += 1
        out = work / f"cycle-{cycles}"
        for attempt in range(1, 401):
            starts += 1
            mode = rng.choice(["timer", "point", "point", "concurrent"])
            if mode == "point":
                point, most = rng.choice(POINTS)
                n = rng.randint(1, most)
                p = sweep(args.bin, args.spec, out, {"OPENCARBON_FAULT": f"kill:{point}#{n}"})
                _, err = p.communicate()
                if p.returncode == -signal.SIGKILL:
                    kills["point"] += 1
                    by_point[point] = by_point.get(point, 0) + 1
                    continue
            elif mode == "timer":
                p = sweep(args.bin, args.spec, out)
                try:
                    _, err = p.communicate(timeout=rng.uniform(0.05, duration))
                except subprocess.TimeoutExpired:
                    kill(p)
                    kills["timer"] += 1
                    continue
            else:
                a, b = sweep(args.bin, args.spec, out), sweep(args.bin, args.spec, out)
                try:
                    a.communicate(timeout=rng.uniform(0.05, duration))
                except subprocess.TimeoutExpired:
                    kill(a)
                    kills["concurrent"] += 1
                _, err = b.communicate()
                p = b
            if p.returncode != 0:
                problems.append(f"cycle {cycles}: a start failed: {err[-2000:]}")
                break
            if mode == "concurrent" and a.returncode not in (0, -signal.SIGKILL):
                problems.append(f"cycle {cycles}: the concurrent start failed")
            found, files = verify(args.bin, args.spec, out, reference)
            files_checked += files
            problems += [f"cycle {cycles}: {f}" for f in found]
            print(f"cycle {cycles}: complete after {attempt} starts, {sum(kills.values())} kills so far, "
                  f"{len(found)} problems", flush=True)
            shutil.rmtree(out, ignore_errors=True)
            break
        else:
            problems.append(f"cycle {cycles}: not complete after 400 starts")
            break

    report = {
        "kills": sum(kills.values()), "by_mode": kills, "by_point": by_point, "cycles": cycles,
        "starts": starts, "files_checked": files_checked, "problems": problems,
        "reference_sweep_seconds": round(duration, 1), "seconds": round(time.time() - started, 1),
    }
    print(json.dumps(report, indent=2))
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
