#!/usr/bin/env python
"""Train a stand-alone baseline tracker: the network of the config's ``model:`` section, whose
``family`` (e.g. ``cnn``) names a registered model class; same data, loss and schedule as the supernet.

  python tools/train_baseline.py --config experiments/cnn_tiny.yaml --out runs/cnn
  torchrun --nproc_per_node 2 tools/train_baseline.py --config ... --out ...   (data parallel)
  the same command with --resume continues from OUT/checkpoint.pt.

Writes OUT/checkpoint.pt (kind = the family, with the model_spec that rebuilds the network; loads in
tools/test.py, tools/latency.py and tools/prune.py), OUT/log.jsonl, OUT/tensorboard/ and OUT/loss.png.
"""
from __future__ import annotations

import argparse
import copy
import logging

from lighttrack_nas.cli import run_cli
from lighttrack_nas.cost.count import count_tracking_model
from lighttrack_nas.train.baseline import BaselineTrainer
from lighttrack_nas.config import load_experiment


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True,
                   help="experiment YAML with a model: section (e.g. experiments/cnn_tiny.yaml)")
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
    trainer = BaselineTrainer(load_experiment(args.config, overrides), args.out, max_iters=args.max_iters,
                              progress=not args.no_progress)
    if trainer.checkpoint_path.exists() and not args.resume:
        raise ValueError(f"{trainer.checkpoint_path} exists: pass --resume to continue it, or choose another --out")
    if args.resume and trainer.resume():
        logging.info("resumed from %s at iteration %d", trainer.checkpoint_path, trainer.iteration)
    if trainer.rank == 0:
        cost = count_tracking_model(copy.deepcopy(trainer.model).cpu())
        logging.info("%s network: %.1f M MACs per frame, %.3f M parameters", trainer.kind, cost.macs / 1e6,
                     cost.params / 1e6)
    checkpoint = trainer.train()
    if trainer.rank == 0:
        print(f"{trainer.kind} checkpoint: {checkpoint} (iteration {trainer.iteration}/{trainer.total}, "
              f"corrupt frames skipped: {trainer.skipped})")
    return 0


if __name__ == "__main__":
    run_cli(main)
