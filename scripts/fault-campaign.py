#!/usr/bin/env python3
"""Fault campaign: kill and resume a sweep again and again; check that nothing was lost or changed.

The sweep is stopped at random moments and at exact write points and resumed each time; nothing
may be lost, and every resumed run must end as if left alone.

A reference sweep runs once uninterrupted. Then, cycle after cycle, the same sweep is started
into a fresh directory and stopped until a start completes:
  - timer:         SIGKILL at a random moment (uniform over the reference sweep's duration);
  - point:         SIGKILL at an exact moment, through OPENCARBON_FAULT=kill:<point>#n (mid-epoch,
                   while writing or publishing the resumable checkpoint, a best-weights checkpoint,
                   test_metrics.json, meta.json, a transfer file, a summary);
  - concurrent:    two processes on the directory at once, one of them SIGKILLed at a random moment;
  - sigterm:       SIGTERM at a random moment: the run in training finishes its step, writes its
                   resumable checkpoint and the process exits 75 (0 when the signal came after the
                   last run, as the tables were written);
  - sigterm-twice: SIGTERM, then SIGUSR1 a few ms later: 75 if the checkpoint was written first,
                   else 76 (the second signal exits at once).
After each completed cycle: every run exists exactly once and is done (the binary's own resume
check and meta.json), every file parses, no scratch file and no resume.ckpt is left behind, the
summary and transfer tables equal the reference's byte for byte, and every run's test_metrics.json
(less train_seconds, wall time), predictions.csv, metrics.csv, transfer.json and
transfer_predictions.csv equal its uninterrupted twin's byte for byte, resumed runs (meta.json
`resumed_from`) included. A cycle with a problem is kept on disk and stops the campaign.

At the end a second uninterrupted sweep (the control) must equal the reference too (the sweep is
deterministic, so a difference after a resume is the resume's). Time lost per kill: the time the
cycles' starts took beyond one uninterrupted sweep (the mean of the reference and the control) per
cycle, over the kills: in wall time over the cycles with no concurrent start (two processes on 2
cores finish sooner than one, hiding the loss), and in CPU time over all cycles (where a concurrent
start's two processes both count). Without --paired the baseline is the mean of the reference and
the control, ± what their spread allows: rough, as other work on the machine (builds) changes a
sweep's time by more than a kill costs. With --paired each cycle is followed by an uninterrupted
sweep under the same load, its own baseline (and one more determinism check); ± is then the
standard error over the cycles. The campaign runs its own hard link (or copy) of --bin, so a
rebuild meanwhile changes nothing.

  scripts/fault-campaign.py --bin target/debug/opencarbon --kills 60 --seed 5 --paired  # the docs'
  scripts/fault-campaign.py --bin ... --kills 20                            # what scripts/test.sh runs

Exit status 0 when nothing was lost; the report (JSON) goes to stdout and to --report.
"""
import argparse
import csv
import datetime
import json
import os
import platform
import random
import resource
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

# (point, highest n, copies in the deck of points). The sweep's 4 network runs train 12 epochs of 3 batches each and
# write resume.ckpt after each epoch but the last and once more when training ends: 48 checkpoints
# and about 150 batches (fine-tuning included) in an uninterrupted sweep.
POINTS = [
    ("batch", 100, 2),  # mid-epoch: the n-th training batch of the process
    ("write:resume.ckpt", 30, 2),  # halfway through the checkpoint's bytes
    ("rename:resume.ckpt", 30, 2),  # written and fsynced, not yet published
    ("write:best.safetensors", 8, 1),
    ("rename:best.safetensors", 8, 1),
    ("write:test_metrics.json", 3, 1),
    ("rename:test_metrics.json", 3, 1),
    ("write:meta.json", 6, 1),
    ("write:predictions.csv", 3, 1),
    ("write:transfer.json", 3, 1),
    ("rename:transfer_predictions.csv", 3, 1),
    ("write:summary.csv", 1, 1),
    ("rename:summary.parquet", 1, 1),
    ("write:summary.md", 1, 1),
    ("write:transfer.csv", 1, 1),
]
MODES = ["timer", "point", "point", "concurrent", "sigterm", "sigterm-twice"]
PREEMPTED, FORCED = 75, 76
# A finished run's files that must equal its uninterrupted twin's (test_metrics.json less
# train_seconds).
RUN_FILES = ["test_metrics.json", "predictions.csv", "metrics.csv", "transfer.json",
             "transfer_predictions.csv"]


