#!/usr/bin/env python
"""Run the tracker over a data set and write result files (score them with tools/eval.py).

The model is the subnet ``--arch`` of the search space ``--space`` with weights from
``--checkpoint`` (a supernet checkpoint needs --arch; a subnet checkpoint holds its own
architecture; without a checkpoint the weights are random, which is only good for timing).

Results, one x,y,w,h row per frame (first frame = the ground-truth box, %.3f, comma separated):
  --format got10k: OUT/NAME/<seq>/<seq>_001.txt and OUT/NAME/<seq>/<seq>_time.txt (seconds/frame)
  --format otb:    OUT/NAME/<seq>.txt and OUT/NAME/<seq>_time.txt
Each file is written atomically once its sequence is done.

example:
  python tools/test.py --checkpoint runs/supernet/checkpoint.pt --arch ARCH \\
      --dataset got10k --root cache/data_tiny --split val --out results --name tiny-subnet
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from lighttrack_nas.cli import keep_float_option, run_cli
from lighttrack_nas.data.readers import open_dataset
from lighttrack_nas.deploy import BACKENDS, inference_model
from lighttrack_nas.evaluate.results import write_results
from lighttrack_nas.tracker import Tracker, TrackerConfig

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None,
                   help="supernet or subnet checkpoint (.pt); omit for random weights (timing only)")
    p.add_argument("--dataset", required=True, choices=("got10k", "lasot", "otb", "trackingnet", "vot"),
                   help="layout of the data set under --root")
    p.add_argument("--root", required=True, help="data set root folder")
    p.add_argument("--split", default=None,
                   help="got10k: split folder train/val/test (default: val); trackingnet: TRAIN_k or TEST; "
                        "lasot/otb/vot: optional text file listing the sequences")
    p.add_argument("--out", default="results",
                   help="folder that receives the NAME result folder (default: %(default)s)")
    p.add_argument("--name", required=True, help="tracker name: results go to OUT/NAME")
    p.add_argument("--arch", default=None,
                   help="architecture string of the subnet (needed with a supernet checkpoint or no checkpoint)")
    p.add_argument("--space", default=None,
                   help="search-space YAML the architecture belongs to (default: the checkpoint's own space; "
                        "search_spaces/lighttrack_tiny.yaml without a checkpoint)")
    p.add_argument("--config", default=str(ROOT / "experiments" / "tracker.yaml"),
                   help="tracker hyper-parameters YAML (default: %(default)s)")
    p.add_argument("--format", default="got10k", choices=("got10k", "otb"),
                   help="result layout: got10k (NAME/<seq>/<seq>_001.txt) or otb (NAME/<seq>.txt) "
                        "(default: %(default)s)")
    p.add_argument("--backend", default="torch", choices=BACKENDS,
                   help="network runtime: torch (the fused inference form), onnxruntime (that form exported "
                        "to ONNX and run by ONNX Runtime; results agree up to float rounding) or onnxruntime-int8 "
                        "(the per-frame graph quantised to int8, calibrated on --calibration crops) "
                        "(default: %(default)s)")
    p.add_argument("--calibration", type=int, default=128, metavar="N",
                   help="onnxruntime-int8: tracking crop pairs that calibrate the activation ranges "
                        "(default: %(default)s)")
    p.add_argument("--calibration-split", default="train",
                   help="onnxruntime-int8: the split of --root (same --dataset layout) the calibration crops "
                        "come from; never the split being tracked (default: %(default)s)")
    keep_float_option(p, "onnxruntime-int8")
    p.add_argument("--threads", type=int, default=1,
                   help="PyTorch, ONNX Runtime and OpenCV threads; fix it for comparable timings "
                        "(default: %(default)s)")
    p.add_argument("--sequences", type=int, default=None, metavar="K",
                   help="track only the first K sequences (default: all)")
    args = p.parse_args()
    if args.split is None and args.dataset == "got10k":
        args.split = "val"
    if args.threads < 1 or (args.sequences is not None and args.sequences < 1):
        p.error("--threads and --sequences must be >= 1")
    if args.keep_float is not None and args.backend != "onnxruntime-int8":
        p.error("--keep-float only applies to --backend onnxruntime-int8")
    if args.backend == "onnxruntime-int8":
        if args.calibration < 1:
            p.error(f"--calibration {args.calibration}: need at least 1 crop pair")
        if args.calibration_split == args.split:
            p.error(f"--calibration-split {args.calibration_split} is the split being tracked: calibrate on another")
    return args


def main() -> int:
    from lighttrack_nas.models import load_tracking_model

    args = parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    config = TrackerConfig.from_yaml(args.config)
    sequences = open_dataset(args.dataset, args.root, args.split)
    if args.sequences is not None:
        sequences = sequences[:args.sequences]
    if not sequences:
        raise ValueError(f"{args.root}: no sequences found for --dataset {args.dataset} --split {args.split}")
    space = args.space or (None if args.checkpoint else ROOT / "search_spaces" / "lighttrack_tiny.yaml")
    model = load_tracking_model(args.checkpoint, args.arch, space)
    calibration = None
    if args.backend == "onnxruntime-int8":
        from lighttrack_nas.deploy.quantize import calibration_crops

        calibration = calibration_crops(open_dataset(args.dataset, args.root, args.calibration_split),
                                        model.template_size, model.search_size, args.calibration)
    model = inference_model(model, args.backend, args.threads, calibration, args.keep_float)
    tracker = Tracker(model, config)
    folder = Path(args.out) / args.name
    frames, seconds = 0, 0.0
    start = time.perf_counter()
    bar = tqdm(sequences, desc=args.name, unit="seq", dynamic_ncols=True)
    for seq in bar:
        boxes, times = tracker.track_sequence(seq)
        write_results(folder, seq.name, boxes, times, layout=args.format)
        frames, seconds = frames + len(times), seconds + float(np.sum(times))
        bar.set_postfix(fps=f"{frames / max(seconds, 1e-9):.1f}", seq=seq.name)
    bar.close()
    breakdown = ", ".join(f"{k} {v:.2f}" for k, v in tracker.timing.per_frame_ms().items())
    print(f"{len(sequences)} sequences, {frames} frames in {time.perf_counter() - start:.1f} s wall; "
          f"tracker {frames / max(seconds, 1e-9):.1f} fps ({args.backend}, {args.threads} thread(s)); "
          f"ms/frame: {breakdown}; init {1e3 * tracker.timing.init / len(sequences):.2f} ms/sequence")
    print(f"results: {folder} ({args.format} layout)")
    return 0


if __name__ == "__main__":
    run_cli(main)
