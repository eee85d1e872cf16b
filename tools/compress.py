#!/usr/bin/env python
"""Compress a trained ViT tracker (a tools/train_baseline.py ``vit`` checkpoint) into a shallower one.

  python tools/compress.py --method compresstracker --teacher runs/vit_tiny/checkpoint.pt --layers 4 \\
      --out runs/vit_tiny_ct4
  --method compresstracker   CompressTracker (Hong et al. 2024): the teacher's layers are divided into
                             --layers equal stages, student layer i starts from stage i's last teacher
                             layer and replaces it; trained with replacement training, prediction
                             guidance and stage-wise feature mimicking (the config's compress: section)
  --no-replacement / --no-guidance / --no-mimic   switch a part off (the ablation; docs/compresstracker.md)
  --resume                   continue an interrupted run in OUT (a finished one is reported, not redone)

Writes OUT/checkpoint.pt (kind vit, the student's model_spec: loads as any vit checkpoint, e.g. in
tools/test.py and tools/latency.py), OUT/compress.json (stages, switches, teacher vs student MACs/params/latency) and the
training logs (log.jsonl, tensorboard/, loss.png).
"""
from __future__ import annotations

import argparse
import logging

from lighttrack_nas.cli import run_cli
from lighttrack_nas.compress.compresstracker import METHOD, compress_checkpoint
from lighttrack_nas.config import load_experiment

METHODS = (METHOD,)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", choices=METHODS, required=True, help="compression method (one today; others plug in here)")
    p.add_argument("--teacher", required=True, help="checkpoint of the ViT to compress (holds a vit model_spec)")
    p.add_argument("--layers", type=int, required=True,
                   help="student layers; must divide the teacher's depth (12: 1, 2, 3, 4, 6 or 12)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--config", default="experiments/compress_vit_tiny.yaml",
                   help="experiment YAML with a compress: section (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT")
    p.add_argument("--max-iters", type=int, default=None,
                   help="stop after this many iterations in total (the schedule still spans the full run)")
    p.add_argument("--no-replacement", action="store_true",
                   help="train the plain student (every stage runs its student layer) instead of replacement")
    p.add_argument("--no-guidance", action="store_true", help="no prediction guidance (student vs teacher boxes)")
    p.add_argument("--no-mimic", action="store_true", help="no stage-wise feature mimicking")
    p.add_argument("--device", default=None, help="override the config's device: auto, cpu or cuda")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs still written)")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    switches = {key: False for key in ("replacement", "guidance", "mimic") if getattr(args, f"no_{key}")}
    overrides = {"compress": switches, **({"device": args.device} if args.device else {})}
    cfg = load_experiment(args.config, overrides)
    report = compress_checkpoint(cfg, args.teacher, args.out, args.layers, args.resume,
                                 progress=not args.no_progress, max_iters=args.max_iters)
    t, s, training = report["teacher"], report["student"], report["training"]
    print(f"{report['method']}: {t['layers']} -> {s['layers']} layers, MACs {t['macs'] / 1e6:.1f} M -> "
          f"{s['macs'] / 1e6:.1f} M ({report['ratio']['macs']:.3f}), params {t['params'] / 1e6:.3f} M -> "
          f"{s['params'] / 1e6:.3f} M, latency {t['latency_ms']:.2f} ms -> {s['latency_ms']:.2f} ms "
          f"({report['ratio']['speedup']:.2f}x)")
    if training["done"] < training["iterations"]:
        print(f"stopped at iteration {training['done']}/{training['iterations']}: --resume continues; "
              f"checkpoint: {report['checkpoint']}")
    else:
        print(f"checkpoint: {report['checkpoint']}; report: {args.out}/compress.json")
    return 0


if __name__ == "__main__":
    run_cli(main)
