"""Run the authors' `main_contrastive.py` (JinweiZzz/OpenCarbon; bring your own copy, it is not part
of this repository) on a layout written by export_script_layout.py, on CPU, and record what it does:

  <work>/log.json        every scalar the script writes to TensorBoard (train_main_loss per epoch,
                         val_R2, test_R2, test_rmse, test_mae, test_mape, ...), at full precision
  <work>/order.jsonl     each epoch's order of the training tiles as its DataLoader drew it, one JSON
                         line of [x, y] pairs per epoch (opencarbon's `train.batch_order` replays it)
  <work>/initial.pt      the model's state dict as built, before the first step (script_state.py turns
                         it into opencarbon's `model.initial_weights`)
  <work>/best.pt         the checkpoint the script tested (best validation R²)

The script runs unchanged in behaviour; a minimal set of text patches makes it run here, each
asserted to apply (a changed script fails loudly instead of running something else):
  - no ImageNet checkpoint: `torch.load('resnet18-5c106cde.pth')` and its load_state_dict removed
    (random initialisation), `resnet18(pretrained=False)` spelled `weights=None` for torchvision ≥ 0.13;
  - the POI encoder's flatten size computed for the tile side instead of the hard-coded 100 (256 px);
  - the 256 px sides of its input matrices set to the tile side;
  - `os.listdir` sorted, so that its tile order (and tile 0) does not depend on the file system.
Recording wraps torch's DataLoader (the same RandomSampler, so the same draws from torch's global
generator), SummaryWriter (values kept) and Adam's constructor (the caller's `model` saved first).
`--device cpu --dvs gpu` keeps the script's validation and test code, which `--dvs cpu` skips.

usage: python run_script.py SCRIPT DATA_DIR WORK --side 32 --seed 1 [--epochs 40 --lr 0.001 ...]
"""
import argparse
import json
import os
import runpy
import shutil
import sys
from pathlib import Path


def patched(source, side):
    def once(old, new, count=1):
        nonlocal source
        found = source.count(old)
        if found != count:
            sys.exit(f"run_script: expected {count} of {old!r} in the script, found {found}")
        source = source.replace(old, new)

    once("        checkpoint = torch.load('resnet18-5c106cde.pth')\n", "")
    once("        self.image_encoder.load_state_dict(checkpoint)\n", "")
    once("models.resnet18(pretrained=False)", "models.resnet18(weights=None)")
    n = side
    for k, s, p in [(7, 3, 3), (7, 3, 1), (3, 3, 1)]:
        n = (n + 2 * p - k) // s + 1
    once("self.fc = nn.Linear(100, rep_dim)", f"self.fc = nn.Linear({n * n}, rep_dim)")
    once("np.zeros([len(tile2pic), 3, 256, 256])", f"np.zeros([len(tile2pic), 3, {side}, {side}])")
    once("np.zeros([len(tile2pic), poi_dim, 256, 256])", f"np.zeros([len(tile2pic), poi_dim, {side}, {side}])")
    source = source.replace("os.listdir(data_dir)", "sorted(os.listdir(data_dir))")
    return source


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("script", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("work", type=Path)
    ap.add_argument("--side", type=int, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--alpha", type=float, default=1e-3)
    ap.add_argument("--contrastive-epoch", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = ap.parse_args()

    import torch
    import torch.utils.data
    import torch.utils.tensorboard

    if a.threads:
        torch.set_num_threads(a.threads)
    work = a.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    source = patched(a.script.read_text(), a.side)
    (work / "main_contrastive_patched.py").write_text(source)
    # A private working directory (the data linked in), so that runs sharing a layout do not share
    # the script's checkpoint folder.
    cwd = work / "cwd"
    cwd.mkdir(exist_ok=True)
    for name in os.listdir(a.data):
        if not (cwd / name).exists():
            os.symlink((a.data / name).resolve(), cwd / name)
    os.chdir(cwd)
    os.makedirs("models/IJCAI_version", exist_ok=True)

    scalars = []

    class RecordingWriter:
        def __init__(self, *args, **kwargs):
            pass

        def add_scalar(self, tag, value, step=None):
            value = value.item() if hasattr(value, "item") else value
            scalars.append({"tag": tag, "value": float(value), "step": step})

        def add_text(self, *args, **kwargs):
            pass

        def close(self):
            pass

    torch.utils.tensorboard.SummaryWriter = RecordingWriter

    orders = []
    Loader = torch.utils.data.DataLoader

    class RecordingSampler(torch.utils.data.RandomSampler):
        def __iter__(self):
            order = list(super().__iter__())
            tiles = [self.data_source.tiles[i] for i in order]
            orders.append([[int(x), int(y)] for x, y in tiles])
            return iter(order)

    def recording_loader(dataset, *args, shuffle=False, **kwargs):
        if shuffle:
            return Loader(dataset, *args, sampler=RecordingSampler(dataset), **kwargs)
        return Loader(dataset, *args, **kwargs)

    torch.utils.data.DataLoader = recording_loader

    Adam = torch.optim.Adam

    class SavingAdam(Adam):
        def __init__(self, params, *args, **kwargs):
            model = sys._getframe(1).f_globals.get("model")
            if model is not None:
                torch.save(model.state_dict(), work / "initial.pt")
            super().__init__(params, *args, **kwargs)

    torch.optim.Adam = SavingAdam

    sys.argv = ["main_contrastive.py", "--city", "beijing", "--device", "cpu", "--dvs", "gpu",
                "--seed", str(a.seed), "--epochs", str(a.epochs), "--lr", str(a.lr),
                "--batch_size", str(a.batch), "--alpha", str(a.alpha),
                "--contrastive_epoch", str(a.contrastive_epoch), "--model_name_suffix", f"fidelity{a.seed}"]
    # The script's Dataset keeps tile indices only; the sampler writes tiles, so every Dataset
    # subclass the script defines also keeps the tiles it was given (its first argument).
    base = torch.utils.data.Dataset

    def init_subclass(cls, **kwargs):
        init = cls.__init__

        def wrapped(self, tiles, *args, **kw):
            init(self, tiles, *args, **kw)
            self.tiles = [tuple(t) for t in tiles]

        cls.__init__ = wrapped

    base.__init_subclass__ = classmethod(init_subclass)
    try:
        runpy.run_path(str(work / "main_contrastive_patched.py"), run_name="__main__")
    finally:
        with open(work / "order.jsonl", "w") as f:
            for o in orders:
                f.write(json.dumps(o) + "\n")
        best = Path("models/IJCAI_version") / f"regressor_fidelity{a.seed}.pt"
        if best.exists():
            shutil.copyfile(best, work / "best.pt")
        shutil.rmtree("models", ignore_errors=True)
    # Written only when the script finished: compare.py skips runs that have it.
    (work / "log.json").write_text(json.dumps(scalars))


if __name__ == "__main__":
    main()
