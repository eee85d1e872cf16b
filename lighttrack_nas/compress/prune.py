"""Structured channel pruning of a tracking network to a MACs or parameter budget (torch-pruning).

Channels are removed physically (convs, BatchNorms and every layer coupled to them are rebuilt
smaller), so MACs, parameters and measured latency really drop. torch-pruning's DependencyGraph
finds the coupled groups: the output channels of a conv, its BatchNorm, the next convs' inputs, and
for residual stages every block output and the projection shortcut together.

What is pruned and what is kept:

- pruned: backbone convs (template and search run the same backbone, so both branches stay
  consistent), the template/search BatchNorms on the features, the tower convs;
- kept: the correlation neck (its weights act on template positions, not on feature channels: the
  correlation contracts over the channels) and the predictors' 1 and 4 outputs.

The dependency graph is traced on ``backbone -> position norms`` and on the towers fed from a
stand-in neck output, so the neck's reshapes and matmul never enter it.

Pruning is iterative: each step ranks the channels of all groups globally by the criterion's
importance and removes a slice sized from the remaining gap to the budget, then re-counts the MACs
(fvcore) or parameters, until the network is within the budget. Per-layer minimum widths bound
every group; a budget below the network at its minimum widths raises :class:`BudgetError`.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatch
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from tqdm import tqdm

from ..cost.count import count_tracking_model
from ..models.lighttrack import Predictor, TrackingNet

CRITERIA = ("magnitude", "slimming")
BUDGET_KINDS = ("macs", "params")


class BudgetError(ValueError):
    """A budget cannot be met; the message names it and the smallest achievable cost."""


@dataclass(frozen=True)
class MinWidths:
    """Smallest output width of each pruned conv: the value of the first fnmatch pattern in ``layers``
    matching its module name (e.g. ``backbone.0.*`` for the stem), else ``default``."""

    default: int = 1
    layers: tuple[tuple[str, int], ...] = ()

    @classmethod
    def from_config(cls, default: int, layers: Mapping[str, int] | None = None) -> "MinWidths":
        layers = dict(layers or {})
        for name, value in (("min_width", default), *((f"min_width_layers[{k!r}]", v) for k, v in layers.items())):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"prune.{name}: expected an integer >= 1, got {value!r}")
        return cls(default, tuple((str(k), v) for k, v in layers.items()))

    def __call__(self, name: str) -> int:
        return next((width for pattern, width in self.layers if fnmatch(name, pattern)), self.default)


@dataclass
class PruneResult:
    """Dense and pruned MACs/params and the number of pruning steps."""

    dense: dict[str, int]
    pruned: dict[str, int]
    steps: int

    def ratio(self, kind: str) -> float:
        return self.pruned[kind] / self.dense[kind]


def measure(model: TrackingNet) -> dict[str, int]:
    """Per-frame MACs (fvcore, LightTrack's convention) and parameters of ``model``."""
    was_training = model.training
    cost = count_tracking_model(model)
    model.train(was_training)
    return {"macs": cost.macs, "params": cost.params}


def importance(criterion: str, norm: int = 1) -> tp.importance.Importance:
    """``magnitude``: group L``norm`` of the conv filters, normalised per group (mean); ``slimming``:
    BatchNorm scale |gamma|, unnormalised so one global threshold applies (Network Slimming)."""
    if criterion == "magnitude":
        if norm not in (1, 2):
            raise ValueError(f"prune.norm: {norm!r} is not one of [1, 2]")
        return tp.importance.GroupMagnitudeImportance(p=norm, normalizer="mean", target_types=[nn.modules.conv._ConvNd])
    if criterion == "slimming":
        return tp.importance.BNScaleImportance(normalizer=None)
    raise ValueError(f"criterion {criterion!r} is not one of {list(CRITERIA)}")


class _Graph:
    """torch-pruning's dependency graph of a tracking network's prunable part."""

    def __init__(self, model: TrackingNet):
        self.model = model
        backbone, norm, neck, cls_tower, reg_tower, stride = model._parts()
        side = model.search_size // stride
        stand_in = torch.zeros(1, neck.adjust.out_channels, side, side)  # the neck's output, which is kept

        def trace(_: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
            feat = backbone(x)
            return [norm.template(feat), norm.search(feat), cls_tower(stand_in), reg_tower(stand_in)]

        was_training = model.training
        self.graph = tp.DependencyGraph().build_dependency(
            model, example_inputs=torch.zeros(1, 3, model.search_size, model.search_size), forward_fn=trace,
            verbose=False)
        model.train(was_training)
        self.ignored = [neck, *(m.conv for m in model.modules() if isinstance(m, Predictor))]
        self.names = {m: n for n, m in model.named_modules()}

    def groups(self, min_widths: MinWidths) -> list[tuple[Any, int, int]]:
        """``(group, channels, minimum)`` of every prunable group."""
        out = []
        for group in self.graph.get_all_groups(ignored_layers=self.ignored, root_module_types=[nn.Conv2d]):
            convs = [dep.target.module for dep, _ in group
                     if self.graph.is_out_channel_pruning_fn(dep.handler) and isinstance(dep.target.module, nn.Conv2d)]
            channels = self.graph.get_out_channels(group[0].dep.target.module)
            out.append((group, channels, min(channels, max(min_widths(self.names[c]) for c in convs))))
        return out


def smallest_cost(model: TrackingNet, min_widths: MinWidths) -> dict[str, int]:
    """MACs/params of (a copy of) ``model`` with every prunable group at its minimum width."""
    small = copy.deepcopy(model)
    graph = _Graph(small)
    for group, channels, lowest in graph.groups(min_widths):
        if channels > lowest:
            group.prune(idxs=list(range(lowest, channels)))
    return measure(small)


def check_budget(model: TrackingNet, budget: float, kind: str,
                 min_widths: MinWidths) -> tuple[dict[str, int], dict[str, int]]:
    """(dense cost, smallest achievable cost); raises BudgetError when ``budget`` cannot be met."""
    if kind not in BUDGET_KINDS:
        raise ValueError(f"budget kind {kind!r} is not one of {list(BUDGET_KINDS)}")
    if not 0 < budget <= 1:
        raise ValueError(f"budget {budget!r}: expected a fraction of the dense {kind} in (0, 1]")
    dense, smallest = measure(model), smallest_cost(model, min_widths)
    if smallest[kind] > budget * dense[kind]:
        raise BudgetError(
            f"budget {budget:g} of the dense {kind} ({dense[kind] / 1e6:.3f} M -> "
            f"target {budget * dense[kind] / 1e6:.4f} M) "
            f"cannot be met: the smallest achievable is {smallest[kind] / 1e6:.4f} M {kind} "
            f"({smallest[kind] / dense[kind]:.4f} of dense) with every pruned layer at its minimum width "
            f"(prune.min_width / prune.min_width_layers)")
    return dense, smallest


def prune_to_budget(model: TrackingNet, budget: float, kind: str = "macs", criterion: str = "magnitude",
                    min_widths: MinWidths = MinWidths(), norm: int = 1, progress: bool = True) -> PruneResult:
    """Prune ``model`` in place until its ``kind`` (macs or params) is at most ``budget`` x dense."""
    dense, _ = check_budget(model, budget, kind, min_widths)
    scorer = importance(criterion, norm)
    graph = _Graph(model)
    target, current, steps = budget * dense[kind], dense, 0
    bar = tqdm(total=100, desc=f"pruning to {budget:g} {kind}", disable=not progress, dynamic_ncols=True,
               bar_format="{l_bar}{bar}| [{elapsed}{postfix}]")
    while current[kind] > target:
        groups = graph.groups(min_widths)
        scored = [(g, s, n - lo) for g, n, lo in groups if n > lo and (s := scorer(g)) is not None]
        if not scored:  # check_budget makes this unreachable unless the criterion scores no group
            raise BudgetError(f"budget {budget:g}: no prunable channel left at {current[kind]} {kind}")
        # remove about half of the channels that uniform width scaling would need (cost ~ width^2)
        total = sum(n for _, n, _ in groups)
        count = max(1, int(0.5 * (1 - math.sqrt(target / current[kind])) * total))
        ranked = sorted((float(v), i, c) for i, (_, s, _) in enumerate(scored) for c, v in enumerate(s.tolist()))
        chosen: dict[int, list[int]] = {}
        for _, i, c in ranked:
            if len(chosen.get(i, [])) < scored[i][2]:
                chosen.setdefault(i, []).append(c)
                count -= 1
                if count == 0:
                    break
        for i, idxs in chosen.items():
            scored[i][0].prune(idxs=sorted(idxs))
        current, steps = measure(model), steps + 1
        done = (dense[kind] - current[kind]) / (dense[kind] - target)
        bar.update(min(100.0, 100 * done) - bar.n)
        bar.set_postfix_str(f"step {steps}, {kind} {current[kind] / dense[kind]:.3f} of dense")
    bar.close()
    return PruneResult(dense, current, steps)
