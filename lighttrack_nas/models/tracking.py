"""The parts every tracking model of the project shares: the tracking interface with a cached
template (:class:`CachedTemplate`), the Siamese forward (:class:`TrackingNet`), and the Siamese
neck and predictors (LightTrack's pixel-wise correlation with channel attention, its per-position
BatchNorm pair, its classification / regression predictor). LightTrack, the dense CNN, the hybrid
and the ViT build on them; deployment, pruning and training read them."""
from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn


class CorrelationNeck(nn.Module):
    """Pixel-wise correlation of search features with every template position, channel attention
    over the resulting ``template_positions`` channels, then a 1x1 conv to ``out_channels``."""

    def __init__(self, template_positions: int, out_channels: int, reduction: int = 1):
        super().__init__()
        hidden = max(1, template_positions // reduction)
        self.attention = nn.Sequential(nn.Conv2d(template_positions, hidden, 1), nn.ReLU(),
                                       nn.Conv2d(hidden, template_positions, 1), nn.Sigmoid())
        self.adjust = nn.Conv2d(template_positions, out_channels, 1)

    def forward(self, zf: torch.Tensor, xf: torch.Tensor) -> torch.Tensor:
        b, c, h, w = xf.shape
        corr = torch.matmul(zf.flatten(2).transpose(1, 2), xf.flatten(2)).view(b, -1, h, w)
        corr = corr * self.attention(corr.mean((2, 3), keepdim=True))
        return self.adjust(corr)


class PositionNorm(nn.Module):
    """The BatchNorm pair (template, search) owned by one output position."""

    def __init__(self, channels: int):
        super().__init__()
        self.template = nn.BatchNorm2d(channels)
        self.search = nn.BatchNorm2d(channels)


class Predictor(nn.Module):
    """conv3x3 -> ``channels`` outputs; ``cls``: x * scale, ``reg``: relu(x) * scale."""

    def __init__(self, in_channels: int, kind: str, scale: float):
        super().__init__()
        self.kind, self.scale = kind, scale
        self.conv = nn.Conv2d(in_channels, 1 if kind == "cls" else 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        y = self.conv(x) if c == self.conv.in_channels else F.conv2d(x, self.conv.weight[:, :c], self.conv.bias,
                                                                         padding=1)
        return y * self.scale if self.kind == "cls" else F.relu(y) * self.scale

    def sliced(self, in_channels: int | None = None, out_channels: int | None = None) -> "Predictor":
        """A stand-alone copy reading the first ``in_channels`` inputs (its outputs are fixed)."""
        c = in_channels or self.conv.in_channels
        out = Predictor(c, self.kind, self.scale)
        out.conv.weight.data.copy_(self.conv.weight[:, :c])
        out.conv.bias.data.copy_(self.conv.bias)
        return out


class CachedTemplate(nn.Module):
    """The tracking interface of every family: ``template(z)`` caches ``template_features(z)`` once
    per sequence, ``track(x)`` runs ``head`` on it per frame, ``forward(z, x)`` both; subclasses
    provide ``template_features`` and ``head``. ``backbone_parameters`` are the parameters whose
    names start with ``backbone_prefixes`` (trained with the backbone learning-rate multiplier)."""

    template_size: int
    search_size: int
    backbone_prefixes: tuple[str, ...] = ("backbone.",)
    fully_convolutional = False   # True: any search-crop size works (no positional embeddings fix it)

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the feature extractor (trained with the backbone learning-rate multiplier)."""
        return (p for n, p in self.named_parameters() if n.startswith(self.backbone_prefixes))

    def template_features(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def head(self, zf: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def template(self, z: torch.Tensor) -> None:
        """Compute and cache template features (once per sequence)."""
        self._zf = self.template_features(z)

    def track(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Classification logits (B,1,H,W) and l,t,r,b distances (B,4,H,W) for a search crop."""
        if getattr(self, "_zf", None) is None:
            raise RuntimeError("call template(z) before track(x)")
        return self.head(self._zf, x)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.template_features(z), x)


class TrackingNet(CachedTemplate):
    """Shared forward logic of the Siamese families; subclasses provide the parts of the current path."""

    fully_convolutional = True

    def _parts(self) -> tuple[nn.Module, PositionNorm, nn.Module, nn.Module, nn.Module, int]:
        """(backbone, position norm, neck, cls tower, reg tower, stride) of the current path."""
        raise NotImplementedError

    @property
    def stride(self) -> int:
        return self._parts()[5]

    @property
    def score_size(self) -> int:
        return self.search_size // self.stride

    def template_features(self, z: torch.Tensor) -> torch.Tensor:
        backbone, norm, *_ = self._parts()
        return norm.template(backbone(z))

    def correlate(self, zf: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Search features correlated with template features ``zf`` (the neck's output)."""
        backbone, norm, neck, *_ = self._parts()
        return neck(zf, norm.search(backbone(x)))

    def predict(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both towers on the neck's output."""
        _, _, _, cls_tower, reg_tower, _ = self._parts()
        return cls_tower(features), reg_tower(features)

    def head(self, zf: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame branch: search features, correlation with ``zf``, both towers."""
        return self.predict(self.correlate(zf, x))
