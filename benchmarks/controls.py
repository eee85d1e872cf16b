#!/usr/bin/env python
"""Does the search search? Evolution vs random search at equal evaluations, and the searched
architecture vs random architectures of its size, each retrained stand-alone and scored on val.

  python benchmarks/controls.py --search-config experiments/search_tiny.yaml \\
      --recipe experiments/ranking_tiny.yaml --supernets S0.pt S1.pt S2.pt --seeds 0 1 2 \\
      --flops-budget 145M --out runs/controls

For each seed (on its own supernet: a NAS seed retrains the supernet; one checkpoint for all seeds
is allowed and reported as one supernet seed): an evolution and a random search under the MACs
budget, then --randoms uniform architectures within --tolerance of the evolution winner's MACs.
All are trained with --recipe and scored on the val split (reused from OUT/standalone.json when
already trained with that recipe). Prints and writes (OUT/controls.json, plotted in OUT/controls.png) the paired differences
per seed with their mean, spread and a 95 % bootstrap interval over seeds x val sequences, on the whole
val split and on the val sequences the searches' fitness did not track (search.val_sequences).
Resumable: re-run the same command. --shard K/N lets N processes share one --out (e.g. the two
cores): each trains every N-th stand-alone job over all seeds; the shard that finds every job trained
writes controls.json.
"""
from __future__ import annotations

import argparse
import logging

from lighttrack_nas.cli import run_cli, shard_arg
from lighttrack_nas.workflows.controls import run_controls


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--search-config", required=True, help="experiment YAML with the search: section of both searches")
    p.add_argument("--recipe", required=True, help="stand-alone training recipe of every architecture "
                                                   "(e.g. experiments/ranking_tiny.yaml)")
    p.add_argument("--supernets", nargs="+", required=True, help="supernet checkpoint per seed (or one for all)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="search seeds (default: %(default)s)")
    p.add_argument("--flops-budget", required=True, metavar="MACS", help="MACs budget of both searches, e.g. 145M")
    p.add_argument("--randoms", type=int, default=5,
                   help="random architectures at the winner's MACs per seed (default: %(default)s)")
    p.add_argument("--tolerance", type=float, default=0.05,
                   help="relative MACs window of the random architectures (default: %(default)s)")
    p.add_argument("--out", required=True, help="output directory (searches, stand-alone runs, controls.json)")
    p.add_argument("--shard", type=shard_arg, default=(0, 1), metavar="K/N",
                   help="train only the stand-alone jobs (over all --seeds, in order) whose index is K modulo N, so "
                        "N processes can share --out: give every shard the same command but for K; a seed is "
                        "searched once, by the first shard to reach it (default: 0/1, all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report = run_controls(args.search_config, args.recipe, args.supernets, args.seeds, args.out, args.flops_budget,
                          randoms=args.randoms, tolerance=args.tolerance, shard=args.shard,
                          progress=not args.no_progress)
    if report is None:
        print(f"shard {args.shard[0]}/{args.shard[1]} done; other shards' trainings are still running or to run: "
              f"re-run when they have finished to write controls.json")
        return 0
    for row in report["seeds"]:
        w = row["winners"]
        sizes = ", ".join(f"{r['val_ao']:.3f}" for r in row["same_size"])
        print(f"seed {row['seed']}: evolution {w['evolution']['val_ao']:.3f} ({w['evolution']['macs'] / 1e6:.1f} M), "
              f"random search {w['random']['val_ao']:.3f} ({w['random']['macs'] / 1e6:.1f} M), "
              f"same-size randoms {sizes} (val AO)")
    for key, label in (("evolution_minus_random", "evolution - random search"),
                       ("evolution_minus_median", "evolution - same-size random median")):
        s = report[key]
        print(f"{label}: mean {s['mean']:+.3f} (std {s['std']:.3f}), wins {s['wins']}/{s['seeds']}, "
              f"per-sequence mean {s['per_sequence_mean']:+.3f} [{s['ci95'][0]:+.3f}, {s['ci95'][1]:+.3f}]")
        if "held_out" in s:
            h = s["held_out"]
            print(f"  on the {h['sequences']} held-out val sequences (not tracked by the searches' fitness): "
                  f"mean {h['mean']:+.3f} [{h['ci95'][0]:+.3f}, {h['ci95'][1]:+.3f}], wins {h['wins']}/{s['seeds']}")
    print(f"supernet seeds: {report['supernet_seeds']}")
    return 0


if __name__ == "__main__":
    run_cli(main)
