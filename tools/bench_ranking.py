#!/usr/bin/env python
"""Ranking quality of a supernet: Kendall's tau between the fitness of subnets with inherited
weights (BatchNorm recalibrated) and the fitness of the same subnets trained stand-alone.

  python tools/bench_ranking.py --config experiments/supernet_tiny.yaml --supernet runs/supernet/checkpoint.pt \\
      --out runs/ranking --subnets 8 --iters 150

Subnets are spread over the MACs range (quantiles of uniform samples). Stand-alone training uses
the config's recipe from scratch, stopped after --iters iterations (a short proxy for full
training); both fitnesses are (AO + SR0.5) / 2 on the same val sequences with the same tracker.
Each subnet's stand-alone run lives in OUT/subnet{i}/ and is reused when the script is re-run.
Writes OUT/ranking.json and OUT/ranking.png.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr

from lighttrack_nas.cli import run_cli
from lighttrack_nas.cost import CostTable
from lighttrack_nas.data.sources import load_split
from lighttrack_nas.models import load_supernet, load_tracking_model
from lighttrack_nas.search.fitness import SubnetEvaluator, calibration_batches, track_and_score
from lighttrack_nas.tracker import TrackerConfig
from lighttrack_nas.train import SubnetTrainer, load_experiment


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="the experiment YAML the supernet was trained with")
    p.add_argument("--supernet", required=True, help="supernet checkpoint")
    p.add_argument("--out", required=True, help="output directory (stand-alone runs, ranking.json, ranking.png)")
    p.add_argument("--subnets", type=int, default=8, help="subnets spread over the MACs range (default: %(default)s)")
    p.add_argument("--iters", type=int, default=150, help="stand-alone training iterations each (default: %(default)s)")
    p.add_argument("--sequences", type=int, default=None, help="first K val sequences (default: all)")
    p.add_argument("--calibration-images", type=int, default=256,
                   help="training pairs for BatchNorm recalibration (default: %(default)s)")
    p.add_argument("--tracker", default="experiments/tracker.yaml", help="tracker YAML (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subnet sampling (default: %(default)s)")
    return p.parse_args()


def spread_architectures(space, macs, count: int, seed: int, samples: int = 400) -> list:
    """``count`` architectures at evenly spaced MACs quantiles of ``samples`` uniform draws."""
    rng = np.random.default_rng(seed)
    drawn = sorted({space.sample(rng) for _ in range(samples)}, key=macs)
    return [drawn[int(round(q * (len(drawn) - 1)))] for q in np.linspace(0.0, 1.0, count)]


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_experiment(args.config)
    torch.set_num_threads(int(cfg["train"]["threads"] or 1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    supernet = load_supernet(args.supernet).eval()
    table = CostTable(supernet)
    archs = spread_architectures(supernet.space, table.macs, args.subnets, args.seed)
    sequences = load_split(cfg["data"], "val", args.sequences)
    tracker = TrackerConfig.from_yaml(args.tracker)
    calibration = calibration_batches(load_split(cfg["data"], "train"), supernet.template_size, supernet.search_size,
                                      args.calibration_images)
    evaluator = SubnetEvaluator(supernet, calibration, sequences, tracker)
    rows = []
    for i, arch in enumerate(archs):
        run = out / f"subnet{i}"
        trainer = SubnetTrainer(cfg, run, str(arch), max_iters=args.iters)
        if trainer.resume() and trainer.iteration >= args.iters:
            logging.info("subnet %d: reusing %s", i, trainer.checkpoint_path)
        else:
            trainer.train()
        standalone = track_and_score(load_tracking_model(trainer.checkpoint_path, None), sequences, tracker)
        inherited = evaluator.score(arch)
        rows.append({"arch": str(arch), "macs": table.macs(arch), "inherited": inherited.to_dict(),
                     "standalone": standalone.to_dict()})
        logging.info("subnet %d (%.1f M MACs): inherited fitness %.3f, stand-alone %.3f", i, rows[-1]["macs"] / 1e6,
                     inherited.fitness, standalone.fitness)
    x = [r["inherited"]["fitness"] for r in rows]
    y = [r["standalone"]["fitness"] for r in rows]
    tau, p_tau = kendalltau(x, y)
    rho, _ = spearmanr(x, y)
    report = {"config": args.config, "supernet": args.supernet, "iters": args.iters,
              "batch_size": cfg["train"]["batch_size"], "sequences": len(sequences), "kendall_tau": float(tau),
              "kendall_p": float(p_tau), "spearman_rho": float(rho), "subnets": rows}
    (out / "ranking.json").write_text(json.dumps(report, indent=2))
    _plot(x, y, [r["macs"] for r in rows], tau, out / "ranking.png")
    print(f"Kendall tau {tau:.3f} (p {p_tau:.3f}), Spearman rho {rho:.3f} over {len(rows)} subnets; "
          f"inherited fitness {min(x):.3f}..{max(x):.3f}, stand-alone {min(y):.3f}..{max(y):.3f}")
    return 0


def _plot(inherited: list[float], standalone: list[float], macs: list[float], tau: float, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    points = ax.scatter(inherited, standalone, c=np.asarray(macs) / 1e6, cmap="viridis")
    fig.colorbar(points, label="M MACs")
    ax.set_xlabel("fitness, inherited weights")
    ax.set_ylabel("fitness, trained stand-alone")
    ax.set_title(f"supernet ranking: Kendall tau {tau:.2f}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    run_cli(main)
