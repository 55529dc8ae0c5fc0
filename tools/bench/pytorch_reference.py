"""PyTorch reference for `opencarbon bench`: the OpenCarbon network of MODEL.md written directly in
PyTorch (no torchvision needed), timed with two data paths on the same synthetic-size city:

- authors: every tile kept as float32 on the host; each batch gathers its 9·B tiles with numpy,
  copies them to the device and runs the encoders in 9 chunks of B (one per window position), as
  main_contrastive.py does; inference batch by batch the same way.
- efficient: the tile store on the device as uint8; each distinct tile of a batch is encoded once
  and the embeddings are gathered into windows; inference encodes every tile once.

Inference is timed as in `opencarbon bench`: one untimed whole-city pass, then the median of three.
Throughput does not depend on pixel values, so tiles are random. Prints one JSON row per path.

usage: python pytorch_reference.py [--device cuda] [--tiles 1024] [--side 256] [--poi 15] [--batch 32]
       python pytorch_reference.py --resnet18 32,128 [--side 256]   (the ResNet-18 step, phase by phase)
"""
import argparse
import sys
import json
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

D = 32


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + idt)


class ImageEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers = []
        for cin, cout, s in [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]:
            layers.append(nn.Sequential(BasicBlock(cin, cout, s), BasicBlock(cout, cout, 1)))
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, D)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        return self.fc(self.layers(x).mean((2, 3)))


