"""Train the authors' script and opencarbon on the same city and split, side by side, and write the
table of experiments/paper/fidelity.yaml's README (docs/fidelity.md quotes one run).

For each setting (raw ln-emission targets, as the script trains; and centred on the training mean,
so that both converge in a short run) and each seed:
  script      main_contrastive.py via run_script.py (its own initialisation and shuffling)
  replay      opencarbon at the script's settings, starting from the script's initial weights and
              replaying its batch order (model.initial_weights, train.batch_order): the first
              epochs' losses must agree to float32 tolerance
  opencarbon  opencarbon at the script's settings, its own seeded initialisation and shuffling
  default     opencarbon's defaults (distinct-tile batching, masked neighbours, its schedule)

usage: python compare.py --script main_contrastive.py --opencarbon BIN --city CITY_DIR --split SPLIT_CSV
                         --spec experiments/paper/fidelity.yaml --work DIR [--seeds 1,2,3] [--epochs 40]
(run it with a Python that has torch, torchvision, opencv-python-headless, scikit-learn, setproctitle,
 tensorboard and tqdm, which main_contrastive.py imports: scripts/fidelity.sh sets one up)
"""
import argparse
import csv
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(cmd, log):
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        done = subprocess.run([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"compare: {' '.join(map(str, cmd))} failed ({done.returncode}); see {log}")


def script_metrics(work):
    log = json.loads((work / "log.json").read_text())
    losses = [d["value"] for d in log if d["tag"] == "train_main_loss"]
    test = {d["tag"][5:].lower(): d["value"] for d in log if d["tag"].startswith("test_")}
    return losses, test


def ours_metrics(out):
    runs = list((out / "runs").iterdir())
    if len(runs) != 1:
        sys.exit(f"compare: expected one run under {out}, found {len(runs)}")
    losses = {}
    with open(runs[0] / "metrics.csv", newline="") as f:
        for r in csv.DictReader(f):
            if r["split"] == "train" and r["metric"] == "l1":
                losses[int(r["epoch"])] = float(r["value"])
    test = json.loads((runs[0] / "test_metrics.json").read_text())
    return [losses[e] for e in sorted(losses)], test


def write_split(city, path, seed=7):
    """A seeded random 60/20/20 split of the city's samples (tiles with emission > 0), as x,y,split."""
    import random
    with open(city / "tiles.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    target = next(l.split(":", 1)[1].strip() for l in (city / "city.yaml").read_text().splitlines()
                  if l.startswith("target:"))
    samples = [(int(r["x"]), int(r["y"])) for r in rows if float(r[target]) > 0]
    random.Random(seed).shuffle(samples)
    n_test = n_valid = round(0.2 * len(samples))
    parts = [("test", samples[:n_test]), ("valid", samples[n_test:n_test + n_valid]),
             ("train", samples[n_test + n_valid:])]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write("x,y,split\n")
        for name, tiles in parts:
            f.writelines(f"{x},{y},{name}\n" for x, y in tiles)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--script", type=Path, required=True)
    ap.add_argument("--opencarbon", type=Path, required=True)
    ap.add_argument("--city", type=Path, required=True)
    ap.add_argument("--split", type=Path, required=True)
    ap.add_argument("--spec", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--side", type=int, default=32)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--settings", default="raw,centred")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    work = a.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if not a.split.exists():
        write_split(a.city, a.split)
    results = []
    for setting in a.settings.split(","):
        data = work / setting / "data"
        if not (data / "city").exists():
            cmd = [sys.executable, HERE / "export_script_layout.py", a.city, a.split, data]
            run(cmd + (["--centre"] if setting == "centred" else []), work / f"export-{setting}.log")
        for seed in seeds:
            base = work / setting / f"seed{seed}"
            script = base / "script"
            if not (script / "log.json").exists():
                run([sys.executable, HERE / "run_script.py", a.script, data, script, "--side", a.side,
                     "--seed", seed, "--epochs", a.epochs], base / "script.log")
            run([sys.executable, HERE / "script_state.py", script / "initial.pt", script / "initial_opencarbon.pt"],
                base / "state.log")
            losses, test = script_metrics(script)
            results.append({"setting": setting, "seed": seed, "program": "script", "losses": losses, **test})
            common = ["--set", f"dataset.path={data / 'city'}", "--set", f"split.path={a.split.resolve()}",
                      "--set", f"seed={seed}", "--set", f"train.epochs={a.epochs}", "--quiet", "--no-report"]
            variants = {
                "replay": ["--set", f"model.initial_weights={script / 'initial_opencarbon.pt'}",
                           "--set", f"train.batch_order={script / 'order.jsonl'}"],
                "opencarbon": [],
                "default": ["--set", "model.encoder_batching=distinct", "--set", "model.missing_neighbour=mask",
                            "--set", "model.window_order=yx", "--set", "train.schedule=opencarbon"],
            }
            for name, extra in variants.items():
                out = base / name
                if not (out / "summary.csv").exists():
                    run([a.opencarbon, "run", a.spec, "--out", out, *common, *extra], base / f"{name}.log")
                losses, test = ours_metrics(out)
                results.append({"setting": setting, "seed": seed, "program": name, "losses": losses, **test})
    steps = step_check(a, work)
    (work / "results.json").write_text(json.dumps({"runs": results, "step_check": steps}, indent=1))
    print(table(results, seeds))
    print()
    print(step_table(steps))


def step_check(a, work):
    """One batch per epoch (the whole training split), 3 epochs, centred targets, seed 1: epoch 1's
    loss is a forward pass at the initial weights, epoch 2's the loss after one Adam step, epoch 3's
    after two. The script run again on one thread shows how far float32 alone moves it."""
    data = work / "centred" / "data"
    if not data.exists():
        data = work / a.settings.split(",")[0] / "data"
    with open(a.split, newline="") as f:
        n_train = sum(1 for r in csv.DictReader(f) if r["split"] == "train")
    base = work / "step-check"
    losses = {}
    for name, threads in [("script", 0), ("script, 1 thread", 1)]:
        out = base / name.replace(", ", "-").replace(" ", "-")
        if not (out / "log.json").exists():
            run([sys.executable, HERE / "run_script.py", a.script, data, out, "--side", a.side, "--seed", 1,
                 "--epochs", 3, "--batch", n_train, "--threads", threads], base / f"{out.name}.log")
        losses[name] = script_metrics(out)[0]
    script = base / "script"
    run([sys.executable, HERE / "script_state.py", script / "initial.pt", script / "initial_opencarbon.pt"],
        base / "state.log")
    out = base / "replay"
    if not (out / "summary.csv").exists():
        run([a.opencarbon, "run", a.spec, "--out", out, "--set", f"dataset.path={data / 'city'}",
             "--set", f"split.path={a.split.resolve()}", "--set", "train.epochs=3",
             "--set", f"train.batch_size={n_train}",
             "--set", f"model.initial_weights={script / 'initial_opencarbon.pt'}",
             "--set", f"train.batch_order={script / 'order.jsonl'}", "--quiet", "--no-report"], base / "replay.log")
    losses["replay"] = ours_metrics(out)[0]
    return losses


def step_table(losses):
    ref = losses["script"]
    lines = ["One batch per epoch (the whole training split), centred, seed 1: |x − script| / script of the",
             "epoch's L1 per tile.", "",
             "| | forward at the initial weights | after 1 Adam step | after 2 |", "|---|---|---|---|"]
    for name in ["replay", "script, 1 thread"]:
        lines.append(f"| {name} | " + " | ".join(f"{abs(v - r) / abs(r):.1e}" for v, r in zip(losses[name], ref)) + " |")
    return "\n".join(lines)


def table(results, seeds):
    lines = ["| setting | program | " + " | ".join(f"test R² seed {s}" for s in seeds)
             + " | mean ± std | epoch 1–3 train L1 per tile |",
             "|---|---|" + "---|" * len(seeds) + "---|---|"]
    for setting in dict.fromkeys(r["setting"] for r in results):
        for program in ["script", "replay", "opencarbon", "default"]:
            rows = [r for r in results if r["setting"] == setting and r["program"] == program]
            if not rows:
                continue
            r2 = [r["r2"] for r in rows]
            spread = f"{statistics.mean(r2):.3f} ± {statistics.stdev(r2):.3f}" if len(r2) > 1 else f"{r2[0]:.3f}"
            first = rows[0]["losses"][:3]
            lines.append(f"| {setting} | {program} | " + " | ".join(f"{v:.3f}" for v in r2)
                         + f" | {spread} | " + ", ".join(f"{v:.6f}" for v in first) + " |")
    # How closely the replay follows the script, epoch by epoch (seed by seed).
    lines.append("")
    lines.append("Replay against the script, relative difference of the epoch's mean train L1 per tile:")
    lines.append("")
    lines.append("| setting | seed | epoch 1 | epoch 2 | epoch 3 | epoch 5 | epoch 10 | last |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for setting in dict.fromkeys(r["setting"] for r in results):
        for s in seeds:
            pick = {r["program"]: r["losses"] for r in results if r["setting"] == setting and r["seed"] == s}
            if "script" not in pick or "replay" not in pick:
                continue
            a, b = pick["script"], pick["replay"]
            rel = lambda i: f"{abs(a[i] - b[i]) / abs(a[i]):.1e}" if i < min(len(a), len(b)) else "–"
            lines.append(f"| {setting} | {s} | {rel(0)} | {rel(1)} | {rel(2)} | {rel(4)} | {rel(9)} | {rel(len(a) - 1)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
