#!/usr/bin/env python
"""Train the weight-sharing supernet of an experiment config (single-path one-shot).

Single process:   python tools/train_supernet.py --config experiments/supernet_tiny.yaml --out runs/supernet
Data parallel:    torchrun --nproc_per_node 2 tools/train_supernet.py --config ... --out ...
                  (gloo on CPU, nccl on GPU; every rank trains the same sampled path each iteration)
Resume:           the same command with --resume continues from OUT/checkpoint.pt.

Writes OUT/checkpoint.pt (atomically, every train.checkpoint_every iterations and at the end),
OUT/log.jsonl (loss parts, learning rate, samples/s), OUT/tensorboard/ and OUT/loss.png.
"""
from __future__ import annotations

import argparse
import logging

from lighttrack_nas.cli import run_cli
from lighttrack_nas.train import SupernetTrainer
from lighttrack_nas.config import load_experiment


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="experiment YAML (e.g. experiments/supernet_tiny.yaml)")
    p.add_argument("--out", required=True, help="output directory for checkpoint, logs and plots")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if it exists")
    p.add_argument("--max-iters", type=int, default=None,
                   help="stop after this many iterations in total (the schedule still spans the full config)")
    p.add_argument("--seed", type=int, default=None, help="override the config's seed")
    p.add_argument("--device", default=None, help="override the config's device: auto, cpu or cuda")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs still written)")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    overrides = {k: v for k, v in (("seed", args.seed), ("device", args.device)) if v is not None}
    trainer = SupernetTrainer(load_experiment(args.config, overrides), args.out, args.max_iters,
                              progress=not args.no_progress)
    if trainer.checkpoint_path.exists() and not args.resume:
        raise ValueError(f"{trainer.checkpoint_path} exists: pass --resume to continue it, or choose another --out")
    if args.resume and trainer.resume():
        logging.info("resumed from %s at iteration %d", trainer.checkpoint_path, trainer.iteration)
    checkpoint = trainer.train()
    if trainer.rank == 0:
        print(f"supernet checkpoint: {checkpoint} (iteration {trainer.iteration}/{trainer.total}, "
              f"corrupt frames skipped: {trainer.skipped})")
    return 0


if __name__ == "__main__":
    run_cli(main)
