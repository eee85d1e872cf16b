"""Fast costing for search: a per-op table of fvcore counts, summed per architecture.

Every candidate module of the LightTrack supernet is counted once with fvcore at the input shape
it sees (memoised by module structure and shape, so identical layers are counted once); an
architecture's cost is the sum of the entries on its path. The sum equals the full fvcore count of
the extracted subnet (tests check this on random architectures).
"""
from __future__ import annotations

import torch
from torch import nn

from ..models.lighttrack import LightTrackSupernet
from ..models.ops import Skip
from ..space.space import Architecture
from .count import Cost, fvcore_macs


class CostTable:
    """Per-op MACs/params of a LightTrack supernet; ``cost(arch)`` sums the path's entries."""

    def __init__(self, supernet: LightTrackSupernet):
        self.space = supernet.space
        self._memo: dict[tuple, int] = {}
        net = supernet
        self.stem = {"params": _params(net.stem)}
        self.layers: list[dict[str, dict[str, int]]] = []  # per layer: op -> macs_x, macs_z, params
        shapes = {}
        with torch.no_grad():
            for branch, size in (("x", net.search_size), ("z", net.template_size)):
                t = torch.zeros(1, 3, size, size)
                self.stem[f"macs_{branch}"] = self._count(net.stem, t)
                t = net.stem(t)
                for i, layer in enumerate(net.layers):
                    if branch == "x":
                        self.layers.append({v: {"params": _params(m)} for v, m in layer.candidates.items()})
                    for v, m in layer.candidates.items():
                        self.layers[i][v][f"macs_{branch}"] = self._count(m, t)
                    t = next(iter(layer.candidates.values()))(t)
                    shapes[(branch, i)] = tuple(t.shape)
        self.necks: dict[str, dict[str, int]] = {}
        for value, pos in net.positions.items():
            norm, neck = net.position_norms[value], net.necks[str(pos.stride)]
            xs, zs = shapes[("x", pos.layer)], shapes[("z", pos.layer)]
            self.necks[value] = {
                "macs_x": self._count(norm.search, torch.zeros(xs)) + self._count(neck, torch.zeros(zs), torch.zeros(xs)),
                "macs_z": self._count(norm.template, torch.zeros(zs)),
                "params": _params(norm) + _params(neck),
            }
        neck_channels = next(iter(net.necks.values())).adjust.out_channels
        self.towers: dict[tuple[str, str], list[dict[str, dict[str, int]]]] = {}
        strides = sorted({p.stride for p in net.positions.values()})
        for kind in ("cls", "reg"):
            for width, tower in net.towers[kind].candidates.items():
                entries = []
                for j, module in enumerate(tower):
                    ops = module.candidates if hasattr(module, "candidates") else {"predictor": module}
                    entry = {}
                    for v, m in ops.items():
                        in_ch = neck_channels if j == 0 else _width_of(tower)
                        entry[v] = {"params": _params(m)}
                        for st in strides:
                            side = net.search_size // st
                            entry[v][f"macs_{st}"] = 0 if isinstance(m, Skip) else self._count(m, torch.zeros(1, in_ch, side, side))
                    entries.append(entry)
                self.towers[(kind, width)] = entries
        self.positions = net.positions
        self.layer_labels = [layer.label for layer in net.layers]
        self.tower_labels = {kind: [m.label for m in next(iter(net.towers[kind].candidates.values()))
                                    if hasattr(m, "label")] for kind in ("cls", "reg")}

    def _count(self, module: nn.Module, *inputs: torch.Tensor) -> int:
        key = (repr(module), tuple(tuple(t.shape) for t in inputs))
        if key not in self._memo:
            self._memo[key] = fvcore_macs(module, *inputs)
        return self._memo[key]

    def cost(self, arch: Architecture) -> Cost:
        """MACs per frame, parameters, template MACs and the backbone/neck/head breakdown."""
        pos = self.positions[str(arch["out"])]
        backbone = {"macs": self.stem["macs_x"], "params": self.stem["params"]}
        template_macs = self.stem["macs_z"]
        for i in range(pos.layer + 1):
            entry = self.layers[i][str(arch[self.layer_labels[i]])]
            backbone["macs"] += entry["macs_x"]
            backbone["params"] += entry["params"]
            template_macs += entry["macs_z"]
        neck_entry = self.necks[pos.value]
        neck = {"macs": neck_entry["macs_x"], "params": neck_entry["params"]}
        template_macs += neck_entry["macs_z"]
        head = {"macs": 0, "params": 0}
        for kind in ("cls", "reg"):
            entries = self.towers[(kind, str(arch[f"{kind}_w"]))]
            ops = [str(arch[label]) for label in self.tower_labels[kind]] + ["predictor"]
            for entry, op in zip(entries, ops):
                head["macs"] += entry[op][f"macs_{pos.stride}"]
                head["params"] += entry[op]["params"]
        parts = {"backbone": backbone, "neck": neck, "head": head}
        return Cost(macs=sum(p["macs"] for p in parts.values()), params=sum(p["params"] for p in parts.values()),
                    template_macs=template_macs, parts=parts)

    def macs(self, arch: Architecture) -> int:
        return self.cost(arch).macs

    def params(self, arch: Architecture) -> int:
        return self.cost(arch).params


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _width_of(tower: nn.Sequential) -> int:
    return tower[-1].conv.in_channels
