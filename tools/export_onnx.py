#!/usr/bin/env python
"""Export a subnet to ONNX for deployment, and check ONNX Runtime against PyTorch.

The subnet's fused inference form (lighttrack_nas.deploy.fuse) is exported as two graphs:
  OUT with .template.onnx suffix (e.g. model.template.onnx): z (1,3,T,T) -> template features zf0, zf1
  OUT (e.g. model.onnx): x (1,3,S,S), zf0, zf1 -> cls (1,1,H,W), reg (1,4,H,W), run per frame
Both carry template_size, search_size, stride and arch as metadata; load them with
lighttrack_nas.deploy.onnx.OnnxTrackingModel.load(OUT). The check runs both graphs in ONNX
Runtime on random crops and prints the max abs difference to the PyTorch training form; it exits
with status 1 when that exceeds --tolerance.

example:
  python tools/export_onnx.py --arch lighttrack-mobile --out exports/lighttrack-mobile.onnx
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from lighttrack_nas.cli import run_cli

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default=None,
                   help="architecture (preset, compact or published string); needed with a supernet checkpoint "
                        "or without a checkpoint")
    p.add_argument("--space", default=None,
                   help="search-space YAML (default: the checkpoint's own space; search_spaces/lighttrack.yaml "
                        "without a checkpoint)")
    p.add_argument("--checkpoint", default=None,
                   help="supernet or subnet checkpoint (.pt); omit for random weights (seeded by --seed)")
    p.add_argument("--out", required=True, help="frame graph path, e.g. model.onnx (the template graph goes beside it)")
    p.add_argument("--seed", type=int, default=0, help="seed of random weights and check inputs (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads for the check (default: %(default)s)")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="largest accepted max abs difference to PyTorch (default: %(default)s)")
    args = p.parse_args()
    if args.threads < 1:
        p.error("--threads must be >= 1")
    return args


def main() -> int:
    from lighttrack_nas.deploy import fuse
    from lighttrack_nas.deploy.onnx import OnnxTrackingModel, export_onnx
    from lighttrack_nas.models import load_tracking_model

    args = parse_args()
    torch.manual_seed(args.seed)
    space = args.space or (None if args.checkpoint else ROOT / "search_spaces" / "lighttrack.yaml")
    model = load_tracking_model(args.checkpoint, args.arch, space)
    paths = export_onnx(fuse(model), args.out)
    print(f"wrote {paths[0]} (template branch) and {paths[1]} (per-frame branch)")
    onnx_model = OnnxTrackingModel.load(args.out, threads=args.threads)
    z = torch.randn(1, 3, model.template_size, model.template_size)
    x = torch.randn(1, 3, model.search_size, model.search_size)
    with torch.no_grad():
        expected = model(z, x)
    got = onnx_model(z, x)
    diffs = {name: float((a - b).abs().max()) for name, a, b in zip(("cls", "reg"), expected, got)}
    worst = max(diffs.values())
    print(f"ONNX Runtime vs PyTorch (training form), max abs difference: cls {diffs['cls']:.2e}, "
          f"reg {diffs['reg']:.2e} ({'ok' if worst <= args.tolerance else 'FAILED'}, tolerance {args.tolerance:g})")
    if worst > args.tolerance:
        print(f"error: max abs difference {worst:.2e} exceeds --tolerance {args.tolerance:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_cli(main)
