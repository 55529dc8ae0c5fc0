"""Parity fixtures: every block of ../shared/MODEL.md built in PyTorch with seeded random weights and
inputs, so that tests/parity.rs can load the weights into the burn modules through the PyTorch
checkpoint import a user takes (`PytorchStore` on a `.pt`/`.pth`) and compare outputs.

Per block `<name>`:
  <name>.pt            the state dict, written by torch.save (re-zipped with DEFLATE when large;
                       burn's reader handles both), keys named as the burn module's fields
  <name>.safetensors   inputs, outputs (eval and train mode), BatchNorm running statistics after one
                       train-mode forward, losses, gradients, parameters after one Adam step
resnet18.pth is written by torchvision's own resnet18() (its key layout, `fc` with 1000 classes).

Weights of the ResNet are sparse ternary (±s or 0 per layer, ~16 inputs per unit) so the fixtures stay small (well under
10 MB in all) while every convolution still mixes many inputs. Running statistics are calibrated on a
separate batch so eval-mode activations stay in a sane range. Everything runs on CPU in float32.

usage: python tools/parity/make_fixtures.py [--out tests/fixtures/parity]
(needs torch, torchvision, safetensors, pillow: scripts/parity-fixtures.sh sets up a venv and runs this)
"""
import argparse
import copy
import io
import math
import os
import zipfile

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file

D = 32
torch.backends.cudnn.deterministic = True
torch.use_deterministic_algorithms(True)


# ---- blocks, written from MODEL.md; attribute names are the burn modules' field names ----

class SE(nn.Module):
    """SE(c): global mean → 1×1 conv c→max(c/16, 8) (bias) → ReLU → 1×1 conv back (bias) → sigmoid → scale."""

    def __init__(self, c):
        super().__init__()
        r = max(c // 16, 8)
        self.fc1, self.fc2 = nn.Conv2d(c, r, 1), nn.Conv2d(r, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


class PoiEncoder(nn.Module):
    def __init__(self, c, side, se=True):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, 32, 7, 3, 3, bias=False), nn.BatchNorm2d(32)
        self.conv2, self.bn2 = nn.Conv2d(32, 32, 7, 3, 1, bias=False), nn.BatchNorm2d(32)
        self.se1, self.se2 = (SE(32), SE(32)) if se else (None, None)
        self.conv3 = nn.Conv2d(32, 1, 3, 3, 1, bias=False)
        n = side
        for k, s, p in [(7, 3, 3), (7, 3, 1), (3, 3, 1)]:
            n = (n + 2 * p - k) // s + 1
        self.fc = nn.Linear(n * n, D)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        if self.se1 is not None:
            x = self.se1(x)
        x = F.relu(self.bn2(self.conv2(x)))
        if self.se2 is not None:
            x = self.se2(x)
        return self.fc(self.conv3(x).flatten(1))


class Downsample(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.conv(x))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.downsample = Downsample(cin, cout, stride) if stride != 1 or cin != cout else None

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + idt)


