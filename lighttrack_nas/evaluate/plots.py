"""Success and precision plots of one or several trackers (matplotlib, Agg, no pyplot state)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .metrics import (NORM_PRECISION_THRESHOLDS, PRECISION_THRESHOLDS, SUCCESS_THRESHOLDS,
                      OPEResult)
from ..io import new_figure, save_figure


def plot_ope(results: Mapping[str, OPEResult], path: str | Path, title: str = "") -> Path:
    """Write a PNG with the success, precision and normalised precision plots of each tracker.

    Legends give each tracker's AUC, precision at 20 px and normalised precision at 0.20; the
    trackers are listed best first. Returns ``path``.
    """
    if not results:
        raise ValueError("no trackers to plot")
    figure = new_figure(figsize=(15, 4.6))
    panels = [
        ("Success plot", "overlap threshold", "success rate", SUCCESS_THRESHOLDS, "success_curve",
         "success_auc", "AUC"),
        ("Precision plot", "location error threshold (px)", "precision", PRECISION_THRESHOLDS,
         "precision_curve", "precision20", "P@20"),
        ("Normalised precision plot", "normalised location error threshold", "normalised precision",
         NORM_PRECISION_THRESHOLDS, "norm_precision_curve", "norm_precision20", "NP@0.2"),
    ]
    for index, (name, xlabel, ylabel, thresholds, curve, score, label) in enumerate(panels, start=1):
        axes = figure.add_subplot(1, 3, index)
        for tracker, result in sorted(results.items(), key=lambda item: -getattr(item[1], score)):
            axes.plot(thresholds, getattr(result, curve), linewidth=2,
                      label=f"{tracker} [{label} {getattr(result, score):.3f}]")
        axes.set(title=f"{name} {title}".strip(), xlabel=xlabel, ylabel=ylabel,
                 xlim=(thresholds[0], thresholds[-1]), ylim=(0, 1.02))
        axes.grid(True, alpha=0.3)
        axes.legend(loc="lower left" if index == 1 else "lower right", fontsize=8)
    return save_figure(figure, path)
