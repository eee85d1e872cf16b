#!/usr/bin/env python
"""Join two comparisons into issue 29's 2x2 of starting weights x method (docs/compare.md).

  python tools/compare.py --config experiments/compare_tiny.yaml --out runs/compare_tiny --seeds 0
  python tools/compare.py --config experiments/compare_scratch_tiny.yaml --out runs/compare_scratch --seeds 0
  python tools/compare_2x2.py --imagenet runs/compare_tiny --scratch runs/compare_scratch --out runs/2x2

Each run pairs its NAS subnets with its pruned family at matched MACs (OUT/matched.json, written with
its report). This puts the two rows' margins (NAS - pruned AO, 95 % interval over seeds x test
sequences) side by side per budget, refuses rows whose trackers do not start as named (every training
phase is recorded with whether it descends from ImageNet weights) or that tracked different test
splits, and states the claim by the rule of benchmarks/issue29/README.md: NAS beats pruning only if
ahead within both rows at a majority of budgets. Writes OUT/2x2.md and OUT/2x2.json.
"""
from __future__ import annotations

import argparse

from lighttrack_nas.cli import run_cli
from lighttrack_nas.workflows.compare import join_2x2


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--imagenet", required=True,
                   help="comparison folder whose supernet and pruned family start from ImageNet weights")
    p.add_argument("--scratch", required=True,
                   help="comparison folder whose supernet and pruned family start from random weights")
    p.add_argument("--imagenet-family", default="largest",
                   help="the pruned family of the ImageNet row (default: largest; lite0 in compare_all_tiny)")
    p.add_argument("--scratch-family", default="largest",
                   help="the pruned family of the random row (default: largest; lite0_scratch in compare_all_tiny)")
    p.add_argument("--out", required=True, help="folder for 2x2.md and 2x2.json")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    record = join_2x2(args.imagenet, args.scratch, args.out, args.imagenet_family, args.scratch_family)
    print(f"claim: {record['claim']}")
    print(f"{args.out}/2x2.md, {args.out}/2x2.json")
    return 0


if __name__ == "__main__":
    run_cli(main)