class ImageEncoder(nn.Module):
    """torchvision's ResNet-18 arithmetic with `fc` = Linear(512→d); input used as given."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        for i, (cin, cout, s) in enumerate([(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]):
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(cin, cout, s), BasicBlock(cout, cout, 1)))
        self.fc = nn.Linear(512, D)

    def features(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean((2, 3))

    def forward(self, x):
        return self.fc(self.features(x))


class AggregateAttention(nn.Module):
    """w = W2·tanh(W1 z + b1) (W2 without bias), β = softmax over modalities, output Σ β z."""

    def __init__(self, hidden=32):
        super().__init__()
        self.w1, self.w2 = nn.Linear(D, hidden), nn.Linear(hidden, 1, bias=False)

    def forward(self, z):  # [B, M, d]
        beta = torch.softmax(self.w2(torch.tanh(self.w1(z))), dim=1)
        return (beta * z).sum(1), beta.squeeze(-1)


class TokenAttention(nn.Module):
    """d tokens of width 1; per head h: q_h, k_h, v_h = Linear(1→1), softmax(q kᵀ/√1) v; heads
    concatenated, Linear(heads→1). The heads' Linear(1→1) are stored side by side as Linear(1→heads)."""

    def __init__(self, heads=2):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = nn.Linear(1, heads), nn.Linear(1, heads), nn.Linear(1, heads)
        self.out = nn.Linear(heads, 1)

    def forward(self, query, context):  # [B, d] each
        outs = []
        for h in range(self.heads):
            lin = lambda m, x: x.unsqueeze(-1) * m.weight[h, 0] + m.bias[h]  # Linear(1→1) of head h
            q, k, v = lin(self.q, query), lin(self.k, context), lin(self.v, context)  # [B, d, 1]
            att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(1), dim=-1)  # [B, d, d]
            outs.append(att @ v)  # [B, d, 1]
        return self.out(torch.cat(outs, -1)).squeeze(-1)


class NeighbourhoodCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(D, 64, 3, 1, 1), nn.Conv2d(64, 128, 3, 1, 1)
        self.fc = nn.Linear(128, D)

    def forward(self, m):
        return self.fc(F.relu(self.conv2(F.relu(self.conv1(m)))).mean((2, 3)))


class Regressor(nn.Module):
    def __init__(self, inp):
        super().__init__()
        self.fc1, self.bn, self.fc2 = nn.Linear(inp, D), nn.BatchNorm1d(D), nn.Linear(D, 1)

    def forward(self, x):
        return self.fc2(self.bn(F.relu(self.fc1(x)))).squeeze(-1)


class NeighbourhoodBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.cnn = nn.ModuleList([NeighbourhoodCnn(), NeighbourhoodCnn()])
        self.fusion = AggregateAttention()
        self.self_grid, self.self_neighbourhood, self.cross = TokenAttention(), TokenAttention(), TokenAttention()


class OpenCarbon(nn.Module):
    """Image + POI with the 3×3 neighbourhood (MODEL.md 1–6). Tiles are encoded once; `centre` [B]
    and `window` [B, 9] index their rows (row U = a zero embedding for a masked neighbour)."""

    def __init__(self, poi_channels, poi_side):
        super().__init__()
        self.image, self.poi = ImageEncoder(), PoiEncoder(poi_channels, poi_side)
        self.grid_fusion = AggregateAttention()
        self.neighbourhood = NeighbourhoodBranch()
        self.head = Regressor(2 * D)

    def forward(self, image, poi, centre, window):
        xs, xp = self.image(image), self.poi(poi)
        b = centre.shape[0]
        cs, cp = xs[centre], xp[centre]
        g, _ = self.grid_fusion(torch.stack([cs, cp], 1))
        zero = xs.new_zeros(1, D)
        maps = []
        for e, cnn in zip([xs, xp], self.neighbourhood.cnn):
            m = torch.cat([e, zero])[window]  # [B, 9, d]
            maps.append(cnn(m.transpose(1, 2).reshape(b, D, 3, 3)))
        n, _ = self.neighbourhood.fusion(torch.stack(maps, 1))
        br = self.neighbourhood
        g = br.self_grid(g, g) + g
        n = br.self_neighbourhood(n, n) + n
        f = br.cross(n, g)
        return self.head(torch.cat([f, n], 1)), cs, cp


def info_nce(a, b, direction="a_to_b", similarity="dot", tau=0.07):
    if similarity == "cosine":
        a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    logits = a @ b.t() / tau
    labels = torch.arange(a.shape[0])
    if direction == "a_to_b":
        return F.cross_entropy(logits, labels)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


# ---- helpers ----

def randomise_bn(module, gen):
    """Non-trivial affine parameters and running statistics for every BatchNorm."""
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            with torch.no_grad():
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(1 + 0.5 * torch.rand(m.running_var.shape, generator=gen))