class Deck:
    """Draws from `items` as from a shuffled deck, reshuffled when empty: every kind comes up
    in each round of draws, so a short campaign exercises them all."""

    def __init__(self, rng, items):
        self.rng, self.items, self.left = rng, list(items), []

    def draw(self):
        if not self.left:
            self.left = self.items[:]
            self.rng.shuffle(self.left)
        return self.left.pop()


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
    return process.communicate()


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


def comparable(path):
    """A run file's bytes as compared with its twin's: test_metrics.json without its
    train_seconds line (wall time, the one number allowed to differ)."""
    data = path.read_bytes()
    if path.name == "test_metrics.json":
        data = re.sub(rb'\n *"train_seconds": [^\n]*', b"", data)
    return data


def first_difference(a, b):
    """(line number, this line, the twin's line) of the first line where a and b differ."""
    la, lb = a.decode(errors="replace").split("\n"), b.decode(errors="replace").split("\n")
    for i in range(max(len(la), len(lb))):
        x = la[i] if i < len(la) else "<end of file>"
        y = lb[i] if i < len(lb) else "<end of file>"
        if x != y:
            return i + 1, x, y
    return None


def labels(binary, spec, out):
    """{run id: its dry-run line} (dataset, variant, seed, and `done` when finished)."""
    listing = subprocess.run([binary, "run", spec, "--dry-run", "--out", str(out)],
                             capture_output=True, text=True)
    lines = [l for l in listing.stdout.splitlines() if l.strip() and not l.startswith("tiles:")]
    return {l.split()[0]: l for l in lines}


def compare_sweeps(out, reference, run_ids):
    """Per run id: the list of (file, first difference) where out's run differs from the
    reference's; an empty list when identical."""
    result = {}
    for run in run_ids:
        mine, theirs = out / "runs" / run, reference / "runs" / run
        differing = []
        for name in RUN_FILES:
            a, b = mine / name, theirs / name
            if not b.exists() and not a.exists():
                continue
            if not a.exists() or not b.exists():
                differing.append((name, "present in only one of the two"))
                continue
            x, y = comparable(a), comparable(b)
            if x != y:
                line, got, want = first_difference(x, y)
                differing.append((name, f"line {line}: {got!r}, uninterrupted: {want!r}"))
        result[run] = differing
    for table in ["summary.csv", "transfer.csv"]:
        a, b = out / table, reference / table
        if b.exists() and (not a.exists() or a.read_bytes() != b.read_bytes()):
            found = first_difference(a.read_bytes(), b.read_bytes()) if a.exists() else None
            result.setdefault("", []).append(
                (table, f"line {found[0]}: {found[1]!r}, uninterrupted: {found[2]!r}"
                 if found else "missing"))
    return result


