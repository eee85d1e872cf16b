"""A dense CNN Siamese tracker in the SiamRPN++ / Ocean mould, the pruning baseline's family ``cnn``.

Data flow (template and search share every weight of the backbone)::

    crop -> stem (conv3x3 s2, BN, ReLU) -> ResNet stages of residual blocks (cut at stride 16)
         -> PositionNorm (template and search BatchNorm)
         -> CorrelationNeck (pixel-wise correlation, channel attention, 1x1 conv)
         -> classification tower + Predictor, regression tower + Predictor (conv3x3, BN, ReLU layers)

Every conv's channel count comes from the ``widths`` spec, so a pruned network is rebuilt from the
widths recorded in its checkpoint (plain data: checkpoints load with ``weights_only=True``)::

    stem: 32                                   # stem conv channels
    stages:                                    # each: stride of its first block, output channels,
      - {stride: 2, out: 64, blocks: [[64], [64]]}   # one inner-width list per block: [w] = basic block
      - {stride: 2, out: 128, blocks: [[32, 32]]}    # (3x3, 3x3), [w1, w2] = bottleneck (1x1, 3x3, 1x1)
    neck: 64                                   # correlation neck output channels
    cls_tower: [64, 64]                        # conv3x3 layers of the towers
    reg_tower: [64, 64]

The first block of each stage has a 1x1 projection shortcut; the others add their input, so all
block outputs of a stage share the stage's ``out`` channels.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .tracking import CorrelationNeck, PositionNorm, Predictor, TrackingNet
from .ops import conv_bn
from .registry import register_model

SPEC_KEYS = {"family", "template_size", "search_size", "widths", "cls_scale", "reg_scale", "attention_reduction"}
WIDTH_KEYS = {"stem", "stages", "neck", "cls_tower", "reg_tower"}


class ResidualBlock(nn.Module):
    """ResNet block: basic (3x3, 3x3) with one inner width, bottleneck (1x1, 3x3, 1x1) with two;
    BatchNorm after every conv, ReLU inside and after the sum; optional 1x1 projection shortcut."""

    def __init__(self, in_channels: int, inner: Sequence[int], out_channels: int, stride: int = 1,
                 projection: bool = False):
        super().__init__()
        if len(inner) not in (1, 2):
            raise ValueError(f"a block has 1 (basic) or 2 (bottleneck) inner widths, got {list(inner)}")
        if not projection and (stride != 1 or in_channels != out_channels):
            raise ValueError("a block without projection needs stride 1 and equal in/out channels")
        kernels = (3, 3) if len(inner) == 1 else (1, 3, 1)
        strided = kernels.index(3)  # the first 3x3 conv carries the stride
        channels = [in_channels, *inner, out_channels]
        last = len(kernels) - 1
        self.body = nn.Sequential(*[
            conv_bn(channels[i], channels[i + 1], k, stride if i == strided else 1, act=None if i == last else nn.ReLU)
            for i, k in enumerate(kernels)])
        self.shortcut = conv_bn(in_channels, out_channels, 1, stride, act=None) if projection else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


@register_model("cnn")
class SiameseCNN(TrackingNet):
    """ResNet-style Siamese tracker with LightTrack's neck/head interface (see the module docstring)."""

    def __init__(self, template_size: int, search_size: int, widths: Mapping[str, Any], cls_scale: float = 0.1,
                 reg_scale: float = 16.0, attention_reduction: int = 1):
        super().__init__()
        widths = check_widths(widths)
        self.template_size, self.search_size = int(template_size), int(search_size)
        self.cls_scale, self.reg_scale = float(cls_scale), float(reg_scale)
        self.attention_reduction = int(attention_reduction)
        self.strides = [int(s["stride"]) for s in widths["stages"]]
        self._stride = 2 * math.prod(self.strides)
        if self.template_size % self._stride or self.search_size % self._stride:
            raise ValueError(f"template_size {self.template_size} and search_size {self.search_size} must be "
                             f"multiples of the backbone stride {self._stride}")
        self.backbone, channels = resnet_backbone(widths["stem"], widths["stages"])
        self.norm = PositionNorm(channels)
        self.neck = CorrelationNeck((self.template_size // self._stride) ** 2, widths["neck"], self.attention_reduction)
        self.cls_tower = tower(widths["neck"], widths["cls_tower"], "cls", self.cls_scale)
        self.reg_tower = tower(widths["neck"], widths["reg_tower"], "reg", self.reg_scale)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "SiameseCNN":
        """Build from a ``model:`` section or a checkpoint's ``model_spec`` (see :meth:`spec`)."""
        check_spec(spec, SPEC_KEYS, {"template_size", "search_size", "widths"})
        return cls(**{k: v for k, v in spec.items() if k != "family"})

    def spec(self) -> dict[str, Any]:
        """Plain-data description that rebuilds this network, widths read from the modules themselves
        (so a pruned network reports its pruned widths)."""
        widths = {**resnet_widths(self.backbone, self.strides),
                  "neck": self.neck.adjust.out_channels,
                  "cls_tower": [layer[0].out_channels for layer in self.cls_tower[:-1]],
                  "reg_tower": [layer[0].out_channels for layer in self.reg_tower[:-1]]}
        return {"family": "cnn", "template_size": self.template_size, "search_size": self.search_size,
                "widths": widths, "cls_scale": self.cls_scale, "reg_scale": self.reg_scale,
                "attention_reduction": self.attention_reduction}

    @property
    def predictors(self) -> tuple[Predictor, Predictor]:
        """The classification and regression predictors (their 1 and 4 outputs are never pruned)."""
        return self.cls_tower[-1], self.reg_tower[-1]

    def _parts(self):
        return self.backbone, self.norm, self.neck, self.cls_tower, self.reg_tower, self._stride


def resnet_backbone(stem: int, stages: Sequence[Mapping[str, Any]]) -> tuple[nn.Sequential, int]:
    """Stem conv3x3 s2 + the residual ``stages`` (see the module docstring); returns it and its output channels."""
    layers: list[nn.Module] = [conv_bn(3, stem, 3, 2, act=nn.ReLU)]
    channels = stem
    for stage in stages:
        blocks = [ResidualBlock(channels if i == 0 else stage["out"], inner, stage["out"],
                                stage["stride"] if i == 0 else 1, projection=i == 0)
                  for i, inner in enumerate(stage["blocks"])]
        layers.append(nn.Sequential(*blocks))
        channels = stage["out"]
    return nn.Sequential(*layers), channels


def resnet_widths(backbone: nn.Sequential, strides: Sequence[int]) -> dict[str, Any]:
    """``{"stem", "stages"}`` widths read back from a :func:`resnet_backbone` (pruned or not)."""
    stem, *stages = backbone
    return {"stem": stem[0].out_channels,
            "stages": [{"stride": stride, "out": blocks[0].body[-1][0].out_channels,
                        "blocks": [[seq[0].out_channels for seq in block.body[:-1]] for block in blocks]}
                       for stride, blocks in zip(strides, stages)]}


def tower(in_channels: int, widths: Sequence[int], kind: str, scale: float) -> nn.Sequential:
    """conv3x3 + BN + ReLU layers of the given widths, then the ``kind`` predictor."""
    layers, channels = [], in_channels
    for width in widths:
        layers.append(conv_bn(channels, width, 3, act=nn.ReLU))
        channels = width
    return nn.Sequential(*layers, Predictor(channels, kind, scale))


def check_spec(spec: Mapping[str, Any], allowed: set[str], required: set[str]) -> None:
    """Reject a ``model:`` section with keys outside ``allowed`` or without every ``required`` one."""
    unknown, missing = set(spec) - allowed, required - set(spec)
    if unknown:
        raise ValueError(f"model: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    if missing:
        raise ValueError(f"model: missing key(s) {sorted(missing)}")


def check_widths(widths: Mapping[str, Any], keys: frozenset[str] | set[str] = WIDTH_KEYS) -> dict[str, Any]:
    """Validate a widths spec with exactly ``keys`` (a subset of :data:`WIDTH_KEYS` with ``stem``,
    ``stages`` and the towers); errors name the field."""
    if not isinstance(widths, Mapping):
        raise ValueError(f"model.widths: expected a mapping with keys {sorted(keys)}")
    if set(widths) != set(keys):
        raise ValueError(f"model.widths: keys {sorted(widths)} must be exactly {sorted(keys)}")

    def positive(value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"model.widths.{where}: expected a positive integer, got {value!r}")
        return value

    stages = widths["stages"]
    if not isinstance(stages, Sequence) or not stages:
        raise ValueError("model.widths.stages: expected a non-empty list of {stride, out, blocks}")
    out = {"stem": positive(widths["stem"], "stem"), "stages": []}
    if "neck" in keys:
        out["neck"] = positive(widths["neck"], "neck")
    for i, stage in enumerate(stages):
        where = f"stages[{i}]"
        if not isinstance(stage, Mapping) or set(stage) != {"stride", "out", "blocks"}:
            raise ValueError(f"model.widths.{where}: expected keys ['blocks', 'out', 'stride']")
        if stage["stride"] not in (1, 2):
            raise ValueError(f"model.widths.{where}.stride: {stage['stride']!r} is not one of [1, 2]")
        blocks = stage["blocks"]
        if not isinstance(blocks, Sequence) or not blocks:
            raise ValueError(f"model.widths.{where}.blocks: expected a non-empty list of inner-width lists")
        for j, inner in enumerate(blocks):
            if not isinstance(inner, Sequence) or len(inner) not in (1, 2):
                raise ValueError(f"model.widths.{where}.blocks[{j}]: expected [w] (basic) or [w1, w2] (bottleneck)")
        out["stages"].append({"stride": stage["stride"], "out": positive(stage["out"], f"{where}.out"),
                              "blocks": [[positive(w, f"{where}.blocks[{j}]") for w in inner]
                                         for j, inner in enumerate(blocks)]})
    for kind in ("cls_tower", "reg_tower"):
        out[kind] = check_tower(widths[kind], f"model.widths.{kind}")
    return out


def check_tower(widths: Any, where: str) -> list[int]:
    """Validate a tower's list of conv widths; errors name ``where``."""
    if not isinstance(widths, Sequence) or isinstance(widths, str) or not widths or any(
            isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"{where}: expected a non-empty list of positive integer widths, got {widths!r}")
    return [int(w) for w in widths]
