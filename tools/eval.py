#!/usr/bin/env python
"""Score tracking results on GOT-10k, OTB, LaSOT or TrackingNet ground truth.

Every tracker gets both protocols (docs/evaluation.md):
  GOT-10k: ao, sr50, sr75 (frames 2..N with cover label > 0, boxes clipped to the image,
           up to 3 runs pooled, frame-weighted);
  OPE:     success_auc (21 IoU thresholds), precision20 (px), norm_precision20 (sequence-weighted,
           absent targets count as failures);
  fps:     frames / total seconds from the <seq>_time.txt files (first frame included).
With several --results, each tracker's AO minus the first one's is printed with a 95 % paired
bootstrap interval over sequences (sequences resampled, AO pooled over their frames).
Result folders in either layout are read: NAME/<seq>/<seq>_001.txt or NAME/<seq>.txt.

example:
  python tools/eval.py --dataset got10k --root data/got10k --split val \\
      --results results/got10k/lighttrack --results results/got10k/baseline --plot ope.png
"""
from __future__ import annotations

import argparse
import json

from lighttrack_nas.cli import run_cli
from lighttrack_nas.data.readers import open_dataset
from lighttrack_nas.evaluate import TrackerScore, open_results, paired_ao_difference, score_results

KEYS = ("ao", "sr50", "sr75", "success_auc", "precision20", "norm_precision20", "fps")
HEADERS = ("AO", "SR0.5", "SR0.75", "AUC", "P@20", "NP@0.2", "FPS")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, choices=("got10k", "otb", "lasot", "trackingnet"),
                   help="which data set's layout --root holds")
    p.add_argument("--root", required=True, help="data set root folder (ground truth is read from here)")
    p.add_argument("--split", default=None,
                   help="got10k: split folder train/val (default: val); trackingnet: TRAIN_k folder; "
                        "otb/lasot: a text file listing the sequences to score (default: all)")
    p.add_argument("--results", action="append", required=True, metavar="DIR",
                   help="a tracker's result folder (the folder name is the tracker name); repeat to compare")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (keyed by tracker name when several --results are given) "
                        "with ao, sr50, sr75, success_auc, precision20, norm_precision20, fps, per_sequence")
    p.add_argument("--per-sequence", action="store_true", help="also print per-sequence tables (text output)")
    p.add_argument("--plot", metavar="OUT.png", help="write success / precision / normalised precision plots here")
    args = p.parse_args()
    if args.split is None and args.dataset == "got10k":
        args.split = "val"
    return args


def _cell(key: str, value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}" if key == "fps" else f"{value:.3f}"


def _table(title: str, rows: dict[str, dict]) -> str:
    width = max(len(title), *(len(name) for name in rows))
    lines = [f"{title:<{width}}" + "".join(f"{h:>9}" for h in HEADERS)]
    lines += [f"{name:<{width}}" + "".join(f"{_cell(k, row[k]):>9}" for k in KEYS) for name, row in rows.items()]
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    sequences = open_dataset(args.dataset, args.root, args.split)
    trackers = [open_results(folder) for folder in args.results]
    names = [t.name for t in trackers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"several --results folders are named {', '.join(duplicates)}; tracker names must differ")
    scores: dict[str, TrackerScore] = {t.name: score_results(sequences, t) for t in trackers}
    report = {name: score.to_dict() for name, score in scores.items()}
    differences = {name: paired_ao_difference(scores[names[0]].got10k, scores[name].got10k) for name in names[1:]}
    for name, (gap, low, high) in differences.items():
        report[name]["ao_difference"] = {"versus": names[0], "difference": gap, "ci95": [low, high]}
    if args.plot:
        from lighttrack_nas.evaluate.plots import plot_ope

        plot_ope({name: score.ope for name, score in scores.items()}, args.plot, title=f"on {args.dataset}")
    if args.json:
        print(json.dumps(report[names[0]] if len(names) == 1 else report, indent=2))
        return 0
    print(f"{args.dataset} ({args.split or 'all'}): {len(sequences)} sequences")
    print(_table("tracker", report))
    if differences:
        print(f"AO minus {names[0]}'s, 95% paired bootstrap interval over the {len(sequences)} sequences:")
        for name, (gap, low, high) in differences.items():
            print(f"  {name}: {gap:+.3f} [{low:+.3f}, {high:+.3f}]")
    if args.per_sequence:
        for name, values in report.items():
            print(f"\n{name}")
            print(_table("sequence", values["per_sequence"]))
    if args.plot:
        print(f"plots written to {args.plot}")
    return 0


if __name__ == "__main__":
    run_cli(main)