def verify(binary, spec, out, reference):
    """Checks a completed sweep. Returns (problems, files parsed, resumed runs {id: resumed_from},
    resumed runs identical to their twins)."""
    problems, files = [], 0
    listing = labels(binary, spec, out)
    expected = set(listing)
    problems += [f"not done: {l}" for l in listing.values() if not l.rstrip().endswith(" done")]
    present = {p.name for p in (out / "runs").iterdir() if p.is_dir()}
    if present != expected:
        problems.append(f"run directories {sorted(present)} != runs {sorted(expected)}")
    for path in sorted(out.rglob("*")):
        if not path.is_file() or "tb" in path.parts or path.name == ".lock":
            continue
        if path.name.endswith(".tmp"):
            problems.append(f"scratch file left behind: {path.relative_to(out)}")
            continue
        if path.name == "resume.ckpt":
            problems.append(f"resumable checkpoint left in a finished run: {path.relative_to(out)}")
            continue
        files += 1
        try:
            check_file(path)
        except Exception as e:  # noqa: BLE001 - any failure to parse is a finding
            problems.append(f"{path.relative_to(out)} does not parse: {e}")
    resumed, identical = {}, 0
    runs = sorted(expected & present)
    for run in runs:
        try:
            meta = json.loads((out / "runs" / run / "meta.json").read_text())
        except Exception as e:  # noqa: BLE001 - reported above as not parsing
            problems.append(f"run {run}: meta.json unreadable: {e}")
            continue
        if meta.get("status") != "done":
            problems.append(f"run {run}: meta.json status {meta.get('status')!r}, not done")
        if meta.get("resumed_from"):
            resumed[run] = meta["resumed_from"]
    for run, differing in compare_sweeps(out, reference, runs).items():
        if not run:
            problems += [f"{table} differs from the uninterrupted sweep's, {why}"
                         for table, why in differing]
            continue
        if run in resumed and not differing:
            identical += 1
        for name, why in differing:
            how = (f"resumed from {resumed[run]}" if run in resumed
                   else "not resumed (trained from the start)")
            problems.append(f"run {run} ({' '.join(listing[run].split()[1:5])}; {how}): {name} "
                            f"differs from its uninterrupted twin's, {why}")
    return problems, files, resumed, identical


