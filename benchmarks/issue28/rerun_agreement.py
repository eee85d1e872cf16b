#!/usr/bin/env python
"""How well two stand-alone trainings of the same subnets agree, and what that leaves a supernet.

    python benchmarks/issue28/rerun_agreement.py benchmarks/issue28/standalone.json \\
        benchmarks/issue28/ranking256/standalone.json

FIRST and SECOND are two ``standalone.json`` files of the same subnets trained with the same recipe;
SECOND was scored on more val sequences, whose first ones are FIRST's. Prints the Kendall tau of the
subnets' order (mean per-sequence AO) between the two runs on the shared sequences, within SECOND on
disjoint sequences, and across both; the per-subnet run-to-run difference beside the subnets' spread;
and the tau a predictor of each subnet's expected AO could reach against one run of SECOND
(``workflows.ranking.attenuation_bound`` for the run's noise alone, ``predictor_bound`` for both).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from lighttrack_nas.cli import run_cli
from lighttrack_nas.workflows.ranking import (attenuation_bound, pearson_from_tau, predictor_bound,
                                              split_half_reliability)


def _subnets(path: Path) -> dict[str, dict]:
    return {r["arch"]: r for r in json.loads(path.read_text())["subnets"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("first", type=Path, help="standalone.json of the first run")
    p.add_argument("second", type=Path, help="standalone.json of the second run, scored on at least as many sequences")
    args = p.parse_args()
    first, second = _subnets(args.first), _subnets(args.second)
    if set(first) != set(second):
        raise ValueError(f"{args.first} and {args.second} hold different subnets")
    archs = sorted(first)
    shared = list(next(iter(first.values()))["per_sequence_ao"])
    names = list(next(iter(second.values()))["per_sequence_ao"])
    if names[:len(shared)] != shared or len(names) <= len(shared):
        raise ValueError(f"{args.second}'s val sequences must start with {args.first}'s and go on past them")
    rest = names[len(shared):]

    def mean(runs: dict[str, dict], sequences: list[str]) -> np.ndarray:
        return np.array([np.mean([runs[a]["per_sequence_ao"][s] for s in sequences]) for a in archs])

    def tau(x: np.ndarray, y: np.ndarray) -> float:
        return float(kendalltau(x, y).statistic)

    one, two, two_rest = mean(first, shared), mean(second, shared), mean(second, rest)
    runs_tau = tau(one, two)
    print(f"{len(archs)} subnets; {len(shared)} shared sequences, {len(rest)} more in the second run")
    for label, value in ((f"the same run, disjoint sequences ({len(shared)} vs {len(rest)})", tau(two, two_rest)),
                         (f"another run, the same {len(shared)} sequences", runs_tau),
                         ("another run, disjoint sequences", tau(one, two_rest))):
        print(f"{label + ':':<45} Kendall tau {value:.3f}")
    print(f"run-to-run AO difference per subnet: std {np.std(two - one, ddof=1):.4f}; the subnets' spread in "
          f"the second run, all {len(names)} sequences: std {np.std(mean(second, names), ddof=1):.4f}")
    sequences = split_half_reliability([[second[a]["per_sequence_ao"][s] for s in names] for a in archs])
    r_runs, r_sequences = pearson_from_tau(runs_tau), pearson_from_tau(sequences["whole_tau"])
    print(f"one run's self-agreement on {len(names)} sequences (stepped up): {sequences['whole_tau']:.3f}")
    print(f"tau a perfect predictor could reach against one run: {attenuation_bound(r_runs):.2f} with the run-to-run noise alone, "
          f"{predictor_bound(r_runs, r_sequences):.2f} with the {len(names)} sequences' noise too (a rough estimate: the "
          f"runs were compared on {len(shared)} sequences)")
    return 0


if __name__ == "__main__":
    run_cli(main)
