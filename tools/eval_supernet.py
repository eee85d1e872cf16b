#!/usr/bin/env python
"""How well does a trained supernet's weight sharing work? Tracks the val split with the largest
and a median-size subnet (inherited weights, BatchNorm recalibrated on training crops), the same
subnets of the untrained supernet (same seed), and the "box stays where it started" baseline.

python tools/eval_supernet.py --config experiments/supernet_tiny.yaml --supernet runs/supernet/checkpoint.pt
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from lighttrack_nas.cli import run_cli
from lighttrack_nas.cost import CostTable
from lighttrack_nas.data.sources import load_split
from lighttrack_nas.models import build_supernet, load_supernet
from lighttrack_nas.search.fitness import (SubnetEvaluator, calibration_batches, reference_architectures,
                                           static_baseline)
from lighttrack_nas.tracker import TrackerConfig
from lighttrack_nas.train import experiment_space, load_experiment


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
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_experiment(args.config)
    trained = load_supernet(args.supernet)
    space = trained.space
    torch.manual_seed(int(cfg.get("seed", 0)))
    untrained = build_supernet(experiment_space(cfg))
    sequences = load_split(cfg["data"], args.split, args.sequences)
    calibration = calibration_batches(load_split(cfg["data"], "train"), trained.template_size, trained.search_size,
                                      args.calibration_images)
    tracker = TrackerConfig.from_yaml(args.tracker)
    table = CostTable(trained)
    archs = reference_architectures(space, table.macs)
    archs.update({f"arch{i}": space.decode(a) for i, a in enumerate(args.arch)})
    report = {"split": args.split, "sequences": len(sequences), "static_baseline": static_baseline(sequences).to_dict()}
    for name, arch in archs.items():
        row = {"arch": str(arch), "macs": table.macs(arch), "params": table.params(arch)}
        for label, net in (("trained", trained), ("untrained", untrained)):
            row[label] = SubnetEvaluator(net, calibration, sequences, tracker).score(arch).to_dict()
            print(f"{name:<8} {label:<9} AO {row[label]['ao']:.3f}  SR0.5 {row[label]['sr50']:.3f}  "
                  f"SR0.75 {row[label]['sr75']:.3f}  ({row['macs'] / 1e6:.1f} M MACs)", flush=True)
        row["ao_gain"] = row["trained"]["ao"] / max(row["untrained"]["ao"], 1e-9)
        report[name] = row
    print(f"static baseline  AO {report['static_baseline']['ao']:.3f}  SR0.5 {report['static_baseline']['sr50']:.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: (v["trained"]["ao"], v["untrained"]["ao"]) if isinstance(v, dict) and "trained" in v else v
                      for k, v in report.items() if k != "static_baseline"}))
    return 0


if __name__ == "__main__":
    run_cli(main)
