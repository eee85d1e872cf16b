#!/usr/bin/env python
"""MACs and parameters of architectures in a search space (LightTrack's counting convention).

One multiply-add counts as one FLOP; per-frame cost = search branch + neck + head with the
template features cached; the template branch is reported separately (template_macs).
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from lighttrack_nas.cli import run_cli
from lighttrack_nas.cost import CostTable, count_tracking_model
from lighttrack_nas.models import build_supernet, load_space
from lighttrack_nas.space import get_format


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="search_spaces/lighttrack.yaml", help="search-space YAML (default: %(default)s)")
    p.add_argument("--arch", action="append", default=[],
                   help="a preset name (e.g. lighttrack-mobile), a compact architecture string, a published "
                        "LightTrack string (back_...) or JSON; repeat for several")
    p.add_argument("--sample", type=int, default=0, metavar="N", help="also cost N uniformly sampled architectures")
    p.add_argument("--seed", type=int, default=0, help="seed for --sample (default: %(default)s)")
    p.add_argument("--full", action="store_true",
                   help="count each architecture's extracted subnet with fvcore instead of the per-op table "
                        "(slower; the two agree exactly)")
    p.add_argument("--json", action="store_true", help="print JSON: one object for one architecture, else a list")
    args = p.parse_args()
    if not args.arch and not args.sample:
        p.error("give --arch and/or --sample N")
    return args


def main() -> int:
    args = parse_args()
    space = load_space(args.space)
    archs = [space.decode(a) for a in args.arch]
    rng = np.random.default_rng(args.seed)
    archs += [space.sample(rng) for _ in range(args.sample)]
    supernet = build_supernet(space)
    table = None if args.full else CostTable(supernet)
    rows = []
    for arch in archs:
        cost = count_tracking_model(supernet.extract(arch)) if args.full else table.cost(arch)
        row = {"arch": str(arch), **cost.to_dict()}
        if "lighttrack" in space.formats:
            row["published"] = get_format("lighttrack").encode(arch)
        rows.append(row)
    if args.json:
        print(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
        return 0
    for row in rows:
        print(f"\n{row['arch']}")
        if "published" in row:
            print(f"  published form: {row['published']}")
        print(f"  {'part':<10}{'MACs (M)':>12}{'params (M)':>12}")
        for part, c in row["parts"].items():
            print(f"  {part:<10}{c['macs'] / 1e6:>12.2f}{c['params'] / 1e6:>12.3f}")
        print(f"  {'per frame':<10}{row['macs'] / 1e6:>12.2f}{row['params'] / 1e6:>12.3f}")
        print(f"  {'template':<10}{row['template_macs'] / 1e6:>12.2f}   (once per sequence, cached)")
    return 0


if __name__ == "__main__":
    run_cli(main)
