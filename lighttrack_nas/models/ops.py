"""The op registry and the built-in ops (MBConv, depthwise-separable conv, identity).

A user op is a factory ``(in_channels, out_channels, stride, **params) -> nn.Module`` registered
under a type name; search spaces refer to it from their ``ops`` section::

    @register_op("my_conv")
    def my_conv(in_channels, out_channels, stride, kernel=3):
        return nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2)
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import UnknownNameError

OpFactory = Callable[..., nn.Module]
_OPS: dict[str, OpFactory] = {}


def register_op(type_name: str) -> Callable[[OpFactory], OpFactory]:
    """Decorator registering an op factory under ``type_name``."""

    def deco(factory: OpFactory) -> OpFactory:
        _OPS[type_name] = factory
        return factory

    return deco


def build_op(spec: Mapping[str, Any], in_channels: int, out_channels: int, stride: int = 1) -> nn.Module:
    """Instantiate an op spec ``{type: name, **params}`` from the registry."""
    params = dict(spec)
    type_name = params.pop("type", None)
    if type_name not in _OPS:
        raise UnknownNameError(f"op type {type_name!r} is not registered; registered: {sorted(_OPS)}")
    try:
        return _OPS[type_name](in_channels, out_channels, stride, **params)
    except (TypeError, ValueError) as err:
        raise type(err)(f"op {type_name!r} rejected parameters {params}: {err}") from None


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` without going 10 % below ``value``."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * value else out


ACTIVATIONS: dict[str, type[nn.Module]] = {"swish": nn.SiLU, "relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": nn.Hardswish}


def activation(name: str, field: str = "act") -> type[nn.Module]:
    """The activation class called ``name`` in a space (``swish``, ``relu``, ``relu6``, ``hswish``);
    ``field`` names the setting in the error."""
    if name not in ACTIVATIONS:
        raise ValueError(f"{field}: activation {name!r} is not one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class SqueezeExcite(nn.Module):
    """Squeeze-excitation with ReLU and hard-sigmoid gate (MobileNetV3 / LightTrack style)."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * F.hardsigmoid(self.expand(F.relu(self.reduce(s))))


def conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
            act: type[nn.Module] | None = nn.SiLU) -> nn.Sequential:
    """Conv (no bias) + BatchNorm (+ activation)."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(out_channels)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, kxk depthwise, SE, 1x1 project; ``act`` activations (Swish as
    published); residual when shape is kept. As in the published builder, SE reduces to ``se x mid``
    channels (rounded to 8)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, kernel: int = 3,
                 expand: float = 4, se: float = 0.25, act: str = "swish"):
        super().__init__()
        mid = make_divisible(in_channels * expand)
        act_type = activation(act)
        self.expand = conv_bn(in_channels, mid, 1, act=act_type) if expand != 1 else nn.Identity()
        self.depthwise = conv_bn(mid, mid, kernel, stride, groups=mid, act=act_type)
        self.se = SqueezeExcite(mid, make_divisible(mid * se)) if se > 0 else nn.Identity()
        self.project = conv_bn(mid, out_channels, 1, act=None)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.residual else y


class DepthwiseSeparable(nn.Module):
    """Depthwise kxk (+ ``act``) + SE + pointwise 1x1 (the backbone's fixed block after the stem)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, kernel: int = 3, se: float = 0.25,
                 act: str = "swish"):
        super().__init__()
        self.depthwise = conv_bn(in_channels, in_channels, kernel, stride, groups=in_channels, act=activation(act))
        self.se = SqueezeExcite(in_channels, make_divisible(in_channels * se)) if se > 0 else nn.Identity()
        self.pointwise = conv_bn(in_channels, out_channels, 1, act=None)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pointwise(self.se(self.depthwise(x)))
        return x + y if self.residual else y


