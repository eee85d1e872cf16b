#!/usr/bin/env python
"""The main job on the embedded default (tiny preset, CPU): build the LightTrack supernet of the
tiny space, sample architectures, extract and run their subnets, and print and save their cost
table (MACs per frame, parameters, template MACs) next to LightTrack-Mobile.
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch

from lighttrack_nas.cli import run_cli
from lighttrack_nas.cost import CostTable
from lighttrack_nas.models import build_supernet, load_space


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="search_spaces/lighttrack_tiny.yaml", help="search space (default: %(default)s)")
    p.add_argument("--out", default="runs/demo", help="output directory (default: %(default)s)")
    p.add_argument("--samples", type=int, default=8, help="architectures to sample (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    space = load_space(args.space)
    print(f"space {space.name}: {len(space)} choices, {space.cardinality:.3e} architectures")
    supernet = build_supernet(space).eval()
    print(f"supernet: {sum(p.numel() for p in supernet.parameters()) / 1e6:.2f} M parameters (all candidates)")
    table = CostTable(supernet)
    rng = np.random.default_rng(args.seed)
    archs = [("lighttrack-mobile", space.presets["lighttrack-mobile"])]
    archs += [(f"sample-{i}", space.sample(rng)) for i in range(args.samples)]
    z = torch.randn(1, 3, supernet.template_size, supernet.template_size)
    x = torch.randn(1, 3, supernet.search_size, supernet.search_size)
    rows = []
    print(f"\n{'name':<18}{'MACs (M)':>10}{'params (M)':>12}{'tmpl MACs':>11}{'map':>6}{'ms/frame':>10}  architecture")
    for name, arch in archs:
        cost = table.cost(arch)
        subnet = supernet.extract(arch).eval()
        with torch.inference_mode():
            subnet.template(z)
            subnet.track(x)
            start = time.perf_counter()
            cls, _ = subnet.track(x)
            ms = (time.perf_counter() - start) * 1e3
        side = cls.shape[-1]
        rows.append({"name": name, "macs": cost.macs, "params": cost.params, "template_macs": cost.template_macs,
                     "score_map": side, "ms_per_frame_single_run": round(ms, 2), "arch": str(arch)})
        print(f"{name:<18}{cost.macs / 1e6:>10.2f}{cost.params / 1e6:>12.3f}{cost.template_macs / 1e6:>11.2f}"
              f"{side:>6}{ms:>10.2f}  {arch}")
    with open(out / "costs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"\nwrote {out / 'costs.csv'}")
    return 0


if __name__ == "__main__":
    run_cli(main)
