"""Pareto fronts of evaluated candidates (lower cost, higher fitness) as CSV and PNG."""
from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..io import atomic_write, new_figure, save_figure

Record = dict[str, Any]
# objective name -> (record key, axis label, scale to axis unit)
OBJECTIVES = {"macs": ("macs", "MACs per frame (M)", 1e-6),
              "latency": ("latency_pred_ms", "predicted latency (ms)", 1.0)}
CSV_FIELDS = ["front", "arch", "macs", "params", "latency_pred_ms", "latency_ms", "fitness", "ao", "sr50", "sr75",
              "generation"]


def pareto_front(costs: Sequence[float], fitness: Sequence[float]) -> list[int]:
    """Indices of the non-dominated points (no other point is at most as costly and strictly
    fitter, or cheaper and at least as fit), in increasing cost."""
    order = sorted(range(len(costs)), key=lambda i: (costs[i], -fitness[i]))
    front: list[int] = []
    for i in order:
        if not front or fitness[i] > fitness[front[-1]]:
            front.append(i)
    return front


def fronts(records: list[Record]) -> dict[str, list[Record]]:
    """The front over each objective every record has a value for (MACs; predicted latency)."""
    out = {}
    for name, (key, _, _) in OBJECTIVES.items():
        if records and all(r.get(key) is not None for r in records):
            out[name] = [records[i] for i in pareto_front([r[key] for r in records], [r["fitness"] for r in records])]
    return out


def write_pareto_csv(records: list[Record], path: str | Path) -> None:
    """One row per front member and objective (column ``front``)."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for name, members in fronts(records).items():
        writer.writerows({**r, "front": name} for r in members)
    atomic_write(path, text.getvalue())


def plot_pareto(records: list[Record], path: str | Path, best: Record | None = None,
                budgets: dict[str, float | None] | None = None) -> None:
    """Fitness vs MACs and vs latency: every candidate, the front, the budgets and the best; the
    latency panel also shows the finalists' measured latency."""
    budgets = budgets or {}
    limits = {"macs": budgets.get("flops"), "latency": budgets.get("latency")}
    front = fronts(records)
    fig = new_figure(figsize=(11, 4.5))
    axes = fig.subplots(1, 2)
    for ax, (name, (key, label, scale)) in zip(axes, OBJECTIVES.items()):
        ax.set(xlabel=label, ylabel="fitness (AO + SR0.5) / 2")
        if name not in front:
            ax.text(0.5, 0.5, "no latency table: pass --lut or --latency-budget", ha="center", va="center",
                    transform=ax.transAxes)
            continue
        ax.scatter([r[key] * scale for r in records], [r["fitness"] for r in records], s=10, c="0.6",
                   label=f"candidates ({len(records)})")
        ax.step([r[key] * scale for r in front[name]], [r["fitness"] for r in front[name]], "r.-", where="post",
                label="Pareto front")
        if name == "latency":
            measured = [r for r in records if r.get("latency_ms") is not None]
            if measured:
                ax.scatter([r["latency_ms"] for r in measured], [r["fitness"] for r in measured], marker="x", c="b",
                           label="finalists, measured")
        if limits[name] is not None:
            ax.axvline(limits[name] * (1e-6 if name == "macs" else 1e3), color="k", ls="--", lw=1, label="budget")
        if best is not None:
            ax.scatter([best[key] * scale], [best["fitness"]], marker="*", s=160, c="gold", edgecolors="k",
                       label="best", zorder=3)
        ax.legend(loc="lower right", fontsize=8)
    save_figure(fig, path)
