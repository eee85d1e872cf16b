#!/usr/bin/env python
"""Does a supernet rank architectures the way training them would?

Two steps, paid for separately, and a summary (docs/search.md, "Does the supernet rank?"):

  # 1. train N stratified subnets stand-alone (resumable; results in OUT/standalone.json)
  python benchmarks/ranking.py train --config experiments/ranking_tiny.yaml --out runs/ranking --subnets 16

  # 1b. (optional) the same subnets trained with other seeds, averaged: a ground truth with less run noise
  python benchmarks/ranking.py train --config experiments/ranking_tiny.yaml --out runs/ranking_seed1 --train-seed 1
  python benchmarks/ranking.py average --standalone runs/ranking/standalone.json runs/ranking_seed1/standalone.json \\
      --out runs/ranking_mean

  # 1c. (optional) the trained checkpoints tracked again on more val sequences, without retraining
  python benchmarks/ranking.py rescore --standalone runs/ranking/standalone.json \\
      --config experiments/ranking_val256_tiny.yaml --out runs/ranking_val256

  # 2. rank them with a supernet's inherited weights (OUT/ranking.json, OUT/ranking.png)
  python benchmarks/ranking.py rank --standalone runs/ranking/standalone.json \\
      --supernet runs/demo/supernet/checkpoint.pt --out runs/ranking/demo_supernet
  python benchmarks/ranking.py rank --standalone runs/ranking_mean/standalone.json \\
      --supernet runs/demo/supernet/checkpoint.pt --out runs/ranking_mean/demo_supernet \\
      --tracks runs/ranking/demo_supernet/inherited   # against the mean, the boxes tracked above

  # 3. the bar over several supernets' rankings of one stand-alone set (OUT/summary.json)
  python benchmarks/ranking.py summary --rankings runs/ranking/s0/ranking.json runs/ranking/s1/ranking.json \\
      --out runs/ranking/summary

Step 1 spreads the subnets evenly over the MACs range and, within each MACs stratum, over the
backbone choices; each is trained with the config's whole schedule and scored (AO) on the val
split. Step 2 prints Kendall tau and Spearman of the inherited fitness against the stand-alone
AO with bootstrap 95 % intervals, beside the tau of MACs alone, and how well disjoint halves of the
val sequences agree on the subnets' order, and so for fitness budgets the search could pay (KxF: K
sequences of their first F frames). Step 3 applies issue 28's bar (mean tau >= 0.6 over the
supernets, each one's interval of tau(fitness) - tau(MACs) above 0) and names the score whose
noise limits the tau. Step 1b averages runs of the same subnets trained with other seeds (the
stand-alone AO of one training is itself noisy) and prints how the runs agree. Step 1c scores the
checkpoints of any standalone.json (the ranking's, or benchmarks/controls.py's) on a grown split.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lighttrack_nas.cli import run_cli, shard_arg
from lighttrack_nas.io import write_json
from lighttrack_nas.search.backend import set_threads
from lighttrack_nas.workflows.ranking import (CEILING_TARGET, average_standalone, rank_supernet, read_ranking,
                                              rescore_standalone, summarize_rankings, train_standalone)


def _shard_option(step: argparse.ArgumentParser, what: str) -> None:
    step.add_argument("--shard", type=shard_arg, default=(0, 1), metavar="K/N",
                      help=f"{what} whose index is K modulo N, so N processes can share --out (default: 0/1, all)")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = p.add_subparsers(dest="step", required=True)
    train = steps.add_parser("train", help="train stratified subnets stand-alone and score them on val")
    train.add_argument("--config", required=True, help="the stand-alone recipe (e.g. experiments/ranking_tiny.yaml)")
    train.add_argument("--out", required=True, help="output directory: subnetNN/ runs and standalone.json")
    train.add_argument("--subnets", type=int, default=16, help="number of subnets (default: %(default)s)")
    train.add_argument("--seed", type=int, default=0, help="seed of the subnet selection (default: %(default)s)")
    train.add_argument("--train-seed", type=int, default=None,
                       help="seed of the trainings (initialisation and training pairs; default: the config's seed): "
                            "the same subnets trained with another seed measure the run-to-run noise")
    train.add_argument("--split", default="val", help="split the stand-alone subnets are scored on (default: %(default)s)")
    _shard_option(train, "train only the subnets")
    rank = steps.add_parser("rank", help="rank the stand-alone subnets with a supernet's inherited weights")
    rank.add_argument("--standalone", required=True, help="standalone.json written by the train step")
    rank.add_argument("--supernet", required=True, help="supernet checkpoint of the same space")
    rank.add_argument("--out", required=True, help="output directory: ranking.json, ranking.png")
    rank.add_argument("--calibration-images", type=int, default=64,
                      help="training pairs for BatchNorm recalibration, as the search (default: %(default)s)")
    rank.add_argument("--budgets", nargs="+", default=["4x60", "8x30", "16x15", "8x60", "16x30", "16x60"],
                      help="fitness budgets KxF (K sequences of their first F frames: the search's val_sequences x "
                           "val_frames) whose agreement between disjoint sequence sets (first K vs next K) and "
                           "ranking are reported (default: %(default)s; the tiny search pays 4x60)")
    rank.add_argument("--tracks", type=Path, default=None,
                      help="another ranking's folder of tracked boxes (its OUT/inherited) to read besides OUT/inherited "
                           "(never written): the same supernet ranked against another stand-alone set of the same "
                           "subnets and sequences (e.g. an averaged one) without tracking again; subnets not found "
                           "there are tracked into OUT/inherited")
    rank.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default: %(default)s)")
    rank.add_argument("--threads", type=int, default=1,
                      help="torch / OpenCV threads while tracking, as the search's (default: %(default)s)")
    average = steps.add_parser("average", help="average stand-alone runs of the same subnets trained with other seeds")
    average.add_argument("--standalone", nargs="+", required=True, type=Path,
                         help="standalone.json files of the train step, one per --train-seed, the recipe otherwise equal")
    average.add_argument("--out", required=True, type=Path,
                         help="output directory: standalone.json (per-sequence means) and agreement.json; not the "
                              "folder of one of the runs")
    rescore = steps.add_parser("rescore", help="track a standalone.json's checkpoints again on another config's split")
    rescore.add_argument("--standalone", required=True, type=Path,
                         help="standalone.json of one run whose checkpoints (its records' paths, relative to it or "
                              "absolute) are tracked")
    rescore.add_argument("--config", required=True,
                         help="a recipe that trains exactly as theirs, its scored split grown or moved (e.g. "
                              "experiments/ranking_val256_tiny.yaml for ranking_tiny.yaml's subnets)")
    rescore.add_argument("--split", default="val", help="split to score on (default: %(default)s)")
    _shard_option(rescore, "re-score only the records")
    rescore.add_argument("--out", required=True, type=Path,
                         help="output directory: standalone.json bound to --config (resumable); not the input's folder")
    summary = steps.add_parser("summary", help="issue 28's bar over several supernets' rankings of one stand-alone set")
    summary.add_argument("--rankings", nargs="+", required=True, type=Path,
                         help="ranking.json files written by the rank step, one per supernet")
    summary.add_argument("--out", required=True, type=Path, help="output directory: summary.json")
    summary.add_argument("--target", type=float, default=CEILING_TARGET,
                         help="the mean Kendall tau the bar asks for (default: %(default)s)")
    return p.parse_args()


def _interval(stats: dict, key: str, ci: str) -> str:
    return f"{stats[key]:+.3f} [{stats[ci][0]:+.3f}, {stats[ci][1]:+.3f}]"


def summary_step(paths: list[Path], out: Path, target: float) -> int:
    summary = summarize_rankings([read_ranking(path) for path in paths], target)
    write_json(out / "summary.json", summary)
    print(f"{len(paths)} supernets, {summary['subnets']} subnets, {summary['sequences']} sequences; MACs alone: "
          f"Kendall tau {summary['macs_alone_tau']:+.3f}")
    for row in summary["supernets"]:
        print(f"{row['supernet']}: Kendall tau {row['kendall_tau']:+.3f} [{row['kendall_ci'][0]:+.3f}, "
              f"{row['kendall_ci'][1]:+.3f}], minus MACs' {row['tau_minus_macs']:+.3f} "
              f"[{row['tau_minus_macs_ci'][0]:+.3f}, {row['tau_minus_macs_ci'][1]:+.3f}], noise ceiling "
              f"{row['ceiling_tau']:.3f}")
    print(f"mean tau {summary['mean_tau']:.3f} (target {target}); every interval above MACs': "
          f"{'yes' if summary['every_interval_above_macs'] else 'no'} -> bar "
          f"{'met' if summary['bar_met'] else 'not met'}")
    noisier = summary["noisier"] or "undetermined (a self-agreement is undefined)"
    print(f"self-agreement on the whole split, stepped up: fitness {summary['fitness_self_tau']:.3f}, stand-alone AO "
          f"{summary['standalone_self_tau']:.3f}; the noisier score: {noisier}"
          + (" (it limits the tau)" if summary["noisier"] and not summary["bar_met"] else ""))
    return 0


def average_step(paths: list[Path], out: Path) -> int:
    agreement = average_standalone(paths, out)
    write_json(out / "agreement.json", agreement)
    bound = agreement["predictor_bound"]
    print(f"{agreement['runs']} runs (training seeds {agreement['seeds']}) of {agreement['subnets']} subnets on "
          f"{agreement['sequences']} sequences -> {out / 'standalone.json'}")
    print(f"run-to-run Kendall tau, the same sequences: {', '.join(f'{t:.3f}' for t in agreement['runs_tau'])}")
    print(f"AO spread of a subnet over the runs: std {agreement['run_spread']:.4f}; of the subnets (the mean): "
          f"std {agreement['subnet_spread']:.4f}")
    print(f"self-agreement over sequences, stepped up: one run {', '.join(f'{t:.3f}' for t in agreement['sequences_self_tau']['one_run'])}; "
          f"the mean {agreement['sequences_self_tau']['mean']:.3f}")
    print(f"tau a perfect predictor could reach (attenuation bound, rough): against one run {bound['one_run']:.2f}, "
          f"against the mean {bound['mean']:.2f}")
    return 0


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.step == "train":
        results = train_standalone(args.config, args.out, args.subnets, seed=args.seed, split=args.split,
                                   shard=args.shard, train_seed=args.train_seed)
        for r in sorted(results.records, key=lambda r: r["macs"]):
            print(f"{r['macs'] / 1e6:7.1f} M MACs  AO {r['ao']:.3f}  {r['arch']}")
        return 0
    if args.step == "summary":
        return summary_step(args.rankings, args.out, args.target)
    if args.step == "average":
        return average_step(args.standalone, args.out)
    if args.step == "rescore":
        results = rescore_standalone(args.standalone, args.config, args.out, args.split, args.shard)
        for r in sorted(results.records, key=lambda r: r["macs"]):
            print(f"{r['macs'] / 1e6:7.1f} M MACs  AO {r['ao']:.3f}  {r['arch']}")
        return 0
    set_threads(args.threads)  # tracking is chaotic: the fitness depends on the thread count
    report = rank_supernet(args.supernet, args.standalone, args.out, calibration_images=args.calibration_images,
                           budgets=args.budgets, resamples=args.resamples, tracks=args.tracks)
    rank, macs = report["ranking"], report["macs_alone"]
    print(f"{rank['n']} subnets, {report['sequences']} {report['split']} sequences")
    print(f"inherited fitness vs stand-alone AO: Kendall tau {_interval(rank, 'kendall_tau', 'kendall_ci')}, "
          f"Spearman {_interval(rank, 'spearman_rho', 'spearman_ci')}")
    print(f"MACs alone vs stand-alone AO:        Kendall tau {_interval(macs, 'kendall_tau', 'kendall_ci')}")
    print(f"tau(fitness) - tau(MACs):            {_interval(rank, 'tau_minus_reference', 'tau_minus_reference_ci')}")
    halves = report["halves_agreement"]
    print(f"disjoint val halves agree:           Kendall tau {_interval(halves, 'kendall_tau', 'kendall_ci')}")
    rel = report["reliability"]
    for key, label in (("fitness", "inherited fitness"), ("standalone", "stand-alone AO")):
        r = rel[key]
        print(f"{label} on random halves agrees with itself: Kendall tau {r['halves_tau']:.3f} (draws spread "
              f"{r['halves_range'][0]:+.3f} to {r['halves_range'][1]:+.3f}; whole split, stepped up: {r['whole_tau']:.3f})")
    cross = rel["cross_halves"]
    print(f"fitness on one half vs stand-alone AO on the other: Kendall tau {cross['tau']:.3f} (draws spread "
          f"{cross['range'][0]:+.3f} to {cross['range'][1]:+.3f}; noise ceiling at half the sequences: "
          f"{cross['ceiling_tau']:.3f})")
    needed = rel["sequences_for_target"]
    print(f"noise ceiling of the tau (each score's own noise; a point estimate): {rel['ceiling_tau']:.3f}; "
          f"it reaches {rel['ceiling_target']} with {needed or 'no number of'} {report['split']} sequences")
    for k, sub in report["budgets"].items():
        print(f"budget {k:>6}: first vs next sequences agree: Kendall tau "
              f"{_interval(sub['agreement'], 'kendall_tau', 'kendall_ci')}; ranking vs stand-alone "
              f"{_interval(sub['ranking'], 'kendall_tau', 'kendall_ci')}")
    return 0


if __name__ == "__main__":
    run_cli(main)
