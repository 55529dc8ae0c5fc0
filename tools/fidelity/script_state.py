"""Convert a state dict of the authors' `Regressor` (main_contrastive.py) into opencarbon's
parameter paths, for `model.initial_weights`: the same network, its tensors renamed, the token
attention's per-head Linear(1→1) layers stacked into one Linear(1→heads) per projection, and
BatchNorm's `num_batches_tracked` dropped (opencarbon does not keep it). Every tensor of the
script's state dict is used exactly once; anything left over or missing is an error.

The neighbourhood CNN sees the script's window as an [x, y] grid: train opencarbon with
`model.window_order: xy` for these weights to mean the same.

usage: python script_state.py initial.pt initial_opencarbon.pt
"""
import re
import sys

import torch

RENAMES = [
    (r"^grid_rep\.image_encoder\.fc\.", "image.fc."),
    (r"^grid_rep\.image_encoder\.(layer\d\.\d)\.downsample\.0\.", r"image.\1.downsample.conv."),
    (r"^grid_rep\.image_encoder\.(layer\d\.\d)\.downsample\.1\.", r"image.\1.downsample.bn."),
    (r"^grid_rep\.image_encoder\.", "image."),
    (r"^grid_rep\.poi_encoder\.fc1\.", "poi.conv1."),
    (r"^grid_rep\.poi_encoder\.fc2\.", "poi.conv2."),
    (r"^grid_rep\.poi_encoder\.fc3\.", "poi.conv3."),
    (r"^grid_rep\.poi_encoder\.", "poi."),
    (r"^neighbor_rep\.image_encoder\.0\.", "neighbourhood.cnn.0.conv1."),
    (r"^neighbor_rep\.image_encoder\.2\.", "neighbourhood.cnn.0.conv2."),
    (r"^neighbor_rep\.image_fc\.", "neighbourhood.cnn.0.fc."),
    (r"^neighbor_rep\.poi_encoder\.0\.", "neighbourhood.cnn.1.conv1."),
    (r"^neighbor_rep\.poi_encoder\.2\.", "neighbourhood.cnn.1.conv2."),
    (r"^neighbor_rep\.poi_fc\.", "neighbourhood.cnn.1.fc."),
    (r"^grid_agg\.l1\.", "grid_fusion.w1."),
    (r"^grid_agg\.l2\.", "grid_fusion.w2."),
    (r"^neighbor_agg\.l1\.", "neighbourhood.fusion.w1."),
    (r"^neighbor_agg\.l2\.", "neighbourhood.fusion.w2."),
    (r"^regressor\.0\.", "head.fc1."),
    (r"^regressor\.2\.", "head.bn."),
    (r"^regressor\.3\.", "head.fc2."),
]
ATTENTION = {"self_grid": "neighbourhood.self_grid", "self_neighbor": "neighbourhood.self_neighbourhood",
             "cross_from_neighborhood": "neighbourhood.cross"}


def convert(state):
    out, used = {}, set()
    for script, ours in ATTENTION.items():
        heads = sorted({int(m.group(1)) for k in state for m in [re.match(rf"^{script}\.heads\.(\d+)\.", k)] if m})
        if not heads:
            sys.exit(f"script_state: no heads of {script} in the state dict")
        for proj in ["q", "k", "v"]:
            # Head h's Linear(1→1) is row h of opencarbon's Linear(1→heads).
            weights = [f"{script}.heads.{h}.{proj}.weight" for h in heads]
            biases = [f"{script}.heads.{h}.{proj}.bias" for h in heads]
            out[f"{ours}.{proj}.weight"] = torch.cat([state[k].reshape(1, 1) for k in weights], 0)
            out[f"{ours}.{proj}.bias"] = torch.cat([state[k].reshape(1) for k in biases])
            used.update(weights + biases)
        for part in ["weight", "bias"]:
            out[f"{ours}.out.{part}"] = state[f"{script}.linear.{part}"]
            used.add(f"{script}.linear.{part}")
    for key, value in state.items():
        if key in used or key.endswith("num_batches_tracked"):
            continue
        for pattern, repl in RENAMES:
            if re.match(pattern, key):
                out[re.sub(pattern, repl, key)] = value
                used.add(key)
                break
        else:
            sys.exit(f"script_state: no rule for the script's tensor {key}")
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    state = torch.load(sys.argv[1], map_location="cpu")
    out = convert(state)
    torch.save({k: v.detach().clone().float() if v.is_floating_point() else v for k, v in out.items()}, sys.argv[2])
    print(f"{len(state)} tensors of the script → {len(out)} of opencarbon in {sys.argv[2]}")


if __name__ == "__main__":
    main()
