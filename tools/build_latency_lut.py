#!/usr/bin/env python
"""Build a per-op latency lookup table (LUT) for a search space on this machine.

Every candidate op is timed once at every position (identical layers share one measurement),
plus a linear calibration fitted on a few whole subnets (least squares). Predicted per-frame network
latency = scale x sum along the path + overhead. Check it with: python tools/latency.py --lut LUT --validate 50
"""
from __future__ import annotations

import argparse

import torch
from tqdm import tqdm

from lighttrack_nas.cli import run_cli
from lighttrack_nas.cost.latency import BACKENDS, LatencyTable
from lighttrack_nas.machine import describe_machine
from lighttrack_nas.models import build_supernet, load_space


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="search_spaces/lighttrack_tiny.yaml", help="search space (default: %(default)s)")
    p.add_argument("--device", default="cpu", choices=["cpu"], help="device to time on (default: %(default)s)")
    p.add_argument("--backend", default="torch", choices=BACKENDS,
                   help="runtime the ops are timed in: torch, or onnxruntime (each candidate exported; a few s each) "
                        "(default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads, fixed while timing (default: %(default)s)")
    p.add_argument("--min-run-time", type=float, default=0.05,
                   help="seconds of repeated runs per op after warm-up (default: %(default)s)")
    p.add_argument("--fit-subnets", type=int, default=10,
                   help="random subnets timed whole to fit the scale and overhead (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed for the calibration subnets (default: %(default)s)")
    p.add_argument("--out", required=True, help="output LUT (JSON)")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    torch.manual_seed(0)
    supernet = build_supernet(load_space(args.space))
    with tqdm(desc="timing ops", unit="op") as bar:
        table = LatencyTable.build(supernet, args.threads, args.min_run_time, args.fit_subnets, args.seed,
                                   progress=lambda name: bar.update(1), backend=args.backend)
    table.save(args.out)
    print(f"wrote {args.out}: {len(table.entries)} entries, scale {table.scale:.3f}, overhead {table.overhead * 1e3:.2f} ms "
          f"({describe_machine()}, {args.threads} thread(s) while timing)")
    return 0


if __name__ == "__main__":
    run_cli(main)
