#!/usr/bin/env python
"""Retrain a found architecture stand-alone, then evaluate it on the test split.

From scratch:        python tools/retrain.py --config experiments/retrain_tiny.yaml \\
                         --arch runs/search/best.json --out runs/retrain
From the supernet:   python tools/retrain.py --config experiments/retrain_tiny.yaml \\
                         --arch runs/search/best.json --init supernet --supernet runs/supernet/checkpoint.pt \\
                         --out runs/retrain-inherited
Resume:              the same command with --resume continues from OUT/checkpoint.pt (on a finished
                     run it only evaluates again, e.g. with another --tracker).
Data parallel:       torchrun --nproc_per_node 2 tools/retrain.py ... (rank 0 evaluates)

Writes OUT/checkpoint.pt (kind "subnet": weights, space, arch, init; atomically, every
train.checkpoint_every iterations and at the end), OUT/log.jsonl, OUT/tensorboard/, OUT/loss.png
and OUT/eval.json: AO, SR0.5, SR0.75, success AUC, precision (20 px and normalised), fps,
MACs, params, arch, init and the training budget (iterations x batch).
"""
from __future__ import annotations

import argparse
import logging

from lighttrack_nas.cli import run_cli
from lighttrack_nas.workflows.retrain import retrain


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="experiment YAML (e.g. experiments/retrain_tiny.yaml)")
    p.add_argument("--arch", required=True,
                   help="architecture: a preset name, compact string, JSON object or LightTrack string, or a "
                        "search's best.json (its best.arch is taken)")
    p.add_argument("--out", required=True, help="output directory for checkpoint, logs, plots and eval.json")
    p.add_argument("--init", choices=("scratch", "supernet"), default="scratch",
                   help="scratch: random initialisation from the config's seed; supernet: the subnet's weights "
                        "inherited from --supernet (default: %(default)s)")
    p.add_argument("--supernet", default=None, metavar="CKPT",
                   help="trained supernet checkpoint (tools/train_supernet.py); required by --init supernet, "
                        "whose search space is then used")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.pt (same --arch and --init); without it an existing "
                        "checkpoint is never overwritten")
    p.add_argument("--max-iters", type=int, default=None,
                   help="stop after this many iterations in total (the schedule still spans the full config); "
                        "the partly trained subnet is evaluated, and --resume finishes it")
    p.add_argument("--seed", type=int, default=None, help="override the config's seed (initialisation and data)")
    p.add_argument("--device", default=None, help="override the config's training device: auto, cpu or cuda")
    p.add_argument("--tracker", default=None, metavar="YAML",
                   help="tracker hyper-parameters for the evaluation (default: the config's tracker:, "
                        "else the built-in defaults)")
    p.add_argument("--split", default="test",
                   help="data split to evaluate on, as named in the config's data section (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs still written)")
    args = p.parse_args()
    if args.max_iters is not None and args.max_iters < 1:
        p.error("--max-iters must be >= 1")
    return args


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report = retrain(args.config, args.arch, args.out, init=args.init, supernet=args.supernet, resume=args.resume,
                     max_iters=args.max_iters, seed=args.seed, device=args.device, tracker=args.tracker,
                     split=args.split, progress=not args.no_progress)
    if report is None:  # not rank 0
        return 0
    r = report
    stopped = "" if r["iterations"] == r["schedule_iterations"] else " (stopped early: --resume finishes it)"
    print(f"subnet {r['arch']} (init: {r['init']})\n"
          f"trained {r['iterations']}/{r['schedule_iterations']} iterations x batch {r['batch_size']}{stopped}; "
          f"{r['macs'] / 1e6:.2f} M MACs, {r['params'] / 1e6:.3f} M params\n"
          f"{r['split']} ({r['sequences']} sequences): AO {r['ao']:.3f}  SR0.5 {r['sr50']:.3f}  "
          f"SR0.75 {r['sr75']:.3f}  AUC {r['success_auc']:.3f}  P@20 {r['precision20']:.3f}\n"
          f"checkpoint: {r['checkpoint']}; report: {args.out}/eval.json")
    return 0


if __name__ == "__main__":
    run_cli(main)
