#!/usr/bin/env python
"""How much of ImageNet-pretrained EfficientNet-Lite0 survives the transfer into a space's supernet.

  python benchmarks/lite0_transfer.py --space search_spaces/lighttrack_tiny.yaml \
      --space search_spaces/lighttrack.yaml --frames 'cache/data_tiny/val/*/*.jpg'

Initialises each space's supernet from Lite0 (`pretrained_backbone: efficientnet-lite0`) and prints,
per backbone stage, the linear CKA between Lite0's own stage features and the supernet's along Lite0's
path (its kernels, expansion 6) on random square crops of the given frames: 1.00 means the stage
computes Lite0's features up to a rotation and scale, lower values a distorted copy (narrower
widths keep only the most important channels, Swish replaces ReLU6, a narrower stem drops
channels). It matters most when the backbone stays frozen while the supernet trains.
"""
from __future__ import annotations

import argparse
import glob
import random

import cv2
import numpy as np
import torch

from lighttrack_nas.cli import run_cli
from lighttrack_nas.io import write_json
from lighttrack_nas.data.crop import to_tensor
from lighttrack_nas.models import build_supernet, load_space
from lighttrack_nas.models.pretrained import init_from_efficientnet_lite0, lite0_state, lite0_transfer_fidelity


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", action="append", required=True, help="search-space YAML (repeat to compare spaces)")
    p.add_argument("--frames", required=True,
                   help="glob of the images to crop, quoted (e.g. a generated split: 'cache/data_tiny/val/*/*.jpg')")
    p.add_argument("--crops", type=int, default=96, help="number of random crops, one per image (default: %(default)s)")
    p.add_argument("--size", type=int, default=160, help="crop side in pixels (default: %(default)s, the tiny search crop)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image and crop choice (default: %(default)s)")
    p.add_argument("--json", help="also write {space: {stage: CKA}} to this JSON file")
    return p.parse_args()


def random_crops(pattern: str, count: int, size: int, seed: int) -> torch.Tensor:
    """``count`` random ``size`` x ``size`` crops of images matching ``pattern``, ImageNet-normalised."""
    files = sorted(glob.glob(pattern))
    if not files:
        raise FileNotFoundError(f"--frames {pattern!r} matches no file (generate a split first, e.g. "
                                f"python tools/make_dataset.py, or point at any folder of images)")
    rng = random.Random(seed)
    crops = []
    for path in rng.sample(files, min(count, len(files))):
        image = cv2.imread(path)
        if image is None:
            raise ValueError(f"{path}: not a readable image")
        if min(image.shape[:2]) < size:
            raise ValueError(f"{path}: {image.shape[1]}x{image.shape[0]} is smaller than --size {size}")
        y, x = rng.randint(0, image.shape[0] - size), rng.randint(0, image.shape[1] - size)
        crops.append(cv2.cvtColor(image[y:y + size, x:x + size], cv2.COLOR_BGR2RGB))
    return to_tensor(np.stack(crops))


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    x = random_crops(args.frames, args.crops, args.size, args.seed)
    state = lite0_state()
    results = {}
    for path in args.space:
        net = build_supernet(load_space(path))
        init_from_efficientnet_lite0(net, state)
        results[path] = lite0_transfer_fidelity(net, x, state)
        print(f"{path}: " + "  ".join(f"{stage} {cka:.3f}" for stage, cka in results[path].items()), flush=True)
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    run_cli(main)
