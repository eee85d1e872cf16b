#!/usr/bin/env python
"""Prune a stand-alone tracker (a tools/train_baseline.py checkpoint of family cnn, lighttrack_net, vit or hybrid) to
a budget, physically removing what is pruned, then fine-tune it.

  python tools/prune.py --config experiments/prune_cnn_tiny.yaml --checkpoint runs/cnn/checkpoint.pt \\
      --budget 0.25 --out runs/cnn_prune25
  python tools/prune.py --config experiments/prune_vit_tiny.yaml --checkpoint runs/vit/checkpoint.pt \\
      --budget 0.05 --criterion torch-pruning --out runs/vit_prune5_tp
  --budget B          fraction of the dense MACs (--budget-kind macs) or parameters to keep, e.g. 0.75 .. 0.01
  --criterion         per family (default: the config's prune.criterion, else the family's default):
                      cnn, lighttrack_net:
                              slimming (default): sparsity training (L1 on BatchNorm scales, prune.sparsity.l1)
                              then prune channels by BatchNorm scale; magnitude: by filter L1/L2 norm (prune.norm)
                      vit:    vit-slim (default): sparsity training of ViT-Slim soft masks (head dimensions, MLP
                              neurons, embedding; prune.sparsity.attn_l1/mlp_l1/embed_l1) and tower BatchNorm
                              scales, then a threshold over them (prune.scope, prune.layer_scope_below);
                              torch-pruning: head dimensions/heads, MLP neurons, embedding and tower channels by
                              weight magnitude (prune.norm), iteratively
                      hybrid: vit-slim (default): as the vit's, plus the CNN backbone's BatchNorm scales
  --resume            continue an interrupted run in OUT (finished phases are not redone)

Writes OUT/checkpoint.pt (the pruned, fine-tuned tracker: loads in tools/test.py and tools/latency.py),
OUT/pruned.pt (before fine-tuning), OUT/sparsity/ (slimming, vit-slim), OUT/prune.json and the training
logs. A budget below what the minimum widths allow (prune.min_width, prune.min_width_layers; for vit and
hybrid also prune.min_head_dim, prune.min_mlp, prune.min_embed) stops with an error naming the smallest
achievable cost, before any training.
"""
from __future__ import annotations

import argparse
import logging

from lighttrack_nas.cli import run_cli
from lighttrack_nas.compress import BUDGET_KINDS, FAMILY_CRITERIA, prune_checkpoint
from lighttrack_nas.config import load_experiment


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True,
                   help="experiment YAML with a prune: section (e.g. experiments/prune_cnn_tiny.yaml)")
    p.add_argument("--checkpoint", required=True,
                   help="dense checkpoint holding a model_spec (tools/train_baseline.py)")
    p.add_argument("--budget", type=float, required=True, help="fraction of the dense cost to keep, in (0, 1]")
    p.add_argument("--budget-kind", choices=BUDGET_KINDS, default=None, help="default: the config's prune.budget_kind")
    p.add_argument("--criterion", choices=sorted({c for cs in FAMILY_CRITERIA.values() for c in cs}), default=None,
                   help="pruning method, one of the model family's (see above); default: the config's "
                        "prune.criterion, else the family's default")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT")
    p.add_argument("--device", default=None, help="override the config's device: auto, cpu or cuda")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs still written)")
    args = p.parse_args()
    if not 0 < args.budget <= 1:
        p.error(f"--budget {args.budget}: expected a fraction in (0, 1]")
    return args


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_experiment(args.config, {"device": args.device} if args.device else None)
    report = prune_checkpoint(cfg, args.checkpoint, args.out, args.budget, args.budget_kind, args.criterion,
                              args.resume, progress=not args.no_progress)
    dense, pruned = report["dense"], report["pruned"]
    print(f"pruned {report['criterion']} to {report['budget']:g} of the dense {report['budget_kind']}: "
          f"MACs {dense['macs'] / 1e6:.2f} M -> {pruned['macs'] / 1e6:.2f} M ({report['achieved']['macs']:.3f}), "
          f"params {dense['params'] / 1e6:.3f} M -> {pruned['params'] / 1e6:.3f} M "
          f"({report['achieved']['params']:.3f}), "
          f"latency {dense['latency_ms']:.2f} ms -> {pruned['latency_ms']:.2f} ms")
    print(f"checkpoint: {report['checkpoint']}; report: {args.out}/prune.json")
    return 0


if __name__ == "__main__":
    run_cli(main)
