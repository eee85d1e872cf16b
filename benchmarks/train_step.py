#!/usr/bin/env python
"""Time training iterations side by side: contiguous (NCHW) vs channels-last tensors.

  python benchmarks/train_step.py --config experiments/supernet_tiny.yaml --iters 20 --threads 1
  python benchmarks/train_step.py --config experiments/cnn_tiny.yaml      # any family with a model: section

Builds the config's trainer twice in one process (the supernet's, or the baseline family's when the
config has a model: section; same seed, same sampled paths), feeds both the same batch of training
pairs (data loading excluded) and times the trainer's own iterations (`Trainer.iterate`: sampled
path, batch layout, forward, loss, backward, optimiser step). Prints median seconds per iteration, samples/s and
the speed-up of channels-last, and writes them as JSON with --json.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from lighttrack_nas.cli import run_cli
from lighttrack_nas.io import write_json
from lighttrack_nas.train import SupernetTrainer
from lighttrack_nas.config import load_experiment
from lighttrack_nas.train.baseline import BaselineTrainer


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="experiment YAML (a supernet's, or a family's with a model: section)")
    p.add_argument("--iters", type=int, default=20, help="timed iterations per memory format (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations first (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default: %(default)s)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    return p.parse_args()


def time_iterations(cfg: dict, channels_last: bool, iters: int, warmup: int) -> list[float]:
    """Seconds per training iteration of the config's network on one fixed batch."""
    cfg = {**cfg, "train": {**cfg["train"], "channels_last": channels_last}, "data": {**cfg["data"], "workers": 0}}
    with tempfile.TemporaryDirectory() as out:
        trainer = (BaselineTrainer if "model" in cfg else SupernetTrainer)(cfg, out, progress=False)
        items = [trainer.dataset[i] for i in range(cfg["train"]["batch_size"])]
        batch = {k: torch.stack([item[k] for item in items]) for k in ("template", "search", "search_box")}
        trainer.model.train()
        times = []
        for _ in range(warmup + iters):
            start = time.perf_counter()
            trainer.iterate(batch)
            times.append(time.perf_counter() - start)
    return times[warmup:]


def main() -> int:
    args = parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_experiment(args.config)
    batch = cfg["train"]["batch_size"]
    report = {"config": args.config, "threads": args.threads, "batch_size": batch, "iters": args.iters,
              "torch": torch.__version__}
    for name, channels_last in (("contiguous", False), ("channels_last", True)):
        median = statistics.median(time_iterations(cfg, channels_last, args.iters, args.warmup))
        report[name] = {"s_per_iter": median, "samples_per_s": batch / median}
        print(f"{name:<14} {median:.3f} s/iteration  {batch / median:6.1f} samples/s", flush=True)
    report["speedup"] = report["contiguous"]["s_per_iter"] / report["channels_last"]["s_per_iter"]
    print(f"channels-last speed-up: {report['speedup']:.2f}x")
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    run_cli(main)
