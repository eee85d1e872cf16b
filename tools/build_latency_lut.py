#!/usr/bin/env python
"""Build a latency predictor for a search space on this machine, for one runtime (--backend).

--predictor lut (default): a per-op lookup table. Every candidate op is timed once at every position
  (identical layers share one measurement), plus a linear calibration fitted on --fit-subnets whole
  subnets (default 10). Predicted latency = scale x sum along the path + overhead.
--predictor regression: a model fitted on --fit-subnets (default 100) random whole subnets timed as
  deployed: per-block MACs grouped by op kind and stage, non-negative ridge regression on relative
  errors (lighttrack_nas.cost.predictor). It sees fusion and layout effects a per-op sum cannot.

Either file works with tools/search.py --lut and tools/latency.py --lut. Check it with:
  python tools/latency.py --lut LUT --validate 50   (prints the measurement noise floor beside the error)
"""
from __future__ import annotations

import argparse

import torch
from tqdm import tqdm

from lighttrack_nas.cli import run_cli
from lighttrack_nas.cost.latency import BACKENDS, LatencyTable, subnet_steps
from lighttrack_nas.cost.predictor import LatencyModel
from lighttrack_nas.machine import describe_machine
from lighttrack_nas.models import build_supernet, load_space
from lighttrack_nas.config import load_experiment
from lighttrack_nas.space import experiment_space


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="search_spaces/lighttrack_tiny.yaml", help="search space (default: %(default)s)")
    p.add_argument("--config", default=None,
                   help="experiment YAML whose space and space_settings give the space instead of --space, as a "
                        "supernet trained with it has them (e.g. experiments/supernet_tiny.yaml: 80/192 crops); "
                        "a predictor is only used with the exact space it was made for")
    p.add_argument("--device", default="cpu", choices=["cpu"], help="device to time on (default: %(default)s)")
    p.add_argument("--backend", default="torch", choices=BACKENDS,
                   help="runtime timed: torch, onnxruntime (each candidate or subnet exported; a few s each) or "
                        "onnxruntime-int8 (exported and quantised) (default: %(default)s)")
    p.add_argument("--predictor", default="lut", choices=("lut", "regression"),
                   help="per-op lookup table, or a regression fitted on whole subnets (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads, fixed while timing (default: %(default)s)")
    p.add_argument("--min-run-time", type=float, default=None,
                   help="seconds of repeated runs per op (lut; default 0.05) or per subnet (regression; default 0.3) "
                        "after warm-up")
    p.add_argument("--fit-subnets", type=int, default=None,
                   help="random subnets timed whole: to fit the lut's scale and overhead (default 10), or the "
                        "regression (default 100, at least 10)")
    p.add_argument("--repeats", type=int, default=3, metavar="R",
                   help="regression: each subnet's time is the median of R interleaved rounds (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed for the calibration subnets (default: %(default)s)")
    p.add_argument("--out", required=True, help="output LUT (JSON)")
    args = p.parse_args()
    regression = args.predictor == "regression"
    args.fit_subnets = args.fit_subnets if args.fit_subnets is not None else (100 if regression else 10)
    args.min_run_time = args.min_run_time if args.min_run_time is not None else (0.3 if regression else 0.05)
    if args.threads < 1 or args.min_run_time <= 0 or args.repeats < 1:
        p.error("--threads and --repeats must be >= 1 and --min-run-time > 0")
    if args.fit_subnets < (10 if regression else 0):
        p.error(f"--fit-subnets {args.fit_subnets}: the {args.predictor} predictor needs at least "
                f"{10 if regression else 0}")
    return args


def main() -> int:
    args = parse_args()
    torch.manual_seed(0)
    supernet = build_supernet(experiment_space(load_experiment(args.config)) if args.config else load_space(args.space))
    if args.predictor == "regression":
        with tqdm(total=subnet_steps(args.fit_subnets, args.repeats),
                  desc=f"preparing subnets, timing each {args.repeats} time(s)") as bar:
            model = LatencyModel.build(supernet, args.threads, args.fit_subnets, args.seed, args.backend,
                                       args.min_run_time, progress=lambda i: bar.update(1), repeats=args.repeats)
        model.save(args.out)
        print(f"wrote {args.out}: regression on {args.fit_subnets} subnets, {len(model.names)} features, "
              f"cross-validated mean |error| {model.meta['cv_mean_abs_rel_error']:.1%} ({describe_machine()}, "
              f"{args.backend}, {args.threads} thread(s))")
        return 0
    with tqdm(desc="timing ops", unit="op") as bar:
        table = LatencyTable.build(supernet, args.threads, args.min_run_time, args.fit_subnets, args.seed,
                                   progress=lambda name: bar.update(1), backend=args.backend)
    table.save(args.out)
    print(f"wrote {args.out}: {len(table.entries)} entries, scale {table.scale:.3f}, overhead {table.overhead * 1e3:.2f} ms "
          f"({describe_machine()}, {args.backend}, {args.threads} thread(s) while timing)")
    return 0


if __name__ == "__main__":
    run_cli(main)
