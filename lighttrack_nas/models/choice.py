"""Weight-sharing building blocks: a labelled choice among candidate modules, and freezing.

``LayerChoice(label, {value: module})`` holds every candidate of one choice; ``activate(model,
arch)`` points each LayerChoice at ``arch[label]`` (single path), and ``freeze(model, arch)``
returns a deep copy in which every LayerChoice is replaced by a copy of its chosen candidate,
so no choice machinery and no unused weights remain (NNI's ``freeze(sample) -> nn.Module``).

Kernel sharing (OFA's elastic kernel): candidates of one op type that differ only in ``kernel``
can share one set of weights, the smaller kernels using the centre of the largest
(:class:`SharedKernel`); ops that support it implement ``forward(x, kernel=k)`` and
``with_kernel(k)``. Width sharing (OFA's elastic width): the candidates of a width choice run one
chain built at the largest width with their first channels (:class:`WidthSlice`).
"""
from __future__ import annotations

import copy
from collections.abc import Collection, Mapping
from typing import Any

import torch
from torch import nn

from ..config import UnknownNameError
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


class SharedKernel(nn.Module):
    """A candidate running the shared op ``shared`` with the centre ``kernel x kernel`` taps."""

    def __init__(self, shared: nn.Module, kernel: int):
        super().__init__()
        self.shared, self.kernel = shared, kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shared(x, kernel=self.kernel)

    def materialize(self) -> nn.Module:
        """The plain op with its own (cropped) weights, for stand-alone subnets."""
        return self.shared.with_kernel(self.kernel)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}"


class WidthSlice(nn.Module):
    """A candidate of a width choice (OFA's elastic width): the shared chain ``shared``, built at the
    largest width, run with the first ``width`` channels of every layer's output (the first layer
    reads its whole input). Layers that support it have a ``width`` attribute and a
    ``sliced(in_channels, out_channels, kernel)`` copy method; the last layer only adapts its input."""

    def __init__(self, shared: nn.Sequential, width: int):
        super().__init__()
        self.shared, self.width = shared, width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.shared.modules():
            if hasattr(m, "sliced") and hasattr(m, "width"):
                m.width = self.width
        return self.shared(x)

    def expand(self) -> nn.Sequential:
        """The chain at this width as plain modules with their own copies of the sliced weights
        (choices inside kept, each candidate sliced)."""
        layers = []
        for j, layer in enumerate(self.shared):
            in_channels = None if j == 0 else self.width
            out_channels = None if j == len(self.shared) - 1 else self.width
            if isinstance(layer, LayerChoice):
                choice = LayerChoice(layer.label, {v: _sliced(c, in_channels, out_channels)
                                                   for v, c in layer.candidates.items()})
                choice.active = layer.active
                layers.append(choice)
            else:
                layers.append(_sliced(layer, in_channels, out_channels))
        return nn.Sequential(*layers)

    def extra_repr(self) -> str:
        return f"width={self.width}"


def _sliced(module: nn.Module, in_channels: int | None, out_channels: int | None) -> nn.Module:
    if isinstance(module, SharedKernel):
        return module.shared.sliced(in_channels, out_channels, module.kernel)
    if hasattr(module, "sliced"):
        return module.sliced(in_channels, out_channels)
    return copy.deepcopy(module)  # parameter-free ops (identity)


def op_choice(label: str, values: list[Any], ops: Mapping[str, Mapping[str, Any]], in_channels: int,
              out_channels: int, stride: int = 1, share_kernels: Collection[str] = ()) -> LayerChoice:
    """A LayerChoice whose candidates are the registered ops named by ``values``.

    Candidates whose op type is in ``share_kernels`` and whose specs differ only in ``kernel`` share
    the weights of the largest kernel among them."""
    groups: dict[str, list[Any]] = {}
    for v in values:
        spec = ops[v]
        if spec.get("type") in share_kernels and "kernel" in spec:
            groups.setdefault(repr(sorted((k, x) for k, x in spec.items() if k != "kernel")), []).append(v)
    candidates: dict[str, nn.Module] = {}
    for members in groups.values():
        if len(members) > 1:
            largest = max(members, key=lambda v: int(ops[v]["kernel"]))
            shared = build_op(ops[largest], in_channels, out_channels, stride)
            if not hasattr(shared, "with_kernel"):
                raise TypeError(f"{label}: op type {ops[largest]['type']!r} does not support kernel sharing "
                                f"(it needs forward(x, kernel=k) and with_kernel(k))")
            candidates.update({str(v): SharedKernel(shared, int(ops[v]["kernel"])) for v in members})
    return LayerChoice(label, {str(v): candidates.get(str(v)) or build_op(ops[v], in_channels, out_channels, stride)
                               for v in values})


def activate(model: nn.Module, arch: Mapping[str, Any]) -> None:
    """Point every LayerChoice in ``model`` at the value ``arch`` gives its label."""
    for m in model.modules():
        if isinstance(m, LayerChoice):
            value = str(arch[m.label])
            if value not in m.candidates:
                raise UnknownNameError(f"{m.label}: {value!r} is not a candidate ({', '.join(m.candidates)})")
            m.active = value


def freeze(model: nn.Module, arch: Mapping[str, Any]) -> nn.Module:
    """A deep copy of ``model`` with every LayerChoice replaced by its chosen candidate."""
    activate(model, arch)
    return _replace_choices(copy.deepcopy(model))


def _replace_choices(module: nn.Module) -> nn.Module:
    if isinstance(module, LayerChoice):
        return _replace_choices(module.chosen())
    if isinstance(module, SharedKernel):
        return module.materialize()
    if isinstance(module, WidthSlice):
        return _replace_choices(module.expand())
    for name, child in list(module.named_children()):
        setattr(module, name, _replace_choices(child))
    return module


def path_parameters(model: nn.Module) -> list[torch.nn.Parameter]:
    """Parameters on the active path (excluding every inactive LayerChoice candidate)."""
    seen: dict[int, torch.nn.Parameter] = {}
    stack = [model]
    while stack:
        module = stack.pop()
        if isinstance(module, LayerChoice):
            stack.append(module.chosen())
            continue
        seen.update({id(p): p for p in module.parameters(recurse=False)})
        stack.extend(module.children())
    order = {id(p): i for i, p in enumerate(model.parameters())}
    return sorted(seen.values(), key=lambda p: order[id(p)])
