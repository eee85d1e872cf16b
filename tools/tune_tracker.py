#!/usr/bin/env python
"""Tune the tracker's penalty_k, window_influence and lr for one subnet on the val split (Ray Tune).

  python tools/tune_tracker.py --config experiments/search_tiny.yaml --supernet runs/supernet/checkpoint.pt \\
      --arch "$(python -c 'import json; print(json.load(open("runs/search/best.json"))["best"]["arch"])')" \\
      --out runs/tune --samples 32 --workers 2

Uniform random search over penalty_k [0, 0.3], window_influence [0.1, 0.7], lr [0.1, 1.0]; the
base setting (--tracker, else the config's tracker:) is always the first trial. With --supernet
the subnet inherits the supernet's weights and gets its BatchNorm recalibrated (search.calibration_images
training crops); with --checkpoint a stand-alone subnet checkpoint is used as it is.
Writes OUT/tracker.yaml (for --config of tools/test.py or --tracker of tools/search.py), OUT/trials.csv
and OUT/tune.json. Needs Ray: pip install 'ray[tune]'.
"""
from __future__ import annotations

import argparse

from lighttrack_nas.cli import run_cli
from lighttrack_nas.data.sources import load_split
from lighttrack_nas.models import load_supernet, load_tracking_model
from lighttrack_nas.data.pairs import calibration_batches
from lighttrack_nas.search.fitness import recalibrate_batchnorm
from lighttrack_nas.search.settings import SearchSettings
from lighttrack_nas.search.tuning import tune_tracker, write_tuning
from lighttrack_nas.tracker import TrackerConfig, tracker_settings
from lighttrack_nas.config import load_experiment


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="experiment YAML (data, tracker: and search: sections)")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--supernet", help="supernet checkpoint: the subnet of --arch with inherited weights")
    model.add_argument("--checkpoint", help="stand-alone subnet checkpoint (kind: subnet)")
    p.add_argument("--arch", help="architecture (compact, published back_..., JSON or preset); needed with --supernet")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--samples", type=int, default=32, help="trials, the base setting included (default: %(default)s)")
    p.add_argument("--workers", type=int, help="concurrent trials on a local Ray (default: all CPUs)")
    p.add_argument("--ray-address", help="join this Ray cluster instead of starting a local one")
    p.add_argument("--split", default=None, help="split to tune on (default: the config's search.split)")
    p.add_argument("--sequences", type=int, default=None, help="first K sequences (default: search.val_sequences)")
    p.add_argument("--tracker", help="base tracker YAML (default: the config's tracker:, else defaults)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    args = p.parse_args()
    if args.supernet and not args.arch:
        p.error("--supernet needs --arch")
    return args


def main() -> int:
    args = parse_args()
    cfg = load_experiment(args.config)
    settings = SearchSettings.from_config(cfg.get("search"), f"{args.config}: search")
    split = args.split or settings.split
    sequences = load_split(cfg["data"], split, args.sequences or settings.val_sequences)
    if args.supernet:
        supernet = load_supernet(args.supernet)
        arch = supernet.space.decode(args.arch)
        batches = calibration_batches(load_split(cfg["data"], "train"), supernet.template_size, supernet.search_size,
                                      settings.calibration_images, settings.calibration_batch)
        model = recalibrate_batchnorm(supernet.extract(arch), batches)
    else:
        model = load_tracking_model(args.checkpoint, args.arch)
    base = TrackerConfig.from_dict(tracker_settings(cfg, args.tracker))
    result = tune_tracker(model, sequences, base, args.samples, args.out, args.workers, args.ray_address, args.seed)
    path = write_tuning(result, args.out, {"config": args.config, "model": args.supernet or args.checkpoint,
                                           "arch": model.arch, "split": split, "sequences": len(sequences)})
    b, s = result.best, result.scores
    print(f"{len(result.trials)} trials on {len(sequences)} {split} sequences: fitness {s['fitness']:.4f} "
          f"(AO {s['ao']:.3f}, SR0.5 {s['sr50']:.3f}) vs base {result.base_scores['fitness']:.4f}")
    print(f"best: penalty_k {b.penalty_k:.4f}, window_influence {b.window_influence:.4f}, lr {b.lr:.4f} -> {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
