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

Pruning is iterative (:func:`prune_iteratively`, shared with the ViT's torch-pruning method): each
step ranks the units (channels) of all groups globally by the criterion's importance and removes a
slice sized from the remaining gap to the budget, then re-counts the parameters, or the MACs
(estimated from the layers' widths between fvcore counts, counted by fvcore near the target, so the
budget is always checked exactly), until the network is within the budget. Per-layer minimum widths
bound every group; a budget below the network at its minimum widths raises :class:`BudgetError`.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from tqdm import tqdm

from ..config import Field
from ..cost.count import LayerMacs, frame_macs
from ..models.tracking import Predictor, TrackingNet

CRITERIA = ("magnitude", "slimming")
BUDGET_KINDS = ("macs", "params")
NORMALIZERS = ("none", "mean", "max")
"""How each group's importances are scaled before the global ranking: ``none`` keeps the raw values
(one threshold for the whole network, Network Slimming's), ``mean`` / ``max`` divide them by the
group's mean / maximum, so each layer is ranked relative to itself."""
DEFAULT_NORMALIZER = {"magnitude": "mean", "torch-pruning": "mean", "slimming": "none"}


class BudgetError(ValueError):
    """A budget cannot be met; the message names it and the smallest achievable cost."""


def check_width(value: Any, where: str) -> int:
    """``value`` if it is an integer >= 1 (a minimum width), else ConfigError naming ``where``."""
    Field(int, low=1).check(value, where)
    return value


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
            check_width(value, f"prune.{name}")
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
    return {"macs": frame_macs(model), "params": sum(p.numel() for p in model.parameters())}


def importance(criterion: str, norm: int = 1, normalizer: str | None = None) -> tp.importance.Importance:
    """``magnitude``: group L``norm`` of the conv filters; ``torch-pruning`` (the ViT's): the same
    over convs and linear layers; ``slimming``: BatchNorm scale |gamma| (Network Slimming). Scores
    are scaled per group by ``normalizer`` (:data:`NORMALIZERS`; None: the criterion's
    :data:`DEFAULT_NORMALIZER`, ``mean`` for the magnitudes, ``none`` for slimming's global threshold)."""
    if criterion not in DEFAULT_NORMALIZER:
        raise ValueError(f"criterion {criterion!r} is not one of {list(DEFAULT_NORMALIZER)}")
    normalizer = normalizer or DEFAULT_NORMALIZER[criterion]
    if normalizer not in NORMALIZERS:
        raise ValueError(f"prune.normalizer: {normalizer!r} is not one of {list(NORMALIZERS)}")
    scale = None if normalizer == "none" else normalizer
    if criterion == "slimming":
        return tp.importance.BNScaleImportance(normalizer=scale)
    if norm not in (1, 2):
        raise ValueError(f"prune.norm: {norm!r} is not one of [1, 2]")
    types = [nn.modules.conv._ConvNd] + ([nn.Linear] if criterion == "torch-pruning" else [])
    return tp.importance.GroupMagnitudeImportance(p=norm, normalizer=scale, target_types=types)


class ChannelGraph:
    """torch-pruning's dependency graph of the convs that ``trace(model, example)`` runs; groups
    holding an output of an ``ignored`` module (kept widths) are never pruned."""

    def __init__(self, model: nn.Module, example: torch.Tensor,
                 trace: Callable[[nn.Module, torch.Tensor], list[torch.Tensor]], ignored: Sequence[nn.Module]):
        was_training = model.training
        self.graph = tp.DependencyGraph().build_dependency(model, example_inputs=example, forward_fn=trace,
                                                           verbose=False)
        model.train(was_training)
        self.ignored = list(ignored)
        self.names = {m: n for n, m in model.named_modules()}

    @classmethod
    def of_tracking_net(cls, model: TrackingNet) -> "ChannelGraph":
        """The prunable part of a convolutional tracking network (the CNN, a LightTrack subnet):
        backbone -> position norms, and the towers fed by the neck's output conv from a stand-in
        correlation (the neck, so the towers' inputs, and the predictors' outputs are kept; a
        depthwise first tower layer is therefore kept at the neck's width too)."""
        backbone, norm, neck, cls_tower, reg_tower, stride = model._parts()
        side = model.search_size // stride
        stand_in = torch.zeros(1, neck.adjust.in_channels, side, side)

        def trace(_: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
            feat, head_in = backbone(x), neck.adjust(stand_in)
            return [norm.template(feat), norm.search(feat), cls_tower(head_in), reg_tower(head_in)]

        return cls(model, torch.zeros(1, 3, model.search_size, model.search_size), trace,
                   [neck, neck.adjust, *(m.conv for m in model.modules() if isinstance(m, Predictor))])

    def groups(self, min_widths: MinWidths) -> list[tuple[Any, str, int, int]]:
        """``(group, root module name, channels, minimum)`` of every prunable group."""
        out = []
        for group in self.graph.get_all_groups(ignored_layers=self.ignored, root_module_types=[nn.Conv2d]):
            convs = [dep.target.module for dep, _ in group
                     if self.graph.is_out_channel_pruning_fn(dep.handler) and isinstance(dep.target.module, nn.Conv2d)]
            root = group[0].dep.target.module
            channels = self.graph.get_out_channels(root)
            out.append((group, self.names[root], channels,
                        min(channels, max(min_widths(self.names[c]) for c in convs))))
        return out


def smallest_cost(model: TrackingNet, min_widths: MinWidths) -> dict[str, int]:
    """MACs/params of (a copy of) ``model`` with every prunable group at its minimum width."""
    small = copy.deepcopy(model)
    for group, _, channels, lowest in ChannelGraph.of_tracking_net(small).groups(min_widths):
        if channels > lowest:
            group.prune(idxs=list(range(lowest, channels)))
    return measure(small)


def check_request(budget: float, kind: str) -> None:
    """A budget kind of :data:`BUDGET_KINDS` and a fraction in (0, 1], or ValueError."""
    if kind not in BUDGET_KINDS:
        raise ValueError(f"budget kind {kind!r} is not one of {list(BUDGET_KINDS)}")
    if not 0 < budget <= 1:
        raise ValueError(f"budget {budget!r}: expected a fraction of the dense {kind} in (0, 1]")


def require_budget(budget: float, kind: str, dense: Mapping[str, int], smallest: Mapping[str, int],
                   minimums: str = "prune.min_width / prune.min_width_layers") -> None:
    """Raise BudgetError naming ``budget`` and the smallest achievable cost (with every pruned
    width at its minimum, set by the ``minimums`` config keys) when it is below that cost."""
    if smallest[kind] > budget * dense[kind]:
        raise BudgetError(
            f"budget {budget:g} of the dense {kind} ({dense[kind] / 1e6:.3f} M -> "
            f"target {budget * dense[kind] / 1e6:.4f} M) "
            f"cannot be met: the smallest achievable is {smallest[kind] / 1e6:.4f} M {kind} "
            f"({smallest[kind] / dense[kind]:.4f} of dense) with every pruned layer at its minimum width "
            f"({minimums})")


def check_budget(model: TrackingNet, budget: float, kind: str,
                 min_widths: MinWidths) -> tuple[dict[str, int], dict[str, int]]:
    """(dense cost, smallest achievable cost); raises BudgetError when ``budget`` cannot be met."""
    check_request(budget, kind)
    dense, smallest = measure(model), smallest_cost(model, min_widths)
    require_budget(budget, kind, dense, smallest)
    return dense, smallest


@dataclass
class Units:
    """One coupled width of a network in a pruning step: an importance per unit (channel, neuron,
    head dimension, head), the fewest units it keeps, and how to remove some (sorted indices)."""

    scores: torch.Tensor
    minimum: int
    remove: Callable[[list[int]], Any]


EXACT_WITHIN = 0.01
"""Pruning counts the MACs exactly (fvcore) once the estimate is within this fraction of the target."""


class _Progress:
    """The MACs or parameters of a network being pruned: parameters counted exactly every step; MACs
    estimated from :class:`~lighttrack_nas.cost.count.LayerMacs` relative to the last exact (fvcore)
    count, and counted exactly once the estimate is within :data:`EXACT_WITHIN` of ``target``."""

    def __init__(self, model: nn.Module, kind: str, target: float, dense: Mapping[str, int]):
        self.model, self.target = model, target
        self.layers = LayerMacs(model) if kind == "macs" else None
        self.anchor = (dense[kind], self.layers()) if self.layers else None

    def __call__(self) -> float:
        if self.layers is None:
            return sum(p.numel() for p in self.model.parameters())
        layers = self.layers()
        estimate = self.anchor[0] * layers / self.anchor[1]
        if estimate > self.target * (1 + EXACT_WITHIN):
            return estimate
        self.anchor = (frame_macs(self.model), layers)
        return self.anchor[0]

    def final(self) -> dict[str, int]:
        """:func:`measure` of the network once pruning has stopped: the MACs of the last exact count
        (pruning stops only on one), counted again for a parameter budget."""
        macs = self.anchor[0] if self.layers else frame_macs(self.model)
        return {"macs": macs, "params": sum(p.numel() for p in self.model.parameters())}


def prune_iteratively(model: nn.Module, budget: float, kind: str, dense: Mapping[str, int],
                      units: Callable[[], list[Units]], progress: bool = True) -> PruneResult:
    """Remove the globally least important ``units()`` of ``model`` step by step (each step about
    half of what uniform width scaling would need, cost ~ width^2), re-counting (:class:`_Progress`:
    fvcore only near the target), until its ``kind`` is at most ``budget`` x ``dense``."""
    target, steps = budget * dense[kind], 0
    current, count_cost = float(dense[kind]), _Progress(model, kind, budget * dense[kind], dense)
    bar = tqdm(total=100, desc=f"pruning to {budget:g} {kind}", disable=not progress, dynamic_ncols=True,
               bar_format="{l_bar}{bar}| [{elapsed}{postfix}]")
    while current > target:
        offered = units()
        scored = [u for u in offered if len(u.scores) > u.minimum]
        if not scored:  # the budget checks make this unreachable
            raise BudgetError(f"budget {budget:g}: no prunable channel left at {current:.0f} {kind}")
        total = sum(len(u.scores) for u in offered)
        count = max(1, int(0.5 * (1 - math.sqrt(target / current)) * total))
        ranked = sorted((float(v), i, c) for i, u in enumerate(scored) for c, v in enumerate(u.scores.tolist()))
        chosen: dict[int, list[int]] = {}
        for _, i, c in ranked:
            if len(chosen.get(i, [])) < len(scored[i].scores) - scored[i].minimum:
                chosen.setdefault(i, []).append(c)
                count -= 1
                if count == 0:
                    break
        for i, idxs in chosen.items():
            scored[i].remove(sorted(idxs))
        current, steps = count_cost(), steps + 1
        done = (dense[kind] - current) / (dense[kind] - target)
        bar.update(min(100.0, 100 * done) - bar.n)
        bar.set_postfix_str(f"step {steps}, {kind} {current / dense[kind]:.3f} of dense")
    bar.close()
    return PruneResult(dict(dense), count_cost.final(), steps)


def prune_to_budget(model: TrackingNet, budget: float, kind: str = "macs", criterion: str = "magnitude",
                    min_widths: MinWidths = MinWidths(), norm: int = 1, progress: bool = True,
                    normalizer: str | None = None) -> PruneResult:
    """Prune the channels of CNN ``model`` in place until its ``kind`` (macs or params) is at most
    ``budget`` x dense, ranking channels by ``importance(criterion, norm, normalizer)``."""
    dense, _ = check_budget(model, budget, kind, min_widths)
    scorer = importance(criterion, norm, normalizer)
    graph = ChannelGraph.of_tracking_net(model)

    def units() -> list[Units]:
        return [Units(s, lowest, group.prune) for group, _, _, lowest in graph.groups(min_widths)
                if (s := scorer(group)) is not None]

    return prune_iteratively(model, budget, kind, dense, units, progress)
