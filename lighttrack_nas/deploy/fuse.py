"""The inference form of a tracking subnet: ``fuse(model)``.

It computes the eval-mode training form's function (same outputs up to float rounding) with
fewer, cheaper ops:

- every Conv + BatchNorm pair is one Conv with a bias (the towers' BatchNorm after the pointwise
  conv too); the predictors' output scales are folded into their convs;
- squeeze-excitation: the gate scales the channels that the 1x1 projection reads, so it is folded
  into the projection's weights (``W * gate``, out x mid numbers) instead of scaling the feature
  map (mid x H x W numbers);
- neck: with the template cached, the search-side BatchNorm, the pixel-wise correlation, the
  channel attention and the 1x1 adjust conv collapse into one 1x1 conv from the backbone's
  channels to the neck's, whose weights are computed per frame from the template kernel and the
  spatial mean of the search features (mean(corr) = kernel @ mean(x) + bias). The template
  features are this kernel ``(B, P, C)`` and its bias ``(B, P)``, ``P`` template positions;
- the backbone runs in the channels-last layout (measured a few per cent faster than NCHW here).

Blocks of user-registered op types pass through unchanged (Conv + BatchNorm + activation
sequences inside them are still folded). ``fuse`` expects a model whose BatchNorm statistics are
final; the result is for inference only (no gradients through the folded weights).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..models.tracking import CorrelationNeck, PositionNorm, Predictor, TrackingNet
from ..models.ops import DepthwiseSeparable, MBConv, SeparableConvBNReLU, SqueezeExcite

_ACTIVATIONS: dict[type[nn.Module], str] = {nn.SiLU: "silu", nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardswish: "hardswish"}


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with ``bn(x) == x * scale + shift`` per channel in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d | None = None, scale: float = 1.0) -> nn.Conv2d:
    """A copy of ``conv`` with ``bn`` (eval mode) and a constant output ``scale`` folded in."""
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, bias=True)
    with torch.no_grad():
        weight = conv.weight.detach().clone()
        bias = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(conv.out_channels)
        if bn is not None:
            s, t = _bn_affine(bn)
            weight, bias = weight * s.view(-1, 1, 1, 1), bias * s + t
        out.weight.copy_(weight * scale)
        out.bias.copy_(bias * scale)
    return out.requires_grad_(False)


class ConvAct(nn.Module):
    """Conv (BatchNorm folded) followed by an optional in-place activation (a ``torch.nn.functional`` name)."""

    def __init__(self, conv: nn.Conv2d, act: str | None):
        super().__init__()
        self.conv, self.act = conv, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y if self.act is None else getattr(F, self.act)(y, inplace=True)

    def extra_repr(self) -> str:
        return f"act={self.act}"


def _conv_act(seq: nn.Sequential) -> ConvAct:
    """``conv_bn``'s Sequential(Conv, BatchNorm[, activation]) as one ConvAct."""
    conv, bn, *rest = seq
    act = _ACTIVATIONS[type(rest[0])] if rest else None
    return ConvAct(fold_bn(conv, bn), act)


def _is_conv_bn(module: nn.Module) -> bool:
    if not isinstance(module, nn.Sequential) or len(module) not in (2, 3):
        return False
    conv, bn, *rest = module
    return (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
            and all(type(m) in _ACTIVATIONS for m in rest))


class FusedSE(nn.Module):
    """Squeeze-excitation gate ``(B, C)`` of a feature map (ReLU, hard-sigmoid)."""

    def __init__(self, se: SqueezeExcite):
        super().__init__()
        self.reduce, self.expand = _linear(se.reduce), _linear(se.expand)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardsigmoid(self.expand(F.relu(self.reduce(x.mean((2, 3))))))


def _linear(conv: nn.Conv2d) -> nn.Linear:
    """A 1x1 conv on ``(B, C, 1, 1)`` as a Linear on ``(B, C)``."""
    lin = nn.Linear(conv.in_channels, conv.out_channels)
    with torch.no_grad():
        lin.weight.copy_(conv.weight.flatten(1))
        lin.bias.copy_(conv.bias)
    return lin.requires_grad_(False)


