#!/usr/bin/env python
"""Does keeping the heads' output layers float (``keep_float=["Output"]``) slow the int8 graph? (issue 30)

Times the per-frame graph of LightTrack-Mobile (random weights) and of each ``--checkpoints`` subnet in
ONNX Runtime float32, int8 with every layer quantised (``int8``: the default until 2026-12-07 21:36) and
int8 with ``keep_float=["Output"]`` (the default since), all calibrated on the same 8 random crops (right
for speed; accuracy is ``int8_accuracy.py``'s), 1 thread, ``--rounds`` interleaved rounds of ``--runs``
runs each; prints each graph's median time and the median of the per-round ratios to the every-layer
int8 graph.

  python benchmarks/issue30/output_float_speed.py --checkpoints RUN/subnet07/checkpoint.pt --rounds 7
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from lighttrack_nas.deploy import fuse
from lighttrack_nas.deploy.onnx import create_session, export_branches
from lighttrack_nas.deploy.quantize import quantize_branches, random_crops
from lighttrack_nas.models import build_subnet, load_space, load_tracking_model

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = {"int8": (), "int8-Output": ("Output",)}   # int8 graphs by the op types they keep float


def sessions(model: torch.nn.Module) -> tuple[dict[str, object], dict[str, np.ndarray]]:
    """One ONNX Runtime session per variant of the model's frame graph, and one frame's feed."""
    template, frame = export_branches(fuse(model.eval()))
    crops = random_crops(model.template_size, model.search_size, 8)
    graphs = {"float32": frame, **{name: quantize_branches(template, frame, crops, keep_float=keep)[1]
                                   for name, keep in VARIANTS.items()}}
    z, x = (np.random.default_rng(seed).normal(size=(1, 3, size, size)).astype(np.float32)
            for seed, size in ((0, model.template_size), (1, model.search_size)))
    tpl = create_session(template, threads=1)
    feed = {"x": x, **dict(zip([o.name for o in tpl.get_outputs()], tpl.run(None, {"z": z})))}
    return {name: create_session(g, threads=1) for name, g in graphs.items()}, feed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoints", nargs="*", default=[], type=Path, help="trained subnets to time too")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default: %(default)s)")
    p.add_argument("--runs", type=int, default=30, help="runs per graph and round (default: %(default)s)")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    space = load_space(ROOT / "search_spaces" / "lighttrack.yaml")
    models = {"lighttrack-mobile": build_subnet(space, "lighttrack-mobile")}
    models.update({path.parent.name: load_tracking_model(path, None) for path in args.checkpoints})
    for label, model in models.items():
        runs, feed = sessions(model)
        times: dict[str, list[float]] = {name: [] for name in runs}
        for name, session in runs.items():   # warm-up
            session.run(None, feed)
        for _ in range(args.rounds):
            for name, session in runs.items():
                samples = []
                for _ in range(args.runs):
                    start = time.perf_counter()
                    session.run(None, feed)
                    samples.append(time.perf_counter() - start)
                times[name].append(statistics.median(samples) * 1e3)
        for name, ms in times.items():
            ratio = statistics.median([a / b for a, b in zip(ms, times["int8"])])
            print(f"{label:18s} {name:12s} {statistics.median(ms):6.2f} ms   / int8 every layer: {ratio:.3f}x",
                  flush=True)


if __name__ == "__main__":
    main()
