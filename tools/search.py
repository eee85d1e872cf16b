#!/usr/bin/env python
"""Evolutionary (or random) architecture search on a trained supernet under budgets.

  python tools/search.py --config experiments/search_tiny.yaml --supernet runs/supernet/checkpoint.pt \\
      --out runs/search --flops-budget 145M --latency-budget 20ms --threads 1

Each candidate inherits the supernet's weights, gets its BatchNorm statistics recalibrated on a
fixed set of training crops and tracks the val split; fitness = (AO + SR0.5) / 2. Every number of
the search is in the config's `search:` section (see docs/search.md). Budgets may be combined;
they default to the config's `search.budgets`. Writes OUT/candidates.jsonl, OUT/best.json,
OUT/pareto.csv, OUT/pareto.png and OUT/state.json (after every generation; --resume continues).
"""
from __future__ import annotations

import argparse
import logging
import time

from lighttrack_nas.cli import run_cli
from lighttrack_nas.cost.latency import BACKENDS as LATENCY_BACKENDS
from lighttrack_nas.search.evolution import STRATEGIES
from lighttrack_nas.search.runner import run_search


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True,
                   help="experiment YAML with a search: section (e.g. experiments/search_tiny.yaml)")
    p.add_argument("--supernet", required=True, help="supernet checkpoint from tools/train_supernet.py")
    p.add_argument("--out", required=True, help="output directory (state, candidates, best, Pareto front)")
    p.add_argument("--flops-budget", metavar="MACS", help="max MACs per frame, e.g. 600M, 2.5G, 800K; none: no limit, "
                                                          "whatever the config's search.budgets say")
    p.add_argument("--params-budget", metavar="N", help="max parameters, e.g. 2M, 800K; none: no limit")
    p.add_argument("--latency-budget", metavar="TIME",
                   help="max per-frame network latency, e.g. 8ms, 8000us, 0.008s: predicted by the latency table "
                        "during the search, measured for real on the finalists; none: no limit, "
                        "whatever the config's search.budgets say")
    p.add_argument("--lut", help="latency table from tools/build_latency_lut.py (default: built now into OUT with "
                                 "--latency-budget; with --lut alone every candidate gets a predicted latency)")
    p.add_argument("--device", default="cpu", choices=["cpu"], help="latency device (default: %(default)s)")
    p.add_argument("--backend", default="torch", choices=LATENCY_BACKENDS,
                   help="runtime whose per-frame latency --latency-budget limits: torch (fused form), onnxruntime "
                        "(float32) or onnxruntime-int8 (quantised); the latency predictor is built for it and the "
                        "finalists are measured in it (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1,
                   help="threads for latency tables and measurements (default: %(default)s)")
    p.add_argument("--workers", type=int, help="score candidates on N local Ray workers (started on demand); "
                                               "without --workers or --ray-address Ray is not used")
    p.add_argument("--ray-address",
                   help="join this Ray cluster (e.g. auto or HOST:6379); --workers then caps the actors")
    p.add_argument("--resume", action="store_true", help="continue the search in OUT (nothing evaluated is lost)")
    p.add_argument("--strategy", choices=sorted(STRATEGIES), help="override search.strategy (random: same evaluations)")
    p.add_argument("--seed", type=int, help="override the config's seed")
    p.add_argument("--tracker", help="tracker hyper-parameters YAML (default: the config's tracker:, else defaults)")
    p.add_argument("--max-generations", type=int, metavar="G",
                   help="stop once G generations have run in total (continue later with --resume)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    result = run_search(args.config, args.supernet, args.out, flops_budget=args.flops_budget,
                        params_budget=args.params_budget, latency_budget=args.latency_budget, lut=args.lut,
                        threads=args.threads, workers=args.workers, ray_address=args.ray_address, resume=args.resume,
                        strategy=args.strategy, seed=args.seed, tracker=args.tracker,
                        max_generations=args.max_generations, progress=not args.no_progress,
                        latency_backend=args.backend)
    wall = time.perf_counter() - start
    if "finalists" not in result:
        print(f"stopped after generation {result['generations']} ({result['evaluations']} candidates); "
              f"continue with --resume")
        return 0
    rate = result["candidates_per_s"] or 0.0
    print(f"{result['strategy']} search: {result['evaluations']} candidates in {result['generations']} generations, "
          f"{result['search_seconds']:.1f} s searching ({rate:.2f} candidates/s), {wall:.1f} s wall")
    best = result["best"]
    if best is None:
        print(f"warning: {result['note']}")
        return 1
    predicted = f"{best['latency_pred_ms']:.2f} ms predicted, " if best["latency_pred_ms"] is not None else ""
    print(f"best: fitness {best['fitness']:.4f} (AO {best['ao']:.3f}, SR0.5 {best['sr50']:.3f}), "
          f"{best['macs'] / 1e6:.2f} M MACs, {best['params'] / 1e6:.3f} M params, "
          f"{predicted}{best['latency_ms']:.2f} ms measured ({args.backend}, {args.threads} thread(s))")
    print(f"  {best['arch']}")
    print(f"wrote {args.out}/best.json, candidates.jsonl, pareto.csv, pareto.png")
    return 0


if __name__ == "__main__":
    run_cli(main)
