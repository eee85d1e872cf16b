#!/usr/bin/env python
"""How well does a trained supernet's weight sharing work? Tracks the val split with the largest
and a median-size subnet (inherited weights, BatchNorm recalibrated on training crops), the same
subnets of the untrained supernet (same seed), and the "box stays where it started" baseline.

python tools/eval_supernet.py --config experiments/supernet_tiny.yaml --supernet runs/supernet/checkpoint.pt
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from lighttrack_nas.cli import run_cli
from lighttrack_nas.io import write_json
from lighttrack_nas.workflows.stages import stage_evaluate
from lighttrack_nas.config import load_experiment


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="the experiment YAML the supernet was trained with")
    p.add_argument("--supernet", required=True, help="supernet checkpoint (from tools/train_supernet.py)")
    p.add_argument("--split", default="val", help="data split to track (default: %(default)s)")
    p.add_argument("--sequences", type=int, default=None, help="use only the first K sequences")
    p.add_argument("--calibration-images", type=int, default=256,
                   help="training pairs for BatchNorm recalibration (default: %(default)s)")
    p.add_argument("--tracker", default="experiments/tracker.yaml", help="tracker hyper-parameters (default: %(default)s)")
    p.add_argument("--arch", action="append", default=[], help="extra architectures to score (repeatable)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--out", help="write the report as JSON here too")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_experiment(args.config)
    report = stage_evaluate(cfg, Path(args.supernet), args.tracker, args.calibration_images, args.sequences,
                            args.split, {f"arch{i}": text for i, text in enumerate(args.arch)})
    print(f"{report['sequences']} {args.split} sequences; static baseline: AO {report['static_baseline']['ao']:.3f}, "
          f"SR0.5 {report['static_baseline']['sr50']:.3f}")
    for name, row in report.items():
        if isinstance(row, dict) and "trained" in row:
            print(f"{name:<8} AO {row['trained']['ao']:.3f} trained, {row['untrained']['ao']:.3f} untrained "
                  f"({row['ao_gain']:.1f}x), SR0.5 {row['trained']['sr50']:.3f}, {row['macs'] / 1e6:.1f} M MACs  "
                  f"[{row['arch']}]")
    if args.out:
        write_json(args.out, report)
    return 0


if __name__ == "__main__":
    run_cli(main)