class SE(nn.Module):
    def __init__(self, c):
        super().__init__()
        r = max(c // 16, 8)
        self.fc1, self.fc2 = nn.Conv2d(c, r, 1), nn.Conv2d(r, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


class PoiEncoder(nn.Module):
    def __init__(self, c, side):
        super().__init__()
        self.conv1, self.bn1, self.se1 = nn.Conv2d(c, 32, 7, 3, 3, bias=False), nn.BatchNorm2d(32), SE(32)
        self.conv2, self.bn2, self.se2 = nn.Conv2d(32, 32, 7, 3, 1, bias=False), nn.BatchNorm2d(32), SE(32)
        self.conv3 = nn.Conv2d(32, 1, 3, 3, 1, bias=False)
        n = side
        for k, s, p in [(7, 3, 3), (7, 3, 1), (3, 3, 1)]:
            n = (n + 2 * p - k) // s + 1
        self.fc = nn.Linear(n * n, D)

    def forward(self, x):
        x = self.se1(F.relu(self.bn1(self.conv1(x))))
        x = self.se2(F.relu(self.bn2(self.conv2(x))))
        return self.fc(self.conv3(x).flatten(1))


class Agg(nn.Module):
    def __init__(self):
        super().__init__()
        self.w1, self.w2 = nn.Linear(D, 32), nn.Linear(32, 1, bias=False)

    def forward(self, z):  # [B, M, d]
        beta = torch.softmax(self.w2(torch.tanh(self.w1(z))), 1)
        return (z * beta).sum(1)


class TokenAttention(nn.Module):
    def __init__(self, heads=2):
        super().__init__()
        self.q, self.k, self.v, self.out = nn.Linear(1, heads), nn.Linear(1, heads), nn.Linear(1, heads), nn.Linear(heads, 1)

    def forward(self, query, ctx):
        q = self.q(query.unsqueeze(-1)).transpose(1, 2).unsqueeze(-1)  # [B, H, d, 1]
        k = self.k(ctx.unsqueeze(-1)).transpose(1, 2).unsqueeze(-2)  # [B, H, 1, d]
        v = self.v(ctx.unsqueeze(-1)).transpose(1, 2).unsqueeze(-1)
        att = torch.softmax(q @ k, -1) @ v  # [B, H, d, 1]
        return self.out(att.squeeze(-1).transpose(1, 2)).squeeze(-1)


class NbCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2, self.fc = nn.Conv2d(D, 64, 3, 1, 1), nn.Conv2d(64, 128, 3, 1, 1), nn.Linear(128, D)

    def forward(self, m):
        return self.fc(F.relu(self.conv2(F.relu(self.conv1(m)))).mean((2, 3)))


class OpenCarbon(nn.Module):
    def __init__(self, c, side):
        super().__init__()
        self.image, self.poi = ImageEncoder(), PoiEncoder(c, side)
        self.grid, self.nfuse = Agg(), Agg()
        self.cnn_s, self.cnn_p = NbCnn(), NbCnn()
        self.self_g, self.self_n, self.cross = TokenAttention(), TokenAttention(), TokenAttention()
        self.head = nn.Sequential(nn.Linear(2 * D, D), nn.ReLU(), nn.BatchNorm1d(D), nn.Linear(D, 1))

    def fuse(self, xs, xp, centre, window):
        """xs, xp: [U, d] embeddings; centre: [B] rows; window: [B, 9] rows (row U = zero)."""
        b = centre.shape[0]
        cs, cp = xs[centre], xp[centre]
        g = self.grid(torch.stack([cs, cp], 1))
        zero = xs.new_zeros(1, D)
        ms = torch.cat([xs, zero])[window].transpose(1, 2).reshape(b, D, 3, 3)
        mp = torch.cat([xp, zero])[window].transpose(1, 2).reshape(b, D, 3, 3)
        n = self.nfuse(torch.stack([self.cnn_s(ms), self.cnn_p(mp)], 1))
        g = self.self_g(g, g) + g
        n = self.self_n(n, n) + n
        f = self.cross(n, g)
        return self.head(torch.cat([f, n], 1)).squeeze(-1), cs, cp


def neighbours(w, h):
    """[N, 9] window of every tile of a w×h grid, -1 outside."""
    idx = np.full((w * h, 9), -1, dtype=np.int64)
    for y in range(h):
        for x in range(w):
            j = 0
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    nx, ny = x + dx, y + dy
                    if 0 <= nx < w and 0 <= ny < h:
                        idx[y * w + x, j] = ny * w + nx
                    j += 1
    return idx


def loss_of(pred, y, cs, cp, alpha=1e-3):
    logits = cs @ cp.t() / 0.07
    return F.l1_loss(pred, y, reduction="sum") + alpha * F.cross_entropy(logits, torch.arange(len(y), device=y.device))


PRECISION = "default"


PROFILED_STEPS = 3  # as `opencarbon bench --profile`


def profiled(dev, profile_dir, name, body):
    """Runs body() (PROFILED_STEPS training steps) under torch.profiler and writes
    <profile_dir>/<name>.trace.json, which `opencarbon bench --summarize FILE --steps 3` summarises
    the same way as ours."""
    from torch.profiler import ProfilerActivity, profile
    import os
    os.makedirs(profile_dir, exist_ok=True)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=activities) as prof:
        body()
    path = os.path.join(profile_dir, f"{name}.trace.json")
    prof.export_chrome_trace(path)
    print(f"{name}: trace {path}", file=sys.stderr)


def resnet18_step(dev, batch, side, warmup, steps, profile_dir=None):
    """A ResNet-18 training step phase by phase (forward, backward, Adam with weight decay), each
    synchronised: the same step as `opencarbon bench --resnet18`."""
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    model = ImageEncoder().to(dev)
    model.fc = nn.Linear(512, 1000).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=5e-3)
    x = torch.randn(batch, 3, side, side, device=dev)
    labels = (torch.arange(batch, device=dev) * 37) % 1000
    model.train()
    times = np.zeros(3)

    def step():
        sync()
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), labels)
        sync()
        t1 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        sync()
        t2 = time.perf_counter()
        opt.step()
        sync()
        t3 = time.perf_counter()
        return np.array([t1 - t0, t2 - t1, t3 - t2])

    for i in range(warmup + steps):
        t = step()
        if i >= warmup:
            times += t
    if profile_dir:
        profiled(dev, profile_dir, f"resnet18_pytorch_{dev.type}_b{batch}_s{side}",
                 lambda: [step() for _ in range(PROFILED_STEPS)])
    ms = 1e3 * times / steps
    print(json.dumps({"framework": f"pytorch {torch.__version__}", "device": str(dev), "bench": "resnet18_step",
                      "precision": PRECISION, "batch": batch, "side": side, "steps": steps, "forward_ms": round(ms[0], 2),
                      "backward_ms": round(ms[1], 2), "optimizer_ms": round(ms[2], 2),
                      "total_ms": round(ms.sum(), 2)}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiles", type=int, default=1024)
    ap.add_argument("--side", type=int, default=256)
    ap.add_argument("--poi", type=int, default=15)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--paths", default="efficient,authors")
    ap.add_argument("--resnet18", default="", help="instead, time a ResNet-18 step at these batches, e.g. 32,128")
    ap.add_argument("--profile", default=None, help="also profile 3 more steps into this folder (Chrome traces)")
    ap.add_argument("--precision", default="default", choices=["default", "fp32", "tf32"],
                    help="fp32 on CUDA: default (TF32 convolutions, fp32 matmuls), fp32 (strict) or tf32 (both TF32); "
                         "as `opencarbon bench --precision`")
    a = ap.parse_args()
    dev = torch.device(a.device)
    if a.precision != "default":
        torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
        torch.backends.cudnn.allow_tf32 = a.precision == "tf32"
    global PRECISION
    PRECISION = a.precision
    if a.resnet18:
        for b in a.resnet18.split(","):
            resnet18_step(dev, int(b), a.side, a.warmup, a.steps, a.profile)
        return
    torch.manual_seed(0)
    w = int(np.ceil(np.sqrt(a.tiles)))
    h = (a.tiles + w - 1) // w
    n = w * h
    rng = np.random.default_rng(0)
    img_u8 = rng.integers(0, 256, (n, 3, a.side, a.side), dtype=np.uint8)
    poi_u8 = rng.integers(0, 16, (n, a.poi, a.side, a.side), dtype=np.uint8)
    y_all = torch.tensor(rng.normal(6, 1, n), dtype=torch.float32)
    nb = neighbours(w, h)
    train = rng.permutation(n)[: int(0.6 * n)]
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)

    for path in a.paths.split(","):
        model = OpenCarbon(a.poi, a.side).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=5e-3)
        if path == "authors":
            img_f32 = img_u8.astype(np.float32)
            poi_f32 = poi_u8.astype(np.float32) / 32.0
            nb0 = np.where(nb < 0, 0, nb)  # the script: a missing neighbour is tile 0

            def run_batch(batch, train_mode):
                tiles = nb0[batch].T.reshape(-1)  # position-major: chunk j holds position j
                xi = torch.from_numpy(img_f32[tiles]).to(dev)
                xp = torch.from_numpy(poi_f32[tiles]).to(dev)
                es = torch.cat([model.image(c) for c in xi.chunk(9)])
                ep = torch.cat([model.poi(c) for c in xp.chunk(9)])
                b = len(batch)
                window = torch.arange(9 * b, device=dev).reshape(9, b).t()
                return model.fuse(es, ep, window[:, 4], window)
        else:
            img_dev = torch.from_numpy(img_u8).to(dev)
            poi_dev = torch.from_numpy(poi_u8).to(dev)
            nb_dev = torch.from_numpy(nb).to(dev)

            def run_batch(batch, train_mode):
                bt = torch.from_numpy(batch).to(dev)
                win = nb_dev[bt]  # [B, 9]
                tiles, inverse = torch.unique(torch.cat([bt, win[win >= 0]]), return_inverse=True)
                u = len(tiles)
                es = model.image(img_dev[tiles].float())
                ep = model.poi(poi_dev[tiles].float() / 32.0)
                rows = torch.full_like(win, u)
                rows[win >= 0] = inverse[len(bt):]
                return model.fuse(es, ep, inverse[: len(bt)], rows)

        batches = [train[i : i + a.batch] for i in range(0, len(train) - a.batch + 1, a.batch)]
        model.train()
        for step in range(a.warmup + a.steps):
            if step == a.warmup:
                sync()
                t0 = time.perf_counter()
            batch = batches[step % len(batches)]
            pred, cs, cp = run_batch(batch, True)
            loss = loss_of(pred, y_all[batch].to(dev), cs, cp)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()
        sync()
        train_tps = a.steps * a.batch / (time.perf_counter() - t0)

        model.eval()

        def infer():
            """Seconds for one whole-city inference pass."""
            with torch.no_grad():
                sync()
                t0 = time.perf_counter()
                if path == "authors":
                    for i in range(0, n, a.batch):
                        pred, _, _ = run_batch(np.arange(i, min(n, i + a.batch)), False)
                        pred.cpu()
                else:
                    es = torch.cat([model.image(img_dev[i : i + 256].float()) for i in range(0, n, 256)])
                    ep = torch.cat([model.poi(poi_dev[i : i + 256].float() / 32.0) for i in range(0, n, 256)])
                    for i in range(0, n, 256):
                        c = torch.arange(i, min(n, i + 256), device=dev)
                        win = nb_dev[c]
                        rows = torch.where(win >= 0, win, torch.full_like(win, n))
                        pred, _, _ = model.fuse(es, ep, c, rows)
                        pred.cpu()
                sync()
                return time.perf_counter() - t0

        # As `opencarbon bench`: one untimed pass, then the median of three.
        infer()
        infer_tps = n / sorted(infer() for _ in range(3))[1]
        peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else float("nan")
        reserved = torch.cuda.max_memory_reserved() / 2**20 if dev.type == "cuda" else float("nan")
        print(json.dumps({"framework": f"pytorch {torch.__version__}", "device": str(dev), "precision": PRECISION,
                          "path": path, "tiles": n, "peak_device_reserved_mib": None if reserved != reserved else round(reserved),
                          "side": a.side, "batch": a.batch, "train_tiles_per_s": round(train_tps, 1),
                          "inference_tiles_per_s": round(infer_tps, 1), "peak_device_mib": None if peak != peak else round(peak)}), flush=True)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()


if __name__ == "__main__":
    main()
