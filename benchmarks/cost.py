#!/usr/bin/env python
"""Benchmark the cost model: per-op table build time, costing N random architectures with the
table, and the full fvcore count of extracted subnets for comparison (same run, same machine)."""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from lighttrack_nas.cli import run_cli
from lighttrack_nas.cost import CostTable, count_tracking_model
from lighttrack_nas.machine import describe_machine
from lighttrack_nas.models import build_supernet, load_space


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--space", default="search_spaces/lighttrack.yaml", help="search space (default: %(default)s)")
    p.add_argument("--archs", type=int, default=10000, help="architectures costed with the table (default: %(default)s)")
    p.add_argument("--full", type=int, default=20, help="architectures also counted in full with fvcore (default: %(default)s)")
    args = p.parse_args()
    torch.set_num_threads(1)
    space = load_space(args.space)
    supernet = build_supernet(space)
    start = time.perf_counter()
    table = CostTable(supernet)
    build_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(args.archs)]
    start = time.perf_counter()
    costs = [table.cost(a) for a in archs]
    table_s = time.perf_counter() - start
    start = time.perf_counter()
    mismatches = sum(count_tracking_model(supernet.extract(a)).macs != c.macs for a, c in zip(archs[:args.full], costs))
    full_s = (time.perf_counter() - start) / args.full
    per_arch = table_s / args.archs
    print(f"machine: {describe_machine()}")
    print(f"space {space.name}: table build {build_s:.2f} s ({len(table.macs_table.memo)} distinct fvcore counts)")
    print(f"table: {args.archs} architectures in {table_s:.2f} s ({per_arch * 1e6:.1f} us each)")
    print(f"full fvcore count: {full_s * 1e3:.0f} ms per architecture (extract + trace), "
          f"{full_s / per_arch:.0f}x slower; mismatches in {args.full}: {mismatches}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    run_cli(main)
