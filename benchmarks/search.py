#!/usr/bin/env python
"""Search benchmarks: evolution vs random search at equal evaluations over several seeds, search
wall time and candidates/s, and the speed-up of Ray workers over one.

  python benchmarks/search.py --config experiments/search_tiny.yaml --supernet runs/supernet/checkpoint.pt \\
      --out runs/bench_search --flops-budget 100M --seeds 0 1 2 --workers 1 2

Every search is a plain `tools/search.py` run (library: `run_search`) into OUT/<strategy>_s<seed>/
(`--workers`: OUT/ray<N>_s<first seed>/, evolution); finished ones are reused when re-run. Writes
OUT/bench_search.json, OUT/bench_search.md (the tables) and OUT/best_so_far.png (best fitness
against candidates evaluated, per strategy and seed).
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from lighttrack_nas.cli import run_cli
from lighttrack_nas.io import atomic_write, new_figure, save_figure, write_json
from lighttrack_nas.workflows.stages import stage_search


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="experiment YAML with a search: section")
    p.add_argument("--supernet", required=True, help="supernet checkpoint")
    p.add_argument("--out", required=True, help="output directory (one folder per search, tables, plot)")
    p.add_argument("--flops-budget", default=None, metavar="MACS", help="MACs budget of every search, e.g. 30M")
    p.add_argument("--params-budget", default=None, metavar="N", help="parameter budget of every search")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="search seeds (default: %(default)s)")
    p.add_argument("--strategies", nargs="+", default=["evolution", "random"],
                   help="strategies compared at equal evaluations (default: %(default)s)")
    p.add_argument("--workers", type=int, nargs="*", default=[],
                   help="Ray worker counts to time the first seed's evolution with (e.g. 1 2); none: no Ray")
    p.add_argument("--threads", type=int, default=1, help="torch threads per evaluating process (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args()


def _search(args: argparse.Namespace, out: Path, strategy: str, seed: int, workers: int | None) -> dict[str, Any]:
    return stage_search(args.config, args.supernet, out, not args.no_progress, flops_budget=args.flops_budget,
                        params_budget=args.params_budget, threads=args.threads, workers=workers, strategy=strategy,
                        seed=seed)


def best_so_far(candidates: Path) -> list[float]:
    """Best fitness after each evaluated candidate (in evaluation order)."""
    fitness = [json.loads(line)["fitness"] for line in candidates.read_text().splitlines() if line.strip()]
    return list(np.maximum.accumulate(fitness)) if fitness else []


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.out)
    runs: list[dict[str, Any]] = []
    for strategy in args.strategies:
        for seed in args.seeds:
            folder = out / f"{strategy}_s{seed}"
            result = _search(args, folder, strategy, seed, None)
            curve = best_so_far(folder / "candidates.jsonl")
            runs.append({"strategy": strategy, "seed": seed, "evaluations": result["evaluations"],
                         "best_fitness": curve[-1] if curve else None, "search_seconds": result["search_seconds"],
                         "candidates_per_s": result["candidates_per_s"], "curve": curve, "folder": str(folder)})
    ray_runs = []
    for workers in args.workers:
        folder = out / f"ray{workers}_s{args.seeds[0]}"
        result = _search(args, folder, "evolution", args.seeds[0], workers)
        ray_runs.append({"workers": workers, "evaluations": result["evaluations"],
                         "search_seconds": result["search_seconds"], "candidates_per_s": result["candidates_per_s"]})
    report = {"config": args.config, "supernet": args.supernet, "flops_budget": args.flops_budget,
              "params_budget": args.params_budget, "threads": args.threads, "runs": runs, "ray": ray_runs}
    write_json(out / "bench_search.json", report)
    atomic_write(out / "bench_search.md", markdown(report))
    plot_curves(runs, out / "best_so_far.png")
    print(markdown(report))
    return 0


def markdown(report: dict[str, Any]) -> str:
    """The benchmark tables: per strategy (mean +- std of the best fitness over seeds) and Ray timing."""
    lines = ["| strategy | seeds | evaluations | best fitness (mean +- std) | per seed | search s (mean) | candidates/s |",
             "|---|---|---|---|---|---|---|"]
    for strategy in dict.fromkeys(r["strategy"] for r in report["runs"]):
        rows = [r for r in report["runs"] if r["strategy"] == strategy]
        best = np.array([r["best_fitness"] for r in rows], dtype=float)
        lines.append(f"| {strategy} | {len(rows)} | {rows[0]['evaluations']} | {best.mean():.4f} +- {best.std():.4f} | "
                     f"{', '.join(f'{b:.4f}' for b in best)} | {np.mean([r['search_seconds'] for r in rows]):.1f} | "
                     f"{np.mean([r['candidates_per_s'] for r in rows]):.3f} |")
    if report["ray"]:
        base = report["ray"][0]["search_seconds"]
        lines += ["", "| Ray workers | evaluations | search s | candidates/s | speed-up |", "|---|---|---|---|---|"]
        lines += [f"| {r['workers']} | {r['evaluations']} | {r['search_seconds']:.1f} | {r['candidates_per_s']:.3f} | "
                  f"{base / r['search_seconds']:.2f}x |" for r in report["ray"]]
    return "\n".join(lines) + "\n"


def plot_curves(runs: list[dict[str, Any]], png: Path) -> None:
    fig = new_figure(figsize=(7, 4))
    ax = fig.subplots()
    colours: dict[str, str] = {}
    for r in runs:
        first = r["strategy"] not in colours
        colour = colours.setdefault(r["strategy"], f"C{len(colours)}")
        ax.plot(range(1, len(r["curve"]) + 1), r["curve"], color=colour, alpha=0.8,
                label=r["strategy"] if first else None)
    ax.set_xlabel("candidates evaluated")
    ax.set_ylabel("best fitness so far")
    ax.set_title("evolution vs random search (one line per seed)")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, png)


if __name__ == "__main__":
    run_cli(main)
