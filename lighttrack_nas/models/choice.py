"""Weight-sharing building blocks: a labelled choice among candidate modules, and freezing.

``LayerChoice(label, {value: module})`` holds every candidate of one choice; ``activate(model,
arch)`` points each LayerChoice at ``arch[label]`` (single path), and ``freeze(model, arch)``
returns a deep copy in which every LayerChoice is replaced by a copy of its chosen candidate,
so no choice machinery and no unused weights remain (NNI's ``freeze(sample) -> nn.Module``).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .ops import build_op


class LayerChoice(nn.Module):
    """One labelled choice among candidate modules; forwards through the active one."""

    def __init__(self, label: str, candidates: Mapping[str, nn.Module]):
        super().__init__()
        self.label = label
        self.candidates = nn.ModuleDict({str(k): v for k, v in candidates.items()})
        self.active = next(iter(self.candidates))

    def forward(self, *args: Any) -> Any:
        return self.candidates[self.active](*args)

    def chosen(self) -> nn.Module:
        return self.candidates[self.active]

    def extra_repr(self) -> str:
        return f"label={self.label!r}, active={self.active!r}"


def op_choice(label: str, values: list[Any], ops: Mapping[str, Mapping[str, Any]], in_channels: int,
              out_channels: int, stride: int = 1) -> LayerChoice:
    """A LayerChoice whose candidates are the registered ops named by ``values``."""
    return LayerChoice(label, {str(v): build_op(ops[v], in_channels, out_channels, stride) for v in values})


def activate(model: nn.Module, arch: Mapping[str, Any]) -> None:
    """Point every LayerChoice in ``model`` at the value ``arch`` gives its label."""
    for m in model.modules():
        if isinstance(m, LayerChoice):
            value = str(arch[m.label])
            if value not in m.candidates:
                raise KeyError(f"{m.label}: {value!r} is not a candidate ({', '.join(m.candidates)})")
            m.active = value


def freeze(model: nn.Module, arch: Mapping[str, Any]) -> nn.Module:
    """A deep copy of ``model`` with every LayerChoice replaced by its chosen candidate."""
    activate(model, arch)
    return _replace_choices(copy.deepcopy(model))


def _replace_choices(module: nn.Module) -> nn.Module:
    if isinstance(module, LayerChoice):
        return _replace_choices(module.chosen())
    for name, child in list(module.named_children()):
        setattr(module, name, _replace_choices(child))
    return module


def path_parameters(model: nn.Module) -> list[torch.nn.Parameter]:
    """Parameters on the active path (excluding every inactive LayerChoice candidate)."""
    inactive = {id(p) for m in model.modules() if isinstance(m, LayerChoice)
                for name, cand in m.candidates.items() if name != m.active for p in cand.parameters()}
    return [p for p in model.parameters() if id(p) not in inactive]
