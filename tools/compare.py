#!/usr/bin/env python
"""Compare NAS-found trackers with pruned (and compressed) trackers at matched MACs (docs/compare.md).

  python tools/compare.py --config experiments/compare_tiny.yaml --out runs/compare_tiny
  python tools/compare.py --config experiments/compare_tiny.yaml --out runs/compare_tiny --seeds 0 1 2
  python tools/compare.py ... --supernet runs/demo/supernet/checkpoint.pt   (one trained supernet for every seed)
  python tools/compare.py ... --report-only                                  (report what is finished)
  python tools/compare.py ... --only vit hybrid                              (some tracker groups only)

Per seed: the seed's own supernet (the config's supernet training with that seed, into OUT/supernet/seedS;
--supernet: one given for every seed), a search at each of the config's MACs budgets (compare.nas.budgets)
in it, each found subnet retrained stand-alone; each pruned family's dense network
(compare.cnn, compare.families: trained, or with `dense: supernet` the supernet's own subnet) pruned
(torch-pruning) to each NAS subnet's MACs and to the extreme budgets (compare.prune.extreme_budgets)
and fine-tuned; CompressTracker students where configured; every tracker tracked on the held-out split
(compare.split) and timed at compare.latency.threads thread(s). Each stage is skipped when its output
exists, so the same command resumes an interrupted run.

Writes OUT/results.csv (one row per tracker), OUT/report.md (matched-MACs table with the AO margin over
seeds and a verdict per budget, training budgets, stage times), OUT/ao_vs_macs.png, OUT/ao_vs_latency.png,
OUT/success_*.png, OUT/stability.png and OUT/stages.json.
"""
from __future__ import annotations

import argparse
import logging

from lighttrack_nas.cli import run_cli
from lighttrack_nas.workflows.compare import compare


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True,
                   help="comparison YAML: an experiment with a compare: section (e.g. experiments/compare_tiny.yaml)")
    p.add_argument("--out", required=True,
                   help="output directory; finished stages found there are skipped (resume = the same command)")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="seeds of the searches, retrainings, dense trainings and prunings "
                        "(default: the config's compare.seeds); each seed trains its own supernet unless --supernet is given")
    p.add_argument("--supernet", default=None,
                   help="a trained supernet checkpoint every seed searches in (default: each seed S trains its own into "
                        "OUT/supernet/seedS, the config's supernet training with seed S)")
    p.add_argument("--only", nargs="+", default=None, metavar="GROUP",
                   help="run only these tracker groups: nas, a pruned family (cnn, vit, hybrid, ...), "
                        "compresstracker (default: all). Pruned families need the NAS searches of their seed "
                        "done (their MACs are the targets); several processes with disjoint groups may share "
                        "one --out")
    p.add_argument("--report-only", action="store_true",
                   help="run no stage: write results.csv, report.md and the plots from what OUT holds")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs and stage lines still written)")
    args = p.parse_args()
    if args.seeds is not None and (min(args.seeds) < 0 or len(set(args.seeds)) != len(args.seeds)):
        p.error(f"--seeds {args.seeds}: expected distinct integers >= 0")
    return args


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = compare(args.config, args.out, args.seeds, args.supernet, progress=not args.no_progress,
                      report_only=args.report_only, only=args.only)
    for entry in summary["matched"]:
        print(f"{entry['budget']}: {entry['verdict']}")
    if summary["missing"]:
        print(f"{len(summary['missing'])} tracker(s) not evaluated yet (see {args.out}/report.md)")
    print(f"{len(summary['rows'])} tracker(s): {args.out}/results.csv, {args.out}/report.md")
    return 0


if __name__ == "__main__":
    run_cli(main)