class FusedInvertedResidual(nn.Module):
    """MBConv / depthwise-separable block: [1x1 expand + act], kxk depthwise + act, SE gate folded
    into the 1x1 projection's weights, residual."""

    def __init__(self, expand: ConvAct | None, depthwise: ConvAct, se: FusedSE | None, project: nn.Conv2d,
                 residual: bool):
        super().__init__()
        self.expand, self.depthwise, self.se, self.project = expand, depthwise, se, project
        self.residual = residual

    @classmethod
    def from_block(cls, block: MBConv | DepthwiseSeparable) -> "FusedInvertedResidual":
        if isinstance(block, MBConv):
            expand = None if isinstance(block.expand, nn.Identity) else _conv_act(block.expand)
            project = block.project
        else:
            expand, project = None, block.pointwise
        se = FusedSE(block.se) if isinstance(block.se, SqueezeExcite) else None
        return cls(expand, _conv_act(block.depthwise), se, fold_bn(*project), block.residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.depthwise(self.expand(x) if self.expand is not None else x)
        if self.se is None:
            y = self.project(h)
        else:
            gate = self.se(h)
            if h.shape[0] == 1:  # one sample: scale the projection's input channels
                y = F.conv2d(h, self.project.weight * gate.view(1, -1, 1, 1), self.project.bias)
            else:
                y = self.project(h * gate[:, :, None, None])
        return y.add_(x) if self.residual else y


class FusedSeparable(nn.Module):
    """Tower layer: depthwise kxk, pointwise 1x1 with the BatchNorm folded, [+ input], ReLU."""

    def __init__(self, layer: SeparableConvBNReLU):
        super().__init__()
        self.residual = layer.residual
        self.depthwise = copy.deepcopy(layer.depthwise)
        self.pointwise = ConvAct(fold_bn(layer.pointwise, layer.bn), None if self.residual else "relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pointwise(self.depthwise(x))
        return F.relu(x + y) if self.residual else y


def _fused_predictor(pred: Predictor) -> ConvAct:
    """``conv * scale`` (cls) or ``relu(conv) * scale`` (reg) as one conv; needs ``scale > 0`` for reg."""
    if pred.kind != "cls" and pred.scale <= 0:
        raise ValueError(f"cannot fold a non-positive regression scale ({pred.scale}) through relu")
    return ConvAct(fold_bn(pred.conv, scale=pred.scale), None if pred.kind == "cls" else "relu")


class FusedNeck(nn.Module):
    """Search BatchNorm + correlation + channel attention + 1x1 adjust as one per-frame 1x1 conv."""

    def __init__(self, norm: PositionNorm, neck: CorrelationNeck):
        super().__init__()
        t_scale, t_shift = _bn_affine(norm.template)
        s_scale, s_shift = _bn_affine(norm.search)
        for name, value in (("t_scale", t_scale), ("t_shift", t_shift), ("s_scale", s_scale), ("s_shift", s_shift)):
            self.register_buffer(name, value.detach().clone())
        first, _, second, _ = neck.attention
        self.attention1, self.attention2 = _linear(first), _linear(second)
        self.register_buffer("adjust_weight", neck.adjust.weight.detach().flatten(1).clone())
        self.register_buffer("adjust_bias", neck.adjust.bias.detach().clone())

    def kernel(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Template backbone features ``(B, C, h, w)`` -> correlation kernel ``(B, P, C)`` (search
        BatchNorm scale folded in) and bias ``(B, P)`` (its shift), ``P = h * w``."""
        zf = (feat * self.t_scale.view(1, -1, 1, 1) + self.t_shift.view(1, -1, 1, 1)).flatten(2).transpose(1, 2)
        # the bias as a sum, not ``zf @ s_shift``: ONNX Runtime's extended graph optimisations compute that
        # transposed matrix-vector product wrongly (errors the size of the bias itself, onnxruntime 1.31)
        return zf * self.s_scale, (zf * self.s_shift).sum(-1)

    def forward(self, kernel: torch.Tensor, bias: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        corr_mean = torch.baddbmm(bias.unsqueeze(-1), kernel, x.mean((2, 3)).unsqueeze(-1)).squeeze(-1)
        attention = torch.sigmoid(self.attention2(F.relu(self.attention1(corr_mean))))
        weight = self.adjust_weight * attention.unsqueeze(1)                         # (B, O, P)
        out_bias = torch.baddbmm(self.adjust_bias.view(1, -1, 1), weight, bias.unsqueeze(-1))
        out = torch.baddbmm(out_bias, weight @ kernel, x.flatten(2))                 # (B, O, H*W)
        return out.view(b, -1, h, w)


def _fuse_module(module: nn.Module) -> nn.Module:
    """The inference form of one backbone or tower module (unknown ones: a copy with folds inside)."""
    if isinstance(module, (MBConv, DepthwiseSeparable)):
        return FusedInvertedResidual.from_block(module)
    if isinstance(module, SeparableConvBNReLU):
        return FusedSeparable(module)
    if isinstance(module, Predictor):
        return _fused_predictor(module)
    if _is_conv_bn(module):
        return _conv_act(module)
    if isinstance(module, nn.Sequential):
        return nn.Sequential(*[_fuse_module(m) for m in module])
    out = copy.deepcopy(module)
    for name, child in out.named_children():
        setattr(out, name, _fuse_module(child))
    return out


class FusedTrackingNet(TrackingNet):
    """Inference form of a :class:`TrackingNet` (same ``template/track/forward`` and attributes).

    ``template_features(z)`` returns the neck's ``(kernel, bias)`` pair, and ``head(zf, x)`` takes it.
    """

    def __init__(self, arch: str, template_size: int, search_size: int, stride: int, backbone: nn.Sequential,
                 neck: FusedNeck, cls_tower: nn.Sequential, reg_tower: nn.Sequential,
                 memory_format: torch.memory_format = torch.channels_last):
        super().__init__()
        self.arch, self.template_size, self.search_size, self._stride = arch, template_size, search_size, stride
        self.backbone, self.neck, self.cls_tower, self.reg_tower = backbone, neck, cls_tower, reg_tower
        self.memory_format = memory_format

    @property
    def stride(self) -> int:
        return self._stride

    def _features(self, image: torch.Tensor) -> torch.Tensor:
        return self.backbone(image.contiguous(memory_format=self.memory_format))

    def template_features(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.neck.kernel(self._features(z))

    def head(self, zf: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.neck(*zf, self._features(x))
        return self.cls_tower(feat), self.reg_tower(feat)


def fuse(model: TrackingNet, memory_format: torch.memory_format = torch.channels_last) -> FusedTrackingNet:
    """The inference form of an extracted subnet (e.g. ``LightTrackSupernet.extract(arch)``).

    Outputs equal ``model.eval()``'s within float rounding (tests: max abs diff <= 1e-4); ``model``
    itself is not changed. ``memory_format`` is the layout the backbone runs in.
    """
    backbone, norm, neck, cls_tower, reg_tower, stride = model._parts()
    if not isinstance(backbone, nn.Sequential):
        raise TypeError("fuse() takes a standalone subnet: fuse(supernet.extract(arch)), not a supernet")
    if not isinstance(neck, CorrelationNeck) or not isinstance(norm, PositionNorm):
        raise TypeError(f"fuse() knows the CorrelationNeck/PositionNorm head, not {type(neck).__name__}")
    with torch.no_grad():
        fused = FusedTrackingNet(
            str(getattr(model, "arch", "")), model.template_size, model.search_size, stride,
            _fuse_module(backbone), FusedNeck(norm, neck),
            _fuse_module(cls_tower), _fuse_module(reg_tower), memory_format)
    return fused.eval().requires_grad_(False)
