"""Per-op tables over the LightTrack supernet: a value per candidate module, summed along a path.

``PathTable(supernet, measure)`` evaluates ``measure(module, *inputs)`` once for every candidate
module at the input shape it sees (memoised by module structure and shape, so identical layers
are measured once) and sums the entries on an architecture's path. With fvcore counts this is the
fast MACs model (:class:`CostTable`, equal to the full fvcore count of the extracted subnet); with
measured times it is the latency lookup table (``lighttrack_nas.cost.latency``).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..models.choice import WidthSlice
from ..models.lighttrack import LightTrackSupernet
from ..models.ops import Skip
from ..space.space import Architecture
from .count import Cost, eval_mode, fvcore_macs

Measure = Callable[..., float]
PARTS = ("backbone", "neck", "head")


class PathTable:
    """Entries ``(part, key) -> value`` for branch ``x`` (search, per frame) and optionally ``z``."""

    def __init__(self, supernet: LightTrackSupernet, entries: dict[tuple, float]):
        self.space, self.positions, self.entries = supernet.space, supernet.positions, entries
        self.layer_labels = [layer.label for layer in supernet.layers]
        self.tower_labels = {k: [m.label for m in _tower(next(iter(supernet.towers[k].candidates.values())))
                                 if hasattr(m, "label")]
                             for k in ("cls", "reg")}
        self.memo: dict[tuple, float] = {}

    @classmethod
    def measure(cls, supernet: LightTrackSupernet, measure: Measure, branches: tuple[str, ...] = ("x",)) -> "PathTable":
        """Evaluate ``measure(module, *inputs)`` for every candidate at the shape it sees."""
        table = cls(supernet, {})
        table.fill(supernet, measure, branches)
        return table

    def fill(self, supernet: LightTrackSupernet, measure: Measure, branches: tuple[str, ...]) -> None:
        self.measure_fn = measure
        with eval_mode(supernet):   # the shape walk must not touch BatchNorm running statistics
            net, shapes = supernet, {}
            with torch.no_grad():
                for branch in branches:
                    size = net.search_size if branch == "x" else net.template_size
                    t = torch.zeros(1, 3, size, size)
                    self.entries[("stem", branch)] = self._value(net.stem, t)
                    t = net.stem(t)
                    for i, layer in enumerate(net.layers):
                        for op, module in layer.candidates.items():
                            self.entries[("layer", i, op, branch)] = self._value(module, t)
                        t = next(iter(layer.candidates.values()))(t)
                        shapes[(branch, i)] = t.shape
            for value, pos in net.positions.items():
                norm, neck = net.position_norms[value], net.necks[str(pos.stride)]
                xs, side = shapes[("x", pos.layer)], net.template_size // pos.stride
                zs = torch.Size((1, pos.channels, side, side))
                self.entries[("neck", value, "x")] = self._value(norm.search, torch.zeros(xs)) + \
                    self._value(neck, torch.zeros(zs), torch.zeros(xs))
                if "z" in branches:
                    self.entries[("neck", value, "z")] = self._value(norm.template, torch.zeros(zs))
            neck_channels = next(iter(net.necks.values())).adjust.out_channels
            for kind in ("cls", "reg"):
                for width, candidate in net.towers[kind].candidates.items():
                    tower = _tower(candidate)
                    for j, module in enumerate(tower):
                        ops = module.candidates if hasattr(module, "candidates") else {"predictor": module}
                        in_ch = neck_channels if j == 0 else tower[-1].conv.in_channels
                        for op, m in ops.items():
                            for stride in {p.stride for p in net.positions.values()}:
                                side = net.search_size // stride
                                self.entries[("tower", kind, width, j, op, stride)] = \
                                    0.0 if isinstance(m, Skip) else self._value(m, torch.zeros(1, in_ch, side, side))

    def _value(self, module: nn.Module, *inputs: torch.Tensor) -> float:
        key = (repr(module), tuple(tuple(t.shape) for t in inputs))
        if key not in self.memo:
            self.memo[key] = self.measure_fn(module, *inputs)
        return self.memo[key]

    def path(self, arch: Architecture, branch: str = "x") -> list[tuple[str, tuple]]:
        """The ``(part, entry key)`` pairs an architecture's path runs through."""
        pos = self.positions[str(arch["out"])]
        keys = [("backbone", ("stem", branch))]
        keys += [("backbone", ("layer", i, str(arch[self.layer_labels[i]]), branch)) for i in range(pos.layer + 1)]
        keys.append(("neck", ("neck", pos.value, branch)))
        if branch == "x":
            for kind in ("cls", "reg"):
                width = str(arch[f"{kind}_w"])
                ops = [str(arch[label]) for label in self.tower_labels[kind]] + ["predictor"]
                keys += [("head", ("tower", kind, width, j, op, pos.stride)) for j, op in enumerate(ops)]
        return keys

    def parts(self, arch: Architecture, branch: str = "x") -> dict[str, float]:
        """Per-part sums (backbone, neck, head) along the path."""
        out = dict.fromkeys(PARTS, 0.0)
        for part, key in self.path(arch, branch):
            out[part] += self.entries[key]
        return out

    def total(self, arch: Architecture, branch: str = "x") -> float:
        return sum(self.entries[key] for _, key in self.path(arch, branch))


class CostTable:
    """Fast MACs / params: fvcore counts per candidate, summed along the path."""

    def __init__(self, supernet: LightTrackSupernet):
        self.macs_table = PathTable.measure(supernet, fvcore_macs, branches=("x", "z"))
        self.params_table = PathTable.measure(supernet, lambda m, *_: _params(m))
        # the template-side BatchNorm runs in the template branch but its parameters are the subnet's
        self.template_norm_params = {v: _params(n.template) for v, n in supernet.position_norms.items()}

    def cost(self, arch: Architecture) -> Cost:
        """MACs per frame, parameters, template MACs and the backbone/neck/head breakdown."""
        macs, params = self.macs_table.parts(arch), self.params_table.parts(arch)
        params["neck"] += self.template_norm_params[str(arch["out"])]
        parts = {p: {"macs": int(macs[p]), "params": int(params[p])} for p in PARTS}
        return Cost(macs=int(sum(macs.values())), params=int(sum(params.values())),
                    template_macs=int(self.macs_table.total(arch, "z")), parts=parts)

    def macs(self, arch: Architecture) -> int:
        return int(self.macs_table.total(arch))

    def params(self, arch: Architecture) -> int:
        return int(self.params_table.total(arch)) + self.template_norm_params[str(arch["out"])]


def _tower(candidate: nn.Module) -> nn.Sequential:
    """A tower candidate as a plain chain of its layers (a shared-width tower sliced to its width)."""
    return candidate.expand() if isinstance(candidate, WidthSlice) else candidate


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
