"""Full MACs / parameter counts with fvcore, in LightTrack's convention.

One multiply-add counts as one FLOP (fvcore's convention for conv and matmul; BatchNorm counts
one per element and affine op as fvcore does). Per-frame cost = search branch + neck + head with
the template features cached; the template branch is reported separately.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn

# fvcore logs a warning for every op it does not count (elementwise ops, by design).
logging.getLogger("fvcore.nn.jit_analysis").setLevel(logging.ERROR)


@dataclass
class Cost:
    """Per-frame MACs, parameters, template-branch MACs and a per-part breakdown."""

    macs: int
    params: int
    template_macs: int
    parts: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode for the block (BatchNorm statistics untouched), then back in the mode it had."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def fvcore_macs(module: nn.Module, *inputs: torch.Tensor) -> int:
    """fvcore's count of ``module(*inputs)`` (eval mode, no gradients)."""
    with eval_mode(module), torch.no_grad():
        analysis = FlopCountAnalysis(module, inputs)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        return int(analysis.total())


class _Head(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, zf: torch.Tensor, x: torch.Tensor):
        return self.model.head(zf, x)


class _Template(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor):
        return self.model.template_features(z)


def _crops(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero template and search crops of ``model``'s sizes (batch 1): what every count runs."""
    return (torch.zeros(1, 3, model.template_size, model.template_size),
            torch.zeros(1, 3, model.search_size, model.search_size))


def frame_macs(model: nn.Module) -> int:
    """Per-frame MACs of a tracking model alone (search branch + neck + head, template cached): the
    ``macs`` of :func:`count_tracking_model` without the template trace and the breakdown."""
    z, x = _crops(model)
    with eval_mode(model), torch.no_grad():
        return fvcore_macs(_Head(model), model.template_features(z), x)


class LayerMacs:
    """The multiply-adds of a tracking model's convolutions and linear layers in one frame, from their
    current widths and the output positions one forward recorded (structured pruning never changes
    them): microseconds per call against fvcore's trace, and proportional to fvcore's count up to the
    ops it leaves out (BatchNorm, the correlation, attention), so a ratio between two calls estimates
    fvcore's ratio closely."""

    def __init__(self, model: nn.Module):
        self.positions: dict[nn.Module, int] = {}

        def record(module: nn.Module, _: tuple, out: torch.Tensor) -> None:
            channels = out.shape[1] if isinstance(module, nn.Conv2d) else out.shape[-1]
            self.positions[module] = self.positions.get(module, 0) + out.numel() // channels

        z, x = _crops(model)
        with eval_mode(model), torch.no_grad():
            zf = model.template_features(z)
            hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
            try:
                model.head(zf, x)
            finally:
                for hook in hooks:
                    hook.remove()

    def __call__(self) -> int:
        total = 0
        for module, positions in self.positions.items():
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                total += positions * module.out_channels * module.in_channels // module.groups * kh * kw
            else:
                total += positions * module.out_features * module.in_features
        return total


def count_tracking_model(model: nn.Module) -> Cost:
    """Full fvcore count of a tracking model (``template_features`` + ``head``), e.g. a subnet, run in
    eval mode (``model`` is left in the mode it had). ``parts`` holds each top-level child's MACs and params."""
    z, x = _crops(model)
    with eval_mode(model), torch.no_grad():
        zf = model.template_features(z)
        analysis = FlopCountAnalysis(_Head(model), (zf, x))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        macs = int(analysis.total())
        by_module = analysis.by_module()
        template_macs = fvcore_macs(_Template(model), z)
    parts = {name: {"macs": int(by_module.get(f"model.{name}", 0)), "params": sum(p.numel() for p in child.parameters())}
             for name, child in model.named_children()}
    return Cost(macs=macs, params=sum(p.numel() for p in model.parameters()), template_macs=template_macs, parts=parts)