def calibrate_bn(module, run):
    """Running statistics = the batch statistics of one train-mode pass (momentum 1)."""
    saved = {}
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            saved[m] = m.momentum
            m.momentum = 1.0
    module.train()
    with torch.no_grad():
        run()
    for m, mom in saved.items():
        m.momentum = mom


def sparse_ternary(module, gen, inputs_per_unit=16):
    """Conv and linear weights of ±s or 0: each output unit reads about `inputs_per_unit` inputs,
    whole kernels of consecutive input channels from a random start (dense where the fan-in is
    small); s keeps the fan-in variance of Kaiming init. Long zero runs compress well."""
    for name, p in module.named_parameters():
        if p.dim() < 2:
            continue
        fan_in = p[0].numel()
        if fan_in <= 4 * inputs_per_unit:
            continue  # small layers keep their dense default init
        kernel = p[0, 0].numel() if p.dim() == 4 else 1
        channels = max(1, round(inputs_per_unit / kernel))
        s = math.sqrt(2.0 / (channels * kernel))
        w = torch.zeros(p.shape)
        for o in range(p.shape[0]):
            first = int(torch.randint(0, p.shape[1] - channels + 1, (1,), generator=gen))
            block = w[o, first:first + channels]
            block.copy_((torch.randint(0, 2, block.shape, generator=gen).float() * 2 - 1) * s)
        with torch.no_grad():
            p.copy_(w)


def bn_state(module, prefix):
    """Running statistics of every BatchNorm, keyed `<prefix>.<path>.running_{mean,var}`."""
    out = {}
    for name, m in module.named_modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            out[f"{prefix}.{name}.running_mean"] = m.running_mean.clone()
            out[f"{prefix}.{name}.running_var"] = m.running_var.clone()
    return out


