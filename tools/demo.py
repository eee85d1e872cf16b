#!/usr/bin/env python
"""The main job on the embedded default (tiny preset, CPU), end to end:

  1. data: real-photograph sequences generated into the config's cache (first run only)
  2. supernet: single-path one-shot training (resumes from OUT/supernet/checkpoint.pt)
  3. supernet evaluation: largest and median-size subnets with inherited weights, BatchNorm
     recalibrated, tracking the val split; trained vs untrained vs the static-box baseline
  4. costs: MACs / params of LightTrack-Mobile and sampled architectures
  5. search: evolution under the config's latency budget (latency table built for this machine),
     finalists' latency measured for real; OUT/search/best.json holds the found architecture
  6. comparison (--compare): on the same supernet, searches at the comparison's MACs budgets and the
     found subnets retrained, against the pruned families of the comparison config (the embedded
     default: the supernet's own largest subnet, pruned to the same MACs and to 5 % and fine-tuned,
     so both sides start from the same weights); every tracker tracked on the test split:
     OUT/compare/report.md, results.csv, plots

Re-running with the same --out continues where an interrupted run stopped.
"""
from __future__ import annotations

import argparse
import logging

from lighttrack_nas.cli import run_cli
from lighttrack_nas.workflows.main_job import run_pipeline


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="experiments/search_tiny.yaml",
                   help="experiment YAML; with a search: section the search runs too (default: %(default)s)")
    p.add_argument("--tracker", default="experiments/tracker.yaml", help="tracker hyper-parameters (default: %(default)s)")
    p.add_argument("--out", default="runs/demo", help="output directory (default: %(default)s)")
    p.add_argument("--calibration-images", type=int, default=256,
                   help="training pairs for BatchNorm recalibration of each subnet (default: %(default)s)")
    p.add_argument("--compare", default="experiments/compare_tiny.yaml",
                   help="comparison YAML run last on this supernet into OUT/compare ('none': stop after the "
                        "search; default: %(default)s)")
    p.add_argument("--compare-seeds", type=int, nargs="+", default=[0],
                   help="seeds of the comparison (default: %(default)s; compare_tiny.yaml's full set is 0 1 2, "
                        "about 30 min per further seed)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = run_pipeline(args.config, args.out, args.tracker, args.calibration_images,
                           progress=not args.no_progress,
                           compare_config=None if args.compare == "none" else args.compare,
                           compare_seeds=args.compare_seeds)
    ev = summary["supernet_eval"]
    print(f"\nstatic-box baseline: AO {ev['static_baseline']['ao']:.3f}")
    for name in ("largest", "median"):
        row = ev[name]
        print(f"{name:<8} subnet ({row['macs'] / 1e6:.1f} M MACs): AO {row['trained']['ao']:.3f} trained, "
              f"{row['untrained']['ao']:.3f} untrained  [{row['arch']}]")
    mobile = summary["costs"][0]
    print(f"LightTrack-Mobile in this space: {mobile['macs'] / 1e6:.1f} M MACs, {mobile['params'] / 1e6:.3f} M params")
    if "search" in summary:
        best = summary["search"]["best"]
        print(f"search ({summary['search']['evaluations']} candidates, budgets {summary['search']['budgets']}): "
              + (f"fitness {best['fitness']:.3f}, AO {best['ao']:.3f}, {best['macs'] / 1e6:.1f} M MACs, "
                 f"{best['latency_ms']:.2f} ms measured  [{best['arch']}]" if best else "no candidate met the budgets"))
    if "compare" in summary:
        for budget, verdict in summary["compare"]["verdicts"].items():
            print(f"compare {budget}: {verdict}")
        print(f"comparison report: {summary['compare']['report']} ({summary['compare']['trackers']} trackers)")
    print(f"stage seconds: {summary['seconds']}")
    print(f"outputs in {args.out}: summary.json, supernet/ (checkpoint, log, loss.png), supernet_eval.json, costs.csv, "
          f"search/, compare/")
    return 0


if __name__ == "__main__":
    run_cli(main)