class SeparableConvBNReLU(nn.Module):
    """Head tower layer as published: depthwise kxk, pointwise 1x1, BN, ReLU.

    ``residual=True`` (off as published) adds the input before the ReLU when the layer keeps its
    shape, so skipping the layer (the 'skip' choice) drops a residual branch, as in stochastic depth.
    Elastic (OFA-style weight sharing): ``forward(x, kernel=k)`` runs with the centre ``k x k``
    depthwise taps, an input with fewer channels than the layer uses its first ones, and
    ``width`` (set by a shared-width tower) keeps the first ``width`` output channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, kernel: int = 3, residual: bool = False):
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel, stride, kernel // 2, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.residual = residual and stride == 1 and in_channels == out_channels
        self.width: int | None = None

    def forward(self, x: torch.Tensor, kernel: int | None = None) -> torch.Tensor:
        full_kernel = kernel is None or kernel == self.depthwise.kernel_size[0]
        channels, width = x.shape[1], self.width or self.pointwise.out_channels
        if full_kernel and channels == self.depthwise.in_channels and width == self.pointwise.out_channels:
            y = self.bn(self.pointwise(self.depthwise(x)))
        else:
            k = kernel or self.depthwise.kernel_size[0]
            y = F.conv2d(x, centre_crop(self.depthwise.weight[:channels], k), None, self.depthwise.stride, k // 2,
                         groups=channels)
            y = sliced_batch_norm(self.bn, F.conv2d(y, self.pointwise.weight[:width, :channels]))
        return F.relu(y + x if self.residual else y)

    def sliced(self, in_channels: int | None = None, out_channels: int | None = None,
               kernel: int | None = None) -> "SeparableConvBNReLU":
        """A stand-alone copy with the first ``in/out_channels`` and the centre ``kernel`` taps."""
        dw = self.depthwise
        c = in_channels or dw.in_channels
        w = out_channels or self.pointwise.out_channels
        k = kernel or dw.kernel_size[0]
        out = SeparableConvBNReLU(c, w, dw.stride[0], k, self.residual)
        state = {"depthwise.weight": centre_crop(dw.weight[:c], k), "pointwise.weight": self.pointwise.weight[:w, :c],
                 **{f"bn.{n}": t[:w] for n, t in self.bn.state_dict().items() if t.dim()},
                 "bn.num_batches_tracked": self.bn.num_batches_tracked}
        out.load_state_dict({n: t.clone() for n, t in state.items()})
        return out

    def with_kernel(self, kernel: int) -> "SeparableConvBNReLU":
        """A stand-alone copy running with the centre ``kernel x kernel`` of the depthwise weights."""
        return self.sliced(kernel=kernel)


def sliced_batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``bn`` applied to ``x``'s channels, its first ``x.shape[1]`` channels (running statistics of
    those updated in place exactly as :class:`nn.BatchNorm2d` would)."""
    c = x.shape[1]
    factor = 0.0
    if bn.training and bn.track_running_stats:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    return F.batch_norm(x, bn.running_mean[:c], bn.running_var[:c], bn.weight[:c], bn.bias[:c],
                        bn.training or bn.running_mean is None, factor, bn.eps)


def centre_crop(weight: torch.Tensor, kernel: int) -> torch.Tensor:
    """The centre ``kernel x kernel`` taps of a conv weight ``(O, I, K, K)``."""
    offset = (weight.shape[-1] - kernel) // 2
    if offset < 0:
        raise ValueError(f"cannot take a {kernel}x{kernel} kernel from a {weight.shape[-1]}x{weight.shape[-1]} one")
    return weight[..., offset: offset + kernel, offset: offset + kernel]


class Skip(nn.Identity):
    """The identity op ('skip'); marked so subnets can drop it."""

    def __init__(self, in_channels: int = 0, out_channels: int = 0, stride: int = 1):
        if stride != 1 or (in_channels and out_channels and in_channels != out_channels):
            raise ValueError("identity op needs stride 1 and equal in/out channels")
        super().__init__()


register_op("mbconv")(MBConv)
register_op("dsconv")(SeparableConvBNReLU)
register_op("ds_block")(DepthwiseSeparable)
register_op("identity")(Skip)
