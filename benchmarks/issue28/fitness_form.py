#!/usr/bin/env python
"""How long one search candidate's fitness takes, and what tracking its fused form saves:
frame decoding, extraction + BatchNorm recalibration, then tracking the val frames of the search
config (experiments/search_tiny.yaml: 24 x 60) with the unfused and the fused subnet (random
subnets, 1 thread, one process).

  python benchmarks/issue28/fitness_form.py --supernet runs/demo/supernet/checkpoint.pt
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from lighttrack_nas.cli import run_cli
from lighttrack_nas.config import load_experiment
from lighttrack_nas.data.pairs import calibration_batches
from lighttrack_nas.data.sources import load_split
from lighttrack_nas.deploy import inference_model
from lighttrack_nas.evaluate.tracking import score_model
from lighttrack_nas.models import load_supernet
from lighttrack_nas.search.fitness import recalibrate_batchnorm
from lighttrack_nas.search.settings import SearchSettings
from lighttrack_nas.tracker import TrackerConfig, tracker_settings


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--supernet", required=True, help="supernet checkpoint")
    p.add_argument("--config", default="experiments/search_tiny.yaml", help="search config (default: %(default)s)")
    p.add_argument("--subnets", type=int, default=3, help="random subnets timed (default: %(default)s)")
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = load_experiment(args.config)
    settings = SearchSettings.from_config(cfg.get("search"))
    net = load_supernet(args.supernet).eval()
    seqs = load_split(cfg["data"], settings.split, settings.val_sequences, settings.val_frames)
    calibration = calibration_batches(load_split(cfg["data"], "train"), net.template_size, net.search_size,
                                      settings.calibration_images, settings.calibration_batch)
    tracker = TrackerConfig.from_dict(tracker_settings(cfg))
    start = time.perf_counter()
    frames = sum(1 for s in seqs for i in range(len(s)) if s.load_frame(i) is not None)
    print(f"decoding {frames} frames: {time.perf_counter() - start:.2f} s")
    rng = np.random.default_rng(0)
    for _ in range(args.subnets):
        arch = net.space.sample(rng)
        t0 = time.perf_counter()
        with torch.no_grad():
            subnet = recalibrate_batchnorm(net.extract(arch), calibration)
        t1 = time.perf_counter()
        plain = score_model(subnet, seqs, tracker).fitness
        t2 = time.perf_counter()
        fused = score_model(inference_model(subnet), seqs, tracker).fitness
        t3 = time.perf_counter()
        print(f"extraction + recalibration {t1 - t0:.2f} s; tracking unfused {t2 - t1:.2f} s (fitness {plain:.3f}), "
              f"fused {t3 - t2:.2f} s (fitness {fused:.3f}): {(t2 - t1) / (t3 - t2):.2f}x")
    return 0


if __name__ == "__main__":
    run_cli(main)
