"""Transformer tracker families behind the same tracking interface as the CNN families.

- ``vit``: a one-stream ViT tracker in the OSTrack mould. Template and search crops are cut into
  ``patch`` x ``patch`` patches, embedded, given learned position embeddings and concatenated into one
  token sequence that every pre-norm transformer layer attends over jointly; the search tokens of the
  last layer, laid out as a ``search_size / patch`` map, feed a centre head (a classification tower
  and a regression tower: the score map and l, t, r, b distances at stride ``patch``, as every family).
  The template's patch embedding is cached per sequence; everything else runs per frame.
- ``hybrid``: a STARK-lite tracker. A ResNet-style CNN (the ``cnn`` family's blocks) to stride 16, a
  1x1 bottleneck to the transformer width, an encoder over the template and search feature tokens, a
  decoder whose single learned target query attends to the encoder memory, and STARK's box-head input:
  the search memory weighted by its similarity to the decoded query, fed to the same towers.

Both are trained with OSTrack's loss (``loss = "ostrack"``: focal 1 + GIoU 2 + L1 5, see
:mod:`lighttrack_nas.train.loss`). Every width is data in the spec, per layer and per head, so pruned
networks (ViT-Slim: heads of different widths) rebuild from the spec stored in their checkpoints::

    family: vit
    template_size: 64
    search_size: 128
    patch: 16
    embed_dim: 128
    layers:                              # or depth / heads / mlp_ratio for a uniform stack
      - {head_dims: [32, 32, 32, 32], mlp: 512, scale: 0.1768}   # scale: attention's 1/sqrt(d), kept when pruned
    cls_tower: [64]
    reg_tower: [64]

Attention modules and MLPs can carry ViT-Slim soft masks (``gate``: one learnable value per head
dimension, multiplying q, k and v, and per hidden neuron) while a sparsity training searches them, and
the tracker one per embedding dimension (``embed_gate``), multiplying every write to the residual
streams (the embedded tokens, the decoder query, every attention and MLP output): ``gates: true`` in
the spec creates them all (ones), :mod:`lighttrack_nas.compress.vit_prune` folds and removes them.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .tracking import CachedTemplate
from .registry import register_model
from .siamese_cnn import check_spec, check_tower, check_widths, resnet_backbone, resnet_widths, tower

LAYER_KEYS = {"head_dims", "mlp", "scale"}


class Attention(nn.Module):
    """Multi-head attention whose heads may differ in width. Self-attention (one ``qkv`` projection,
    timm's layout) or, with ``cross=True``, queries from ``x`` and keys/values from ``context``."""

    def __init__(self, dim: int, head_dims: Sequence[int], scale: float | None = None, cross: bool = False):
        super().__init__()
        self.head_dims = [int(d) for d in head_dims]
        if not self.head_dims or min(self.head_dims) < 1:
            raise ValueError(f"head_dims: expected a non-empty list of positive widths, got {list(head_dims)}")
        self.num_heads, self.inner, self.cross = len(self.head_dims), sum(self.head_dims), bool(cross)
        self.scale = float(scale) if scale else self.head_dims[0] ** -0.5
        if self.cross:
            self.q = nn.Linear(dim, self.inner)
            self.kv = nn.Linear(dim, 2 * self.inner)
        else:
            self.qkv = nn.Linear(dim, 3 * self.inner)
        self.proj = nn.Linear(self.inner, dim)
        self.gate: nn.Parameter | None = None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        B, N, _ = x.shape
        if self.cross:
            q = self.q(x)
            k, v = self.kv(context).chunk(2, dim=-1)
            qkv = (q, k, v)
        elif len(set(self.head_dims)) == 1:  # timm's layout (torch-pruning traces its head structure)
            h, d = self.num_heads, self.head_dims[0]
            qkv = self.qkv(x).reshape(B, N, 3, h, d).permute(2, 0, 3, 1, 4)
            if self.gate is not None:
                qkv = qkv * self.gate.view(1, 1, h, 1, d)
            q, k, v = qkv.unbind(0)
            return self.proj(self._attend(q, k, v).transpose(1, 2).reshape(B, N, self.inner))
        else:
            qkv = self.qkv(x).chunk(3, dim=-1)
        if self.gate is not None:
            qkv = tuple(t * self.gate for t in qkv)
        heads = [self._attend(*(t[..., None, :].transpose(1, 2) for t in parts))
                 for parts in zip(*(t.split(self.head_dims, dim=-1) for t in qkv))]
        return self.proj(torch.cat([h.transpose(1, 2).reshape(B, N, -1) for h in heads], dim=-1))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        attn = (q @ k.transpose(-2, -1)) * self.scale
        return attn.softmax(dim=-1) @ v


class Mlp(nn.Module):
    """Linear -> GELU -> (ViT-Slim ``gate``) -> Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, int(hidden)), nn.Linear(int(hidden), dim)
        self.gate: nn.Parameter | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.fc1(x))
        return self.fc2(h * self.gate if self.gate is not None else h)


class Block(nn.Module):
    """Pre-norm transformer layer: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``; a cross block's
    attention reads ``context`` (already normalised) for its keys and values."""

    def __init__(self, dim: int, head_dims: Sequence[int], mlp: int, scale: float | None = None, cross: bool = False):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, head_dims, scale, cross)
        self.mlp = Mlp(dim, mlp)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                gate: torch.Tensor | None = None) -> torch.Tensor:
        x = x + _masked(self.attn(self.norm1(x), context), gate)
        return x + _masked(self.mlp(self.norm2(x)), gate)

    def spec(self) -> dict[str, Any]:
        return {"head_dims": list(self.attn.head_dims), "mlp": self.mlp.fc1.out_features, "scale": self.attn.scale}


def layer_specs(spec: Mapping[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    """The explicit per-layer list ``spec[key]``, or a uniform stack from ``{key}_depth`` / ``heads`` /
    ``mlp_ratio`` (``key == "layers"``: ``depth``); errors name the field."""
    dim = spec["embed_dim"]
    depth_key = "depth" if key == "layers" else f"{key}_depth"
    if key in spec:
        layers = spec[key]
        if not isinstance(layers, Sequence) or not layers:
            raise ValueError(f"{where}.{key}: expected a non-empty list of {sorted(LAYER_KEYS)} mappings")
        out = []
        for i, layer in enumerate(layers):
            if not isinstance(layer, Mapping) or not {"head_dims", "mlp"} <= set(layer) <= LAYER_KEYS:
                raise ValueError(f"{where}.{key}[{i}]: expected keys {sorted(LAYER_KEYS)} (scale optional)")
            dims = layer["head_dims"]
            if not isinstance(dims, Sequence) or not dims or any(_bad_int(d) for d in dims) or _bad_int(layer["mlp"]):
                raise ValueError(f"{where}.{key}[{i}]: head_dims must be a list of positive integers and mlp a "
                                 f"positive integer, got {dict(layer)}")
            out.append({"head_dims": [int(d) for d in dims], "mlp": int(layer["mlp"]),
                        "scale": float(layer.get("scale") or int(dims[0]) ** -0.5)})
        return out
    depth, heads = spec.get(depth_key), spec.get("heads")
    if _bad_int(depth) or _bad_int(heads) or dim % heads:
        raise ValueError(f"{where}: give {key} (a per-layer list) or {depth_key} and heads (a divisor of "
                         f"embed_dim {dim}), got {depth_key}={depth!r}, heads={heads!r}")
    mlp = int(round(dim * float(spec.get("mlp_ratio", 4.0))))
    return [{"head_dims": [dim // heads] * heads, "mlp": mlp, "scale": (dim // heads) ** -0.5}] * int(depth)


def _masked(x: torch.Tensor, gate: torch.Tensor | None) -> torch.Tensor:
    return x if gate is None else x * gate


def _bad_int(value: Any) -> bool:
    return isinstance(value, bool) or not isinstance(value, int) or value < 1


def _check_spec(spec: Mapping[str, Any], allowed: set[str], required: set[str]) -> None:
    """:func:`check_spec`, and ``gates`` (when given) is a boolean."""
    check_spec(spec, allowed, required)
    if not isinstance(spec.get("gates", False), bool):
        raise ValueError(f"model.gates: expected true or false, got {spec['gates']!r}")


def _grid(tokens: torch.Tensor, side: int) -> torch.Tensor:
    """(B, side*side, D) tokens -> (B, D, side, side) map."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, side, side)


class TransformerTracker(CachedTemplate):
    """The transformer families' tracking interface (:class:`CachedTemplate`: ``template_features(z)``
    cached per sequence, ``head(zf, x)`` per frame); geometry attributes ``template_size``,
    ``search_size``, ``stride``, ``score_size``; OSTrack's loss."""

    loss = "ostrack"
    backbone_prefixes: tuple[str, ...] = ()
    stride: int
    embed_dim: int

    def __init__(self):
        super().__init__()
        self.embed_gate: nn.Parameter | None = None

    @property
    def score_size(self) -> int:
        return self.search_size // self.stride

    def predict(self, search_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both towers on the search tokens (B, H*W, D) laid out as the score map."""
        features = _grid(search_tokens, self.score_size)
        return self.cls_tower(features), self.reg_tower(features)

    def gated_modules(self) -> list[nn.Module]:
        """Every :class:`Attention` and :class:`Mlp` (the modules ViT-Slim masks)."""
        return [m for m in self.modules() if isinstance(m, (Attention, Mlp))]

    @property
    def gated(self) -> bool:
        """Whether the ViT-Slim soft masks exist (``gates: true`` in the spec)."""
        return self.embed_gate is not None

    def enable_gates(self) -> None:
        """Create the missing ViT-Slim soft masks, all ones (the network computes what it did)."""
        for m in self.gated_modules():
            if m.gate is None:
                m.gate = nn.Parameter(torch.ones(m.inner if isinstance(m, Attention) else m.fc1.out_features))
        if self.embed_gate is None:
            self.embed_gate = nn.Parameter(torch.ones(self.embed_dim))

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """The embedding gate on a write to the residual stream."""
        return _masked(tokens, self.embed_gate)

    def _spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        return {**spec, "gates": True} if self.gated else spec


@register_model("vit")
class ViTTracker(TransformerTracker):
    """One-stream ViT tracker (OSTrack mould); see the module docstring."""

    SPEC_KEYS = {"family", "template_size", "search_size", "patch", "embed_dim", "layers", "depth", "heads",
                 "mlp_ratio", "cls_tower", "reg_tower", "cls_scale", "reg_scale", "gates"}
    backbone_prefixes = ("patch_embed.", "pos_", "blocks.", "norm.")

    def __init__(self, template_size: int, search_size: int, patch: int, embed_dim: int,
                 layers: Sequence[Mapping[str, Any]], cls_tower: Sequence[int], reg_tower: Sequence[int],
                 cls_scale: float = 1.0, reg_scale: float = 8.0):
        super().__init__()
        self.template_size, self.search_size, self.stride = int(template_size), int(search_size), int(patch)
        if self.template_size % self.stride or self.search_size % self.stride:
            raise ValueError(f"template_size {template_size} and search_size {search_size} must be multiples of "
                             f"patch {patch}")
        self.embed_dim, self.cls_scale, self.reg_scale = int(embed_dim), float(cls_scale), float(reg_scale)
        d = self.embed_dim
        self.patch_embed = nn.Conv2d(3, d, self.stride, self.stride)
        self.pos_z = nn.Parameter(torch.zeros(1, (self.template_size // self.stride) ** 2, d))
        self.pos_x = nn.Parameter(torch.zeros(1, self.score_size ** 2, d))
        nn.init.trunc_normal_(self.pos_z, std=0.02)
        nn.init.trunc_normal_(self.pos_x, std=0.02)
        self.blocks = nn.ModuleList(Block(d, layer["head_dims"], layer["mlp"], layer.get("scale")) for layer in layers)
        self.norm = nn.LayerNorm(d)
        self.cls_tower = tower(d, cls_tower, "cls", self.cls_scale)
        self.reg_tower = tower(d, reg_tower, "reg", self.reg_scale)
        _init_linear(self)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "ViTTracker":
        """Build from a ``model:`` section or a checkpoint's ``model_spec`` (see :meth:`spec`)."""
        _check_spec(spec, cls.SPEC_KEYS, {"template_size", "search_size", "patch", "embed_dim", "cls_tower",
                                           "reg_tower"})
        model = cls(spec["template_size"], spec["search_size"], spec["patch"], spec["embed_dim"],
                    layer_specs(spec, "layers", "model"), check_tower(spec["cls_tower"], "model.cls_tower"),
                    check_tower(spec["reg_tower"], "model.reg_tower"),
                    spec.get("cls_scale", 1.0), spec.get("reg_scale", 8.0))
        if spec.get("gates"):
            model.enable_gates()
        return model

    def spec(self) -> dict[str, Any]:
        """Plain-data description that rebuilds this network, widths read from the modules."""
        return self._spec({"family": "vit", "template_size": self.template_size, "search_size": self.search_size,
                           "patch": self.stride, "embed_dim": self.embed_dim, "layers": [b.spec() for b in self.blocks],
                           "cls_tower": _tower_widths(self.cls_tower), "reg_tower": _tower_widths(self.reg_tower),
                           "cls_scale": self.cls_scale, "reg_scale": self.reg_scale})

    def template_features(self, z: torch.Tensor) -> torch.Tensor:
        return self._embed(self.patch_embed(z).flatten(2).transpose(1, 2) + self.pos_z)

    def encode(self, zf: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The joint token sequence (template first) fed to the first layer."""
        return torch.cat([zf, self._embed(self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_x)], dim=1)

    def decode(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Final norm and the centre head on the search part of the last layer's tokens."""
        return self.predict(self.norm(tokens)[:, -self.score_size ** 2:])

    def head(self, zf: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.encode(zf, x)
        for block in self.blocks:
            tokens = block(tokens, gate=self.embed_gate)
        return self.decode(tokens)


@register_model("hybrid")
class HybridTracker(TransformerTracker):
    """STARK-lite: CNN to stride 16, transformer encoder-decoder, box-head input weighted by the
    decoded target query; see the module docstring."""

    SPEC_KEYS = {"family", "template_size", "search_size", "widths", "embed_dim", "encoder", "decoder",
                 "encoder_depth", "decoder_depth", "heads", "mlp_ratio", "cls_scale", "reg_scale", "gates"}
    WIDTHS = frozenset({"stem", "stages", "cls_tower", "reg_tower"})
    backbone_prefixes = ("backbone.",)

    def __init__(self, template_size: int, search_size: int, widths: Mapping[str, Any], embed_dim: int,
                 encoder: Sequence[Mapping[str, Any]], decoder: Sequence[Mapping[str, Any]],
                 cls_scale: float = 1.0, reg_scale: float = 8.0):
        super().__init__()
        widths = check_widths(widths, self.WIDTHS)
        self.template_size, self.search_size = int(template_size), int(search_size)
        self.strides = [int(s["stride"]) for s in widths["stages"]]
        self.stride = 2 * math.prod(self.strides)
        if self.template_size % self.stride or self.search_size % self.stride:
            raise ValueError(f"template_size {template_size} and search_size {search_size} must be multiples of "
                             f"the backbone stride {self.stride}")
        self.embed_dim, self.cls_scale, self.reg_scale = int(embed_dim), float(cls_scale), float(reg_scale)
        d = self.embed_dim
        self.backbone, channels = resnet_backbone(widths["stem"], widths["stages"])
        self.bottleneck = nn.Conv2d(channels, d, 1)
        self.pos_z = nn.Parameter(torch.zeros(1, (self.template_size // self.stride) ** 2, d))
        self.pos_x = nn.Parameter(torch.zeros(1, self.score_size ** 2, d))
        self.query = nn.Parameter(torch.zeros(1, 1, d))
        for p in (self.pos_z, self.pos_x, self.query):
            nn.init.trunc_normal_(p, std=0.02)
        self.encoder = nn.ModuleList(Block(d, l["head_dims"], l["mlp"], l.get("scale")) for l in encoder)
        self.decoder = nn.ModuleList(Block(d, l["head_dims"], l["mlp"], l.get("scale"), cross=True) for l in decoder)
        self.memory_norm, self.query_norm = nn.LayerNorm(d), nn.LayerNorm(d)
        self.cls_tower = tower(d, widths["cls_tower"], "cls", self.cls_scale)
        self.reg_tower = tower(d, widths["reg_tower"], "reg", self.reg_scale)
        _init_linear(self)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "HybridTracker":
        """Build from a ``model:`` section or a checkpoint's ``model_spec`` (see :meth:`spec`)."""
        _check_spec(spec, cls.SPEC_KEYS, {"template_size", "search_size", "widths", "embed_dim"})
        model = cls(spec["template_size"], spec["search_size"], spec["widths"], spec["embed_dim"],
                    layer_specs(spec, "encoder", "model"), layer_specs(spec, "decoder", "model"),
                    spec.get("cls_scale", 1.0), spec.get("reg_scale", 8.0))
        if spec.get("gates"):
            model.enable_gates()
        return model

    def spec(self) -> dict[str, Any]:
        """Plain-data description that rebuilds this network, widths read from the modules."""
        widths = {**resnet_widths(self.backbone, self.strides), "cls_tower": _tower_widths(self.cls_tower),
                  "reg_tower": _tower_widths(self.reg_tower)}
        return self._spec({"family": "hybrid", "template_size": self.template_size, "search_size": self.search_size,
                           "widths": widths, "embed_dim": self.embed_dim, "encoder": [b.spec() for b in self.encoder],
                           "decoder": [b.spec() for b in self.decoder], "cls_scale": self.cls_scale,
                           "reg_scale": self.reg_scale})

    def _tokens(self, image: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(self.backbone(image)).flatten(2).transpose(1, 2)

    def template_features(self, z: torch.Tensor) -> torch.Tensor:
        return self._embed(self._tokens(z) + self.pos_z)

    def head(self, zf: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = torch.cat([zf, self._embed(self._tokens(x) + self.pos_x)], dim=1)
        for block in self.encoder:
            tokens = block(tokens, gate=self.embed_gate)
        memory = self.memory_norm(tokens)
        query = self._embed(self.query).expand(memory.shape[0], -1, -1)
        for block in self.decoder:
            query = block(query, memory, gate=self.embed_gate)
        search = memory[:, -self.score_size ** 2:]
        similarity = search @ self.query_norm(query).transpose(1, 2)  # (B, HW, 1), STARK's enc-dec attention
        return self.predict(search * similarity)


def _tower_widths(layers: nn.Sequential) -> list[int]:
    return [layer[0].out_channels for layer in layers[:-1]]


def _init_linear(model: nn.Module) -> None:
    """timm's ViT initialisation: truncated-normal linear weights (std 0.02), zero biases."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