def save_state(module, path, deflate=False):
    sd = {k: v for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")}
    save_raw(sd, path, deflate)


def save_raw(obj, path, deflate=False):
    buf = io.BytesIO()
    torch.save(obj, buf)
    if not deflate:
        with open(path, "wb") as f:
            f.write(buf.getvalue())
        return
    # torch.save stores entries uncompressed; the same archive with DEFLATE entries is much
    # smaller for sparse weights and still a valid checkpoint (torch.load and burn read it).
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
        for info in src.infolist():
            # A fixed timestamp keeps the file byte-identical from one run to the next.
            entry = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(entry, src.read(info.filename), compresslevel=9)
    torch.load(path, weights_only=True)  # still loadable by torch


def tensors(d):
    return {k: v.detach().contiguous().float() if v.is_floating_point() else v.detach().contiguous() for k, v in d.items()}


def forward_both(module, run, prefix="out"):
    """Eval output, then train output and the running statistics after that one train step."""
    module.eval()
    with torch.no_grad():
        ev = run()
    module.train()
    with torch.no_grad():
        tr = run()
    return ev, tr, bn_state(module, "after")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/parity")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    gen = torch.Generator().manual_seed(20250601)
    torch.manual_seed(20250601)
    out = lambda name: os.path.join(args.out, name)

    # SE
    se = SE(32)
    x = torch.randn(3, 32, 6, 6, generator=gen)
    save_state(se, out("se.pt"))
    with torch.no_grad():
        save_file(tensors({"input": x, "output": se(x)}), out("se.safetensors"))

    # POI encoder at 256² (its flatten size depends on it), with and without SE
    # (one input for both: poi_encoder_no_se.safetensors has no input_u8 of its own)
    x_u8 = torch.randint(0, 8, (2, 3, 256, 256), generator=gen, dtype=torch.uint8)
    for name, with_se in [("poi_encoder", True), ("poi_encoder_no_se", False)]:
        enc = PoiEncoder(3, 256, se=with_se)
        randomise_bn(enc, gen)
        save_state(enc, out(f"{name}.pt"))
        ev, tr, after = forward_both(enc, lambda: enc(x_u8.float() * 0.5))
        inputs = {"input_u8": x_u8, "scale": torch.tensor([0.5])} if with_se else {}
        save_file(tensors({**inputs, "eval": ev, "train": tr, **after}), out(f"{name}.safetensors"))

    # torchvision ResNet-18 (its own key layout and 1000-class fc), at 64² input
    net = torchvision.models.resnet18()
    sparse_ternary(net, gen)
    randomise_bn(net, gen)
    calib = torch.randint(0, 256, (4, 3, 64, 64), generator=gen, dtype=torch.uint8).float()
    calibrate_bn(net, lambda: net(calib))
    x_u8 = torch.randint(0, 256, (2, 3, 64, 64), generator=gen, dtype=torch.uint8)
    save_raw(net.state_dict(), out("resnet18.pth"), deflate=True)
    feats = lambda: torch.flatten(net.avgpool(net.layer4(net.layer3(net.layer2(net.layer1(
        net.maxpool(net.relu(net.bn1(net.conv1(x_u8.float()))))))))), 1)
    ev, tr, after = forward_both(net, feats)
    save_file(tensors({"input_u8": x_u8, "eval": ev, "train": tr, **after}), out("resnet18.safetensors"))

    # Aggregate-attention, token attention, neighbourhood CNN, regressor
    agg = AggregateAttention()
    z = torch.randn(4, 2, D, generator=gen)
    save_state(agg, out("aggregate_attention.pt"))
    with torch.no_grad():
        fused, beta = agg(z)
    save_file(tensors({"input": z, "fused": fused, "beta": beta}), out("aggregate_attention.safetensors"))

    att = TokenAttention()
    q, c = torch.randn(4, D, generator=gen), torch.randn(4, D, generator=gen)
    save_state(att, out("token_attention.pt"))
    with torch.no_grad():
        save_file(tensors({"query": q, "context": c, "output": att(q, c), "self": att(q, q)}),
                  out("token_attention.safetensors"))

    cnn = NeighbourhoodCnn()
    m = torch.randn(4, D, 3, 3, generator=gen)
    save_state(cnn, out("neighbourhood_cnn.pt"))
    with torch.no_grad():
        save_file(tensors({"input": m, "output": cnn(m)}), out("neighbourhood_cnn.safetensors"))

    reg = Regressor(2 * D)
    randomise_bn(reg, gen)
    h = torch.randn(6, 2 * D, generator=gen)
    save_state(reg, out("regressor.pt"))
    # The same state dict in the legacy (pre-1.6, non-zip) format that resnet18-5c106cde.pth uses.
    sd = {k: v for k, v in reg.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(sd, out("regressor_legacy.pt"), _use_new_zipfile_serialization=False)
    ev, tr, after = forward_both(reg, lambda: reg(h))
    save_file(tensors({"input": h, "eval": ev, "train": tr, **after}), out("regressor.safetensors"))

    # Losses
    a, b = torch.randn(6, D, generator=gen), torch.randn(6, D, generator=gen)
    pred, target = torch.randn(6, generator=gen), torch.randn(6, generator=gen)
    save_file(tensors({
        "a": a, "b": b, "prediction": pred, "target": target,
        "l1_sum": F.l1_loss(pred, target, reduction="sum").reshape(1),
        "info_nce": info_nce(a, b).reshape(1),
        "info_nce_symmetric": info_nce(a, b, "symmetric").reshape(1),
        "info_nce_cosine": info_nce(a, b, similarity="cosine").reshape(1),
        "info_nce_tau_0_5": info_nce(a, b, tau=0.5).reshape(1),
    }), out("losses.safetensors"))

    # The full network: forward (eval and train), then one training step (L1-sum + α·InfoNCE,
    # Adam with coupled weight decay): loss, gradients, parameters after the step.
    net = OpenCarbon(3, 64)
    sparse_ternary(net.image, gen, inputs_per_unit=64)
    randomise_bn(net, gen)
    u = 40  # distinct tiles; row u is the zero row
    image_u8 = torch.randint(0, 256, (u, 3, 64, 64), generator=gen, dtype=torch.uint8)
    poi_u8 = torch.randint(0, 8, (u, 3, 64, 64), generator=gen, dtype=torch.uint8)
    calib_img = torch.randint(0, 256, (u, 3, 64, 64), generator=gen, dtype=torch.uint8).float()
    calib_poi = torch.randint(0, 8, (u, 3, 64, 64), generator=gen, dtype=torch.uint8).float()
    b = 32  # samples (the paper's batch size), each a distinct centre; windows index the u tiles
    centre = torch.randperm(u, generator=gen)[:b]
    window = torch.randint(0, u + 1, (b, 9), generator=gen)
    window[:, 4] = centre
    y = torch.randn(b, generator=gen)
    calibrate_bn(net, lambda: net(calib_img, calib_poi, centre, window))
    net.image.fc.weight.data *= 0.05  # keep X_s small enough for a finite InfoNCE at τ = 0.07
    save_state(net, out("network.pt"), deflate=True)
    run = lambda: net(image_u8.float(), poi_u8.float(), centre, window)[0]
    net.eval()
    with torch.no_grad():
        ev = run()

    # Gradients and updated values of every parameter outside the ResNet body, and of the
    # ResNet's first and last layers (the body's are large; its gradient reaches conv1 anyway).
    # The second neighbourhood CNN's convolutions are left out too (the first has the same arithmetic).
    keep = lambda k: (not k.startswith(("image.", "neighbourhood.cnn.1.conv"))
                      or k.startswith(("image.conv1", "image.bn1", "image.fc", "image.layer4.1.bn2")))

    def train_step(dtype):
        """One step on a copy of the network in `dtype`: outputs, loss terms, gradients, parameters."""
        m = copy.deepcopy(net).to(dtype)
        m.train()
        pred, cs, cp = m(image_u8.to(dtype), poi_u8.to(dtype), centre, window)
        l1 = F.l1_loss(pred, y.to(dtype), reduction="sum")
        nce = info_nce(cs, cp)
        loss = l1 + 0.001 * nce
        opt = torch.optim.Adam(m.parameters(), lr=1e-3, eps=1e-8, weight_decay=5e-3)
        opt.zero_grad()
        loss.backward()
        grads = {k: p.grad.clone() for k, p in m.named_parameters() if keep(k)}
        opt.step()
        after = {k: p.detach().clone() for k, p in m.named_parameters() if keep(k)}
        return pred, l1, nce, loss, grads, after, m

    # The step in float32 (what PyTorch computes) and in float64 (the exact answer, to judge both
    # float32 implementations: a BatchNorm over near-constant channels makes some gradients
    # ill-conditioned, and there two float32 codes can only be compared through the exact value).
    pred, l1, nce, loss, grads, _, stepped = train_step(torch.float32)
    _, _, _, _, grads64, after64, _ = train_step(torch.float64)
    save_file(tensors({
        "image_u8": image_u8, "poi_u8": poi_u8, "centre": centre, "window": window.flatten(), "target": y,
        "eval": ev, "train": pred, "l1": l1.reshape(1), "info_nce": nce.reshape(1), "loss": loss.reshape(1),
        **{f"grad.{k}": v for k, v in grads.items()}, **{f"grad64.{k}": v for k, v in grads64.items()},
        **{f"after64.{k}": v for k, v in after64.items()},
        **bn_state(stepped, "bn_after"),
    }), out("network.safetensors"))
    total = sum(os.path.getsize(out(f)) for f in os.listdir(args.out))
    print(f"wrote {len(os.listdir(args.out))} files, {total / 1e6:.2f} MB, to {args.out}")


if __name__ == "__main__":
    main()
