#!/usr/bin/env python
"""Export a subnet to ONNX for deployment, and check ONNX Runtime against PyTorch.

The subnet's fused inference form (lighttrack_nas.deploy.fuse) is exported as two graphs:
  OUT with .template.onnx suffix (e.g. model.template.onnx): z (1,3,T,T) -> template features zf0, zf1
  OUT (e.g. model.onnx): x (1,3,S,S), zf0, zf1 -> cls (1,1,H,W), reg (1,4,H,W), run per frame
Both carry template_size, search_size, stride and arch as metadata; load them with
lighttrack_nas.deploy.onnx.OnnxTrackingModel.load(OUT). The check runs both graphs in ONNX
Runtime on random crops and prints the max abs difference to the PyTorch training form; it exits
with status 1 when that exceeds --tolerance.

--int8 quantises the frame graph (QDQ, per-channel int8 weights, lighttrack_nas.deploy.quantize),
calibrated on --calibration N tracking crops of the --data split --calibration-split; the template
graph stays float. The check then runs on N other crops of that split and compares the int8 graph
with the float one: the share of crops whose classification peak falls on the same cell (exit
status 1 below --int8-agreement) and the mean box-distance error in crop pixels.

examples:
  python tools/export_onnx.py --arch lighttrack-mobile --out exports/lighttrack-mobile.onnx
  python tools/export_onnx.py --checkpoint runs/demo/supernet/checkpoint.pt --arch ARCH \\
      --int8 --calibration 128 --data cache/data_tiny --out exports/subnet-int8.onnx
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from lighttrack_nas.cli import keep_float_option, run_cli

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
    p.add_argument("--int8", action="store_true", help="quantise the frame graph to int8 (needs --data)")
    p.add_argument("--calibration", type=int, default=128, metavar="N",
                   help="tracking crop pairs that calibrate the int8 activation ranges (default: %(default)s)")
    p.add_argument("--data", default=None,
                   help="GOT-10k-layout data root whose --calibration-split gives the calibration crops")
    p.add_argument("--calibration-split", default="train", help="split of --data (default: %(default)s)")
    keep_float_option(p, "with --int8")
    p.add_argument("--int8-agreement", type=float, default=0.9,
                   help="least share of check crops whose int8 classification peak is the float one's "
                        "(default: %(default)s)")
    args = p.parse_args()
    if args.threads < 1:
        p.error("--threads must be >= 1")
    if args.int8 and args.data is None:
        p.error("--int8 needs --data (the calibration crops come from its --calibration-split)")
    if args.keep_float is not None and not args.int8:
        p.error("--keep-float only applies with --int8")
    if args.int8 and args.calibration < 1:
        p.error(f"--calibration {args.calibration}: need at least 1 crop pair")
    return args


def check_int8(model, onnx_model, crops) -> tuple[float, float]:
    """Share of ``crops`` whose classification peak cell is the float model's, and the mean absolute
    box-distance error (crop pixels) at the float peak."""
    same, errors = 0, []
    for z, x in crops:
        with torch.no_grad():
            cls_f, reg_f = model(z, x)
        cls_q, reg_q = onnx_model(z, x)
        peak = int(cls_f.flatten().argmax())
        same += peak == int(cls_q.flatten().argmax())
        errors.append(float((reg_f.flatten(2)[..., peak] - reg_q.flatten(2)[..., peak]).abs().mean()))
    return same / len(crops), float(sum(errors) / len(errors))


def main() -> int:
    from lighttrack_nas.deploy import fuse
    from lighttrack_nas.deploy.onnx import OnnxTrackingModel, export_onnx
    from lighttrack_nas.models import load_tracking_model

    args = parse_args()
    torch.manual_seed(args.seed)
    space = args.space or (None if args.checkpoint else ROOT / "search_spaces" / "lighttrack.yaml")
    model = load_tracking_model(args.checkpoint, args.arch, space)
    calibration = check = None
    if args.int8:
        from lighttrack_nas.data.readers import open_dataset
        from lighttrack_nas.deploy.quantize import calibration_crops

        sequences = open_dataset("got10k", args.data, args.calibration_split)
        calibration = calibration_crops(sequences, model.template_size, model.search_size, args.calibration)
        check = calibration_crops(sequences, model.template_size, model.search_size, args.calibration,
                                  seed=args.seed + 1)
    paths = export_onnx(fuse(model), args.out, calibration, args.keep_float)
    print(f"wrote {paths[0]} (template branch) and {paths[1]} (per-frame branch{', int8' if args.int8 else ''})")
    onnx_model = OnnxTrackingModel.load(args.out, threads=args.threads)
    if check is not None:
        agreement, error = check_int8(model, onnx_model, check)
        ok = agreement >= args.int8_agreement
        print(f"int8 vs PyTorch float on {len(check)} held-out crops: same classification peak on {agreement:.1%}, "
              f"mean box-distance error {error:.2f} px ({'ok' if ok else 'FAILED'}, --int8-agreement "
              f"{args.int8_agreement:g})")
        if not ok:
            print(f"error: int8 peak agreement {agreement:.1%} is below --int8-agreement {args.int8_agreement:g}",
                  file=sys.stderr)
        return 0 if ok else 1
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
