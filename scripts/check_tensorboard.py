"""Read a run's TensorBoard event file with TensorBoard's own reader and check that its scalars
are exactly the rows of metrics.csv (as float32, since event files store float32).

usage: check_tensorboard.py <run-dir>
"""
import csv
import struct
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def main(run_dir: Path) -> int:
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    from_tb = {}
    for tag in acc.Tags()["scalars"]:
        for event in acc.Scalars(tag):
            from_tb[(tag, event.step)] = event.value
    from_csv = {}
    with open(run_dir / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            from_csv[(f"{row['split']}/{row['metric']}", int(row["epoch"]))] = f32(float(row["value"]))
    if not from_csv:
        print("metrics.csv is empty")
        return 1
    missing = sorted(set(from_csv) - set(from_tb))
    extra = sorted(set(from_tb) - set(from_csv))
    wrong = [(k, from_csv[k], from_tb[k]) for k in from_csv if k in from_tb
             and not (from_csv[k] == from_tb[k] or (from_csv[k] != from_csv[k] and from_tb[k] != from_tb[k]))]
    if missing or extra or wrong:
        print(f"missing in TensorBoard: {missing[:10]}\nonly in TensorBoard: {extra[:10]}\ndiffering: {wrong[:10]}")
        return 1
    print(f"TensorBoard and metrics.csv agree on {len(from_csv)} scalars")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
