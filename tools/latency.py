#!/usr/bin/env python
"""Measure and predict per-frame network latency.

  --arch ARCH            measure one architecture (median of many runs after warm-up)
  --checkpoint CKPT      measure a checkpoint's network: a stand-alone one (e.g. a dense or pruned
                         cnn from tools/train_baseline.py / tools/prune.py), a subnet, or --arch of a supernet
  --lut LUT --arch ARCH  also print the LUT's prediction
  --lut LUT --validate N time N random subnets twice (each timing the median of --repeats rounds, all
                         rounds interleaved): the noise floor (how often the
                         second timing is within +-10 % of the first, their Spearman) beside the
                         predictor's error against the first (within +-10 %, Spearman, RMSE), and a
                         predicted-vs-measured PNG (--plot). LUT: a table or a regression model
                         (tools/build_latency_lut.py --predictor lut|regression)
  --sample N             measure N uniformly sampled subnets: median and quartiles of their latency and
                         MACs (e.g. to set a search's latency budget; --crops 80 192 as the tiny preset tracks)
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from tqdm import tqdm

from lighttrack_nas.cli import run_cli
from lighttrack_nas.cost import CostTable
from lighttrack_nas.cost.latency import (BACKENDS, backend_settings, latency_result, measure_random_subnets,
                                         network_latency, subnet_steps, validate_table)
from lighttrack_nas.cost.predictor import load_latency_predictor
from lighttrack_nas.io import new_figure, save_figure
from lighttrack_nas.machine import describe_machine
from lighttrack_nas.models import build_supernet, load_space, load_tracking_model
from lighttrack_nas.config import load_experiment
from lighttrack_nas.space import experiment_space


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="search_spaces/lighttrack_tiny.yaml", help="search space (default: %(default)s)")
    p.add_argument("--config", default=None,
                   help="experiment YAML whose space and space_settings give the space instead of --space, as a "
                        "supernet trained with it has them (e.g. experiments/supernet_tiny.yaml: 80/192 crops); "
                        "a predictor is only used with the exact space it was made for")
    p.add_argument("--lut", help="latency predictor (table or regression) from tools/build_latency_lut.py")
    p.add_argument("--arch", help="architecture to measure (preset, compact, published or JSON)")
    p.add_argument("--checkpoint", help="measure this checkpoint's network (see above)")
    p.add_argument("--validate", type=int, default=0, metavar="N", help="validate the LUT on N random subnets")
    p.add_argument("--repeats", type=int, default=3, metavar="R",
                   help="with --validate: each of the two timings is the median of R interleaved rounds "
                        "(default: %(default)s; a shared machine's slow spells then move it less)")
    p.add_argument("--sample", type=int, default=0, metavar="N",
                   help="measure N uniformly sampled subnets of --space (seed --seed): median and quartiles")
    p.add_argument("--crops", type=int, nargs=2, metavar=("TEMPLATE", "SEARCH"),
                   help="template and search crop sizes instead of the space's (experiments/supernet_tiny.yaml: 80 192)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the LUT's, else 1)")
    p.add_argument("--backend", default=None, choices=BACKENDS,
                   help="runtime to measure in (default: the LUT's backend, else torch)")
    p.add_argument("--seed", type=int, default=1, help="seed of the validation subnets (default: %(default)s)")
    p.add_argument("--plot", help="PNG of predicted vs measured latency (with --validate)")
    p.add_argument("--json", action="store_true", help="print JSON")
    args = p.parse_args()
    if not args.arch and not args.validate and not args.checkpoint and not args.sample:
        p.error("give --arch, --checkpoint, --sample N and/or --lut LUT --validate N")
    if args.validate and not args.lut:
        p.error("--validate needs --lut")
    if args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.checkpoint and (args.lut or args.validate):
        p.error("--checkpoint measures one network; --lut/--validate belong to a search space")
    return args


def plot_validation(result: dict, png: str) -> None:
    pred = [p["predicted_ms"] for p in result["pairs"]]
    meas = [p["measured_ms"] for p in result["pairs"]]
    lo, hi = min(pred + meas) * 0.9, max(pred + meas) * 1.1
    fig = new_figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="0.9", label="+-10 %")
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.scatter(meas, pred, s=14)
    ax.scatter(meas, [p["remeasured_ms"] for p in result["pairs"]], s=10, marker="x", c="0.5",
               label=f"timed again (floor: {result['noise_floor']['within_10pct']:.0%} within +-10 %)")
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="measured (ms)", ylabel="predicted (ms)",
           title=f"{result['within_10pct']:.0%} within +-10 %, Spearman {result['spearman']:.3f}")
    ax.legend(loc="upper left")
    save_figure(fig, png)


def sample_latency(supernet, count: int, threads: int, backend: str, seed: int) -> dict:
    """Measured latency and MACs of ``count`` uniformly sampled subnets: median and quartiles."""
    costs = CostTable(supernet)
    with tqdm(total=count, desc="measuring subnets") as bar:
        measured = measure_random_subnets(supernet, count, threads, seed, backend, progress=lambda i: bar.update(1))
    q25, median, q75 = np.percentile([seconds * 1e3 for _, seconds in measured], [25, 50, 75])
    return {"count": count, "median_ms": float(median), "q25_ms": float(q25), "q75_ms": float(q75),
            "median_macs": float(np.median([costs.cost(arch).macs for arch, _ in measured]))}


def main() -> int:
    args = parse_args()
    torch.manual_seed(0)
    space = experiment_space(load_experiment(args.config)) if args.config else load_space(args.space)
    if args.crops:
        space.settings.update(template_size=args.crops[0], search_size=args.crops[1])
    supernet = build_supernet(space)
    table = load_latency_predictor(args.lut).bind(supernet) if args.lut else None
    threads = args.threads or (table.meta["threads"] if table else 1)
    backend = args.backend or (table.meta.get("backend", "torch") if table else "torch")
    out: dict = {"machine": describe_machine(), "threads": threads, **backend_settings(backend)}
    if args.checkpoint:
        model = load_tracking_model(args.checkpoint, args.arch)  # its own stored space, if any
        out["measured"] = latency_result(network_latency(model, threads, backend=backend))
    elif args.arch:
        arch = space.decode(args.arch)
        out["measured"] = latency_result(network_latency(supernet.extract(arch), threads, backend=backend))
        if table:
            out["predicted_ms"] = table.predict(arch) * 1e3
    if args.validate:
        with tqdm(total=subnet_steps(args.validate, 2 * args.repeats),
                  desc=f"preparing subnets, then timing them {2 * args.repeats} times") as bar:
            result = validate_table(table, supernet, args.validate, threads, args.seed,
                                    progress=lambda i: bar.update(1), repeats=args.repeats)
        out["validation"] = result
        if args.plot:
            plot_validation(result, args.plot)
    if args.sample:
        out["sample"] = sample_latency(supernet, args.sample, threads, backend, args.seed)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"machine: {out['machine']}, {threads} thread(s)")
    if "measured" in out:
        m = out["measured"]
        print(f"measured: {m['ms']:.2f} ms (IQR {m['iqr'] * 1e3:.2f} ms, {m['runs']} runs)")
        if "predicted_ms" in out:
            print(f"predicted by LUT: {out['predicted_ms']:.2f} ms")
    if "validation" in out:
        v = out["validation"]
        f = v["noise_floor"]
        print(f"{v['count']} random subnets timed twice ({backend}): noise floor {f['within_10pct']:.0%} within +-10 %, "
              f"Spearman {f['spearman']:.3f}, mean |difference| {f['mean_abs_rel_error']:.1%}")
        print(f"predictor vs the first timing: {v['within_10pct']:.0%} within +-10 %, Spearman {v['spearman']:.3f}, "
              f"RMSE {v['rmse_ms']:.3f} ms, mean |error| {v['mean_abs_rel_error']:.1%}")
    if "sample" in out:
        v = out["sample"]
        print(f"{v['count']} random subnets: latency median {v['median_ms']:.2f} ms (quartiles {v['q25_ms']:.2f} / "
              f"{v['q75_ms']:.2f} ms), MACs median {v['median_macs'] / 1e6:.1f} M")
    return 0


if __name__ == "__main__":
    run_cli(main)