def cpu_children():
    """CPU seconds (user + system) of the child processes reaped so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed_sweep(binary, spec, out):
    """Runs the sweep uninterrupted: (wall seconds, CPU seconds, training's share of the wall)."""
    started, cpu = time.time(), cpu_children()
    p = sweep(binary, spec, out)
    _, err = p.communicate()
    if p.returncode != 0:
        sys.exit(f"the uninterrupted sweep into {out} failed:\n{err}")
    wall = time.time() - started
    training = sum(json.loads(m.read_text())["train_seconds"]
                   for m in (out / "runs").glob("*/test_metrics.json"))
    return wall, cpu_children() - cpu, training / wall


def resumed_kind(resumed_from):
    if "after training" in resumed_from:
        return "after training"
    m = re.match(r"epoch \d+, batch (\d+)", resumed_from)
    if m:
        return "mid-epoch" if int(m.group(1)) > 0 else "epoch boundary"
    return "other"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin", required=True, help="the opencarbon binary")
    parser.add_argument("--spec", default="experiments/fault/soak.yaml")
    parser.add_argument("--kills", type=int, default=50, help="kills to make in all")
    parser.add_argument("--work", default=None, help="working directory (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--report", default=None, help="write the report (JSON) here")
    parser.add_argument("--paired", action="store_true",
                        help="after each cycle, time an uninterrupted sweep as that cycle's baseline "
                             "for the time lost (slower; steadier under other load)")
    parser.add_argument("--keep-going", action="store_true",
                        help="go on after a cycle with problems (default: stop, keeping it)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    modes = Deck(rng, MODES)
    points = Deck(rng, [(point, most) for point, most, weight in POINTS for _ in range(weight)])
    work = Path(args.work or f"{os.environ.get('TMPDIR', '/tmp')}/opencarbon-fault-campaign")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    # The campaign's own copy of the binary (a hard link when it can): a rebuild of --bin during the
    # campaign (another backend's build into the same target directory, say) would otherwise make
    # later starts train differently from the reference.
    binary = work / "opencarbon"
    try:
        os.link(args.bin, binary)
    except OSError:
        shutil.copy2(args.bin, binary)
    args.bin = str(binary)

    started = time.time()
    reference = work / "reference"
    duration, cpu, training_share = timed_sweep(args.bin, args.spec, reference)
    first_meta = json.loads(next((reference / "runs").glob("*/meta.json")).read_text())
    print(f"reference sweep: {duration:.1f} s ({cpu:.1f} s CPU, {training_share:.0%} of it "
          f"training)", flush=True)

    kills = {m: 0 for m in dict.fromkeys(MODES)}
    by_point, exits, signalled_before_handlers = {}, {}, 0
    cycles, starts, files_checked, problems = 0, 0, 0, []
    costs = []  # per completed cycle: wall and CPU seconds of its starts, its kills, concurrent?
    resumes, identical, resumes_by_kind = 0, 0, {}
    kept = None
    while sum(kills.values()) < args.kills:
        cycles += 1
        out = work / f"cycle-{cycles}"
        log, cycle_seconds, cycle_cpu = [], 0.0, 0.0  # this cycle's starts, in order; their cost
        kills_before, problems_before, concurrent = sum(kills.values()), len(problems), False

        def spent():
            nonlocal cycle_seconds, cycle_cpu
            cycle_seconds += time.time() - t0
            cycle_cpu += cpu_children() - c0

        def note(mode, what, code, err, reached=True):
            key = str(code) if reached else "completed first"
            if code == PREEMPTED:  # where the signal landed
                key += " in training" if " at epoch " in err else " between runs"
            exits.setdefault(mode, {})
            exits[mode][key] = exits[mode].get(key, 0) + 1
            log.append(f"start {attempt}: {mode} {what}{'' if reached else ', not reached'} -> "
                       f"exit {code}" + (f" ({err.strip().splitlines()[-1]})" if err.strip() else ""))

        for attempt in range(1, 401):
            starts += 1
            mode = modes.draw()
            t0, c0 = time.time(), cpu_children()
            if mode == "point":
                point, most = points.draw()
                n = rng.randint(1, most)
                p = sweep(args.bin, args.spec, out, {"OPENCARBON_FAULT": f"kill:{point}#{n}"})
                _, err = p.communicate()
                spent()
                # Exit 0: the sweep completed before its n-th hit of the point.
                note(mode, f"kill:{point}#{n}", p.returncode, err, reached=p.returncode != 0)
                if p.returncode == -signal.SIGKILL:
                    kills["point"] += 1
                    by_point[point] = by_point.get(point, 0) + 1
                    continue
            elif mode == "timer":
                p = sweep(args.bin, args.spec, out)
                at = rng.uniform(0.05, duration)
                try:
                    _, err = p.communicate(timeout=at)
                except subprocess.TimeoutExpired:
                    _, err = kill(p)
                    spent()
                    note(mode, f"SIGKILL at {at:.2f} s", p.returncode, err)
                    kills["timer"] += 1
                    continue
                spent()
                note(mode, f"SIGKILL at {at:.2f} s", p.returncode, err, reached=False)
            elif mode in ("sigterm", "sigterm-twice"):
                p = sweep(args.bin, args.spec, out)
                at = rng.uniform(0.05, duration)
                gap = rng.uniform(0.002, 0.02)
                what = f"SIGTERM at {at:.2f} s" + (
                    f", SIGUSR1 {gap * 1000:.0f} ms later" if mode == "sigterm-twice" else "")
                reached = True
                try:
                    _, err = p.communicate(timeout=at)
                    reached = False
                except subprocess.TimeoutExpired:
                    p.send_signal(signal.SIGTERM)
                    if mode == "sigterm-twice":
                        time.sleep(gap)
                        p.send_signal(signal.SIGUSR1)  # a no-op once the process has exited
                    _, err = p.communicate()
                spent()
                note(mode, what, p.returncode, err, reached)
                allowed = {0, PREEMPTED} | ({FORCED} if mode == "sigterm-twice" else set())
                early = {-signal.SIGTERM, -signal.SIGUSR1}  # before the handlers were installed
                if p.returncode in early:
                    signalled_before_handlers += 1
                if p.returncode not in allowed | early:
                    problems.append(f"cycle {cycles}: {mode} ({what}) ended with exit "
                                    f"{p.returncode}, expected one of {sorted(allowed)}: "
                                    f"{err[-2000:]}")
                    break
                stopped = [line for line in err.splitlines() if line.startswith("stopped: ")]
                if p.returncode == PREEMPTED and stopped and " at epoch " in stopped[-1]:
                    # Stopped mid-training: that run must say so and hold its checkpoint. Only the
                    # stop line counts: a start that resumed a run ("resuming from its checkpoint
                    # at epoch 4") and was then stopped between runs holds no checkpoint.
                    held = [d.name for d in (out / "runs").iterdir()
                            if (d / "checkpoints" / "resume.ckpt").exists()
                            and (d / "meta.json").exists()
                            and '"preempted"' in (d / "meta.json").read_text()]
                    if not held:
                        problems.append(f"cycle {cycles}: exit 75 ({err.strip()}) but no run is "
                                        f"preempted with a resume.ckpt")
                if p.returncode != 0:
                    kills[mode] += 1
                    continue
            else:
                concurrent = True
                a, b = sweep(args.bin, args.spec, out), sweep(args.bin, args.spec, out)
                at = rng.uniform(0.05, duration / 2)  # the two share the work
                try:
                    a.communicate(timeout=at)
                except subprocess.TimeoutExpired:
                    kill(a)
                    kills["concurrent"] += 1
                _, err = b.communicate()
                spent()
                note(mode, f"SIGKILL of one of two at {at:.2f} s (exit {a.returncode}), the other",
                     b.returncode, err)
                p = b
            if p.returncode != 0:
                problems.append(f"cycle {cycles}: a start failed: {err[-2000:]}")
                break
            if mode == "concurrent" and a.returncode not in (0, -signal.SIGKILL):
                problems.append(f"cycle {cycles}: the concurrent start failed")
            found, files, resumed, same = verify(args.bin, args.spec, out, reference)
            files_checked += files
            resumes += len(resumed)
            identical += same
            for r in resumed.values():
                resumes_by_kind[resumed_kind(r)] = resumes_by_kind.get(resumed_kind(r), 0) + 1
            base = (None, None)
            if args.paired and not found:
                twin = work / f"twin-{cycles}"
                twin_seconds, twin_cpu, _ = timed_sweep(args.bin, args.spec, twin)
                found = [f"an uninterrupted sweep differs from the reference: run {run or '(tables)'}: "
                         f"{name}, {why}"
                         for run, differing in compare_sweeps(
                             twin, reference, labels(args.bin, args.spec, twin)).items()
                         for name, why in differing]
                shutil.rmtree(twin, ignore_errors=True)
                base = (twin_seconds, twin_cpu)
            costs.append((cycle_seconds, cycle_cpu, sum(kills.values()) - kills_before, concurrent)
                         + base)
            problems += [f"cycle {cycles}: {f}" for f in found]
            print(f"cycle {cycles}: complete after {attempt} starts, {sum(kills.values())} kills so "
                  f"far, {len(resumed)} runs resumed, {same} identical, {len(found)} problems",
                  flush=True)
            break
        else:
            problems.append(f"cycle {cycles}: not complete after 400 starts")
        if len(problems) > problems_before:  # what led there: each start, its stop and its exit
            problems.append(f"cycle {cycles}: its starts: " + "; ".join(log))
        if problems and not args.keep_going:
            kept = str(out)
            print(f"stopping: cycle {cycles} found problems; its directory is kept: {out}",
                  flush=True)
            break
        shutil.rmtree(out, ignore_errors=True)

    control_duration = control_cpu = None
    if not problems:
        control = work / "control"
        control_duration, control_cpu, _ = timed_sweep(args.bin, args.spec, control)
        for run, differing in compare_sweeps(control, reference, labels(args.bin, args.spec, control)).items():
            problems += [f"two uninterrupted sweeps differ: run {run or '(tables)'}: {name}, {why}"
                         for name, why in differing]
        shutil.rmtree(control, ignore_errors=True)
    made = sum(kills.values())

    def per_kill(cycles_costs, index, base):
        """(seconds lost per kill, its uncertainty): the starts' time beyond one uninterrupted
        sweep per cycle, over the cycles' kills. The baseline is each cycle's own twin with
        --paired (uncertainty: the standard error from the cycles' scatter), else the mean of
        the reference and the control (uncertainty: what their spread allows)."""
        if args.paired:
            cycles_costs = [c for c in cycles_costs if c[4] is not None]
        k = sum(c[2] for c in cycles_costs)
        if not k:
            return None, None
        if args.paired:
            d = [c[index] - c[index + 4] for c in cycles_costs]
            mean = sum(d) / len(d)
            var = sum((x - mean) ** 2 for x in d) / max(len(d) - 1, 1)
            return sum(d) / k, (len(d) * var) ** 0.5 / k
        spent_all = sum(c[index] for c in cycles_costs)
        spread = abs(base[0] - base[1]) / 2 if base[1] is not None else 0.0
        return ((spent_all - len(cycles_costs) * (base[0] + (base[1] or base[0])) / 2) / k,
                len(cycles_costs) * spread / k)

    # Wall time: only the cycles with no concurrent start (two processes on 2 cores finish a sweep
    # sooner than one, which would hide what the kills cost). CPU time: every cycle (a concurrent
    # start's two processes both count).
    lost, lost_pm = per_kill([c for c in costs if not c[3]], 0, (duration, control_duration))
    lost_cpu, lost_cpu_pm = per_kill(costs, 1, (cpu, control_cpu))
    lost_all, _ = per_kill(costs, 0, (duration, control_duration))
    r2 = lambda x: round(x, 2) if x is not None else None  # noqa: E731

    report = {
        "kills": made, "by_mode": kills, "by_point": by_point, "exits_by_mode": exits,
        "signalled_before_handlers": signalled_before_handlers,
        "cycles": cycles, "starts": starts, "files_checked": files_checked,
        "resumes": resumes, "resumes_by_kind": resumes_by_kind, "resumed_identical": identical,
        "seconds_lost_per_kill": r2(lost), "seconds_lost_per_kill_uncertainty": r2(lost_pm),
        "seconds_lost_per_kill_cycles": sum(1 for c in costs if not c[3]),
        "cpu_seconds_lost_per_kill": r2(lost_cpu),
        "cpu_seconds_lost_per_kill_uncertainty": r2(lost_cpu_pm),
        "seconds_lost_per_kill_all_cycles": r2(lost_all),
        "starts_seconds": round(sum(c[0] for c in costs), 1),
        "starts_cpu_seconds": round(sum(c[1] for c in costs), 1),
        "reference_sweep_seconds": round(duration, 2), "reference_sweep_cpu_seconds": round(cpu, 2),
        "reference_training_share": round(training_share, 2),
        "control_sweep_seconds": round(control_duration, 2) if control_duration else None,
        "control_sweep_cpu_seconds": round(control_cpu, 2) if control_cpu else None,
        "seconds": round(time.time() - started, 1),
        "date": datetime.date.today().isoformat(), "cpus": os.cpu_count(),
        "machine": platform.node(), "backend": first_meta.get("backend"),
        "build": f"{first_meta.get('build_commit', '?')[:12]}"
                 + ("+dirty" if first_meta.get("build_dirty") else ""),
        "seed": args.seed, "paired": args.paired, "kept": kept, "problems": problems,
    }
    print(json.dumps(report, indent=2))
    print(f"fault campaign: {made} kills ({', '.join(f'{m} {k}' for m, k in kills.items())}) in "
          f"{starts} starts, {cycles} cycles; {resumes} runs resumed, {identical} identical to "
          f"their uninterrupted twins; "
          + (f"{lost:.2f} ± {lost_pm:.2f} s lost per kill" if lost is not None else "")
          + (f" ({lost_cpu:.2f} ± {lost_cpu_pm:.2f} s CPU)" if lost_cpu is not None else "")
          + ("" if args.paired or lost is None else " against the reference and control sweeps "
             "(rough: --paired measures it)") + "; "
          + f"{len(problems)} problems; {report['seconds']} s", flush=True)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    if not kept:
        binary.unlink()  # kept with a failing cycle, to reproduce it
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
