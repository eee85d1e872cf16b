"""LightTrack's weight-sharing supernet and its standalone subnets.

Data flow for one architecture (REFERENCE.md section 1)::

    crop -> stem (conv3x3 s2) -> DS block -> searchable MBConv layers up to the output position
         -> per-position BatchNorm (template and search separately)
         -> pixel-wise correlation with every template position -> channel attention -> 1x1 conv
         -> classification tower + predictor, regression tower + predictor (separate weights)

Both the supernet (all candidates, one active path) and the extracted subnet (exactly the weights
of one path) implement :class:`TrackingNet`'s ``template(z)`` / ``track(x)`` / ``forward(z, x)``.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..space.space import Architecture, SearchSpace, SpaceError
from .build import load_space
from .choice import LayerChoice, WidthSlice, activate, freeze, op_choice
from .ops import DepthwiseSeparable, Skip, activation, conv_bn, make_divisible
from .registry import register_model
from .tracking import CorrelationNeck, PositionNorm, Predictor, TrackingNet


@dataclass(frozen=True)
class Position:
    """Where the head reads the backbone: global layer index, channels and cumulative stride."""

    value: str
    layer: int
    channels: int
    stride: int


REQUIRED_SETTINGS = frozenset({"template_size", "search_size", "stem_channels", "ds_channels", "stages",
                               "feature_stages", "neck_channels"})
OPTIONAL_SETTINGS = frozenset({"backbone_width_mult", "head_width_mult", "stem_activation", "channel_attention_reduction",
                               "cls_scale", "reg_scale", "head_per_stride", "head_share_kernels", "head_share_widths"})


def check_settings(settings: Mapping[str, Any], source: str = "space") -> None:
    """Raise SpaceError naming unknown or missing LightTrack space settings (e.g. a typo in ``space_settings``)."""
    unknown = sorted(set(settings) - REQUIRED_SETTINGS - OPTIONAL_SETTINGS)
    if unknown:
        raise SpaceError(f"{source}: unknown setting(s) {unknown} (space settings or an experiment's space_settings); "
                         f"allowed: {sorted(REQUIRED_SETTINGS | OPTIONAL_SETTINGS)}")
    missing = sorted(REQUIRED_SETTINGS - set(settings))
    if missing:
        raise SpaceError(f"{source}: settings {missing} are required by the LightTrack supernet")


@register_model("lighttrack")
class LightTrackSupernet(TrackingNet):
    """All candidates of the LightTrack space; ``set_arch(arch)`` selects the single path."""

    backbone_prefixes = ("stem.", "layers.")

    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space
        s = space.settings
        check_settings(s, space.name)
        self.template_size, self.search_size = int(s["template_size"]), int(s["search_size"])
        bmult, hmult = float(s.get("backbone_width_mult", 1.0)), float(s.get("head_width_mult", 1.0))
        stem_act = str(s.get("stem_activation", "swish"))
        self.stem = nn.Sequential(conv_bn(3, s["stem_channels"], 3, 2, act=activation(stem_act, "stem_activation")),
                                  DepthwiseSeparable(s["stem_channels"], s["ds_channels"], 1, 3, 0.25, act=stem_act))
        layers, positions = [], {}
        channels, stride = s["ds_channels"], 2
        for stage in s["stages"]:
            out_ch = make_divisible(stage["channels"] * bmult)
            stage_choices = [c for c in space.choices if c.group == stage["name"]]
            for block, choice in enumerate(stage_choices):
                layer_stride = stage["stride"] if block == 0 else 1
                stride *= layer_stride
                layers.append(op_choice(choice.label, list(choice.values), space.ops, channels, out_ch, layer_stride))
                channels = out_ch
                if stage["name"] in s["feature_stages"]:
                    value = f"{stage['name']}b{block}"
                    positions[value] = Position(value, len(layers) - 1, out_ch, stride)
        self.layers = nn.ModuleList(layers)
        out_values = [str(v) for v in space.choice("out").values]
        if sorted(out_values) != sorted(positions):
            raise ValueError(f"space {space.name!r}: 'out' values {out_values} do not match the feature "
                             f"positions {sorted(positions)} implied by settings.stages/feature_stages")
        self.positions = positions
        self.position_norms = nn.ModuleDict({v: PositionNorm(p.channels) for v, p in positions.items()})
        neck_ch = int(s["neck_channels"])
        strides = sorted({p.stride for p in positions.values()})
        self.necks = nn.ModuleDict({
            str(st): CorrelationNeck((self.template_size // st) ** 2, neck_ch, int(s.get("channel_attention_reduction", 1)))
            for st in strides})
        # one set of towers for all output positions, or one per feature stride (8x8 and 16x16 maps
        # then train separate weights; the space and every subnet are unchanged)
        keys = [str(st) for st in strides] if s.get("head_per_stride") else ["all"]
        self.tower_sets = nn.ModuleDict({key: self._towers(space, neck_ch, hmult) for key in keys})
        self.register_load_state_dict_pre_hook(_rename_shared_towers)
        self.set_arch(space.sample(0))

    @staticmethod
    def _towers(space: SearchSpace, neck_ch: int, hmult: float) -> nn.ModuleDict:
        """The classification and regression towers (each a width choice over chains of op choices)."""
        s = space.settings
        scales = {"cls": float(s.get("cls_scale", 0.1)), "reg": float(s.get("reg_scale", 16))}
        share = list(s.get("head_share_kernels", []))  # op types whose kernel variants share tower weights
        towers = nn.ModuleDict()
        for kind in ("cls", "reg"):
            tower_choices = [c for c in space.choices if c.group == kind]

            def tower(width: int) -> nn.Sequential:
                ops = [op_choice(c.label, list(c.values), space.ops, neck_ch if i == 0 else width, width,
                                 share_kernels=share)
                       for i, c in enumerate(tower_choices)]
                return nn.Sequential(*ops, Predictor(width, kind, scales[kind]))

            widths = {str(w): make_divisible(int(w) * hmult) for w in space.choice(f"{kind}_w").values}
            if s.get("head_share_widths"):  # one tower at the largest width, narrower ones use its first channels
                shared = tower(max(widths.values()))
                candidates = {v: WidthSlice(shared, width) for v, width in widths.items()}
            else:
                candidates = {v: tower(width) for v, width in widths.items()}
            towers[kind] = LayerChoice(f"{kind}_w", candidates)
        return towers

    @property
    def towers(self) -> nn.ModuleDict:
        """The ``cls`` / ``reg`` towers the current output position feeds."""
        key = str(self.position.stride)
        return self.tower_sets[key if key in self.tower_sets else "all"]

    @property
    def head_labels(self) -> set[str]:
        """Labels of the choices inside the head towers (widths and tower ops)."""
        return {m.label for m in self.tower_sets.modules() if isinstance(m, LayerChoice)}

    def set_arch(self, arch: Architecture | Mapping[str, Any]) -> None:
        """Select the single path of ``arch`` for the following forward passes."""
        arch = arch if isinstance(arch, Architecture) else self.space.validate(arch)
        activate(self, arch)
        self.arch = arch
        self.position = self.positions[str(arch["out"])]
        self._zf = None

    def _parts(self):
        p = self.position
        norm = self.position_norms[p.value]
        return (_RunLayers(self.stem, self.layers, p.layer + 1), norm, self.necks[str(p.stride)],
                self.towers["cls"], self.towers["reg"], p.stride)

    def extract(self, arch: Architecture | Mapping[str, Any] | None = None) -> "LightTrackSubnet":
        """A standalone subnet holding copies of exactly the weights of ``arch``'s path."""
        if arch is not None:
            self.set_arch(arch)
        p = self.position
        backbone = nn.Sequential(*copy.deepcopy(self.stem),
                                 *[freeze(layer, self.arch) for layer in self.layers[: p.layer + 1]])
        towers = {k: _drop_skips(freeze(self.towers[k], self.arch)) for k in ("cls", "reg")}
        return LightTrackSubnet(str(self.arch), self.template_size, self.search_size, p.stride, backbone,
                                copy.deepcopy(self.position_norms[p.value]), copy.deepcopy(self.necks[str(p.stride)]),
                                towers["cls"], towers["reg"], self.space)


SUBNET_SPEC_KEYS = {"family", "space", "arch", "channels"}


@register_model("lighttrack_net")
class LightTrackSubnet(TrackingNet):
    """One architecture of the space as a plain network (no choices, no unused weights).

    It is also the stand-alone family ``lighttrack_net`` (a dense tracker of the space that other
    methods, e.g. channel pruning, start from); its ``model_spec`` rebuilds it, pruned or not::

        family: lighttrack_net
        space: {...}              # the space (a mapping, or a YAML path), with the crop sizes it ran at
        arch: "s1:k3e4-...|..."   # the architecture
        channels:                 # only the layers whose widths differ from the architecture's own
          backbone.3.expand.0: [16, 48, 1]   # Conv2d: [in, out, groups]
          backbone.3.expand.1: [48]          # BatchNorm2d: [features]
    """

    def __init__(self, arch: str, template_size: int, search_size: int, stride: int, backbone: nn.Sequential,
                 norm: PositionNorm, neck: CorrelationNeck, cls_tower: nn.Sequential, reg_tower: nn.Sequential,
                 space: SearchSpace | None = None):
        super().__init__()
        self.arch, self.template_size, self.search_size, self._stride = arch, template_size, search_size, stride
        self.backbone, self.norm, self.neck = backbone, norm, neck
        self.cls_tower, self.reg_tower = cls_tower, reg_tower
        self.space = space
        self._own_shapes = layer_shapes(self)  # the architecture's widths: spec() records what differs

    def _parts(self):
        return self.backbone, self.norm, self.neck, self.cls_tower, self.reg_tower, self._stride

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "LightTrackSubnet":
        """The network of a ``model:`` section or checkpoint ``model_spec`` (see the class docstring)."""
        unknown = sorted(set(spec) - SUBNET_SPEC_KEYS)
        missing = sorted({"space", "arch"} - set(spec))
        if unknown or missing:
            raise ValueError(f"model ({spec.get('family')}): " + (f"unknown key(s) {unknown}; " if unknown else "")
                             + (f"missing {missing}; " if missing else "") + f"allowed: {sorted(SUBNET_SPEC_KEYS)}")
        space = load_space(spec["space"])
        net = LightTrackSupernet(space).extract(space.decode(str(spec["arch"])))
        net.reshape(spec.get("channels") or {})
        return net

    def spec(self) -> dict[str, Any]:
        """Plain data that rebuilds this network: its space, architecture and the widths that differ
        from the architecture's (read from the modules, so a pruned network reports its widths)."""
        if self.space is None:
            raise ValueError("this subnet does not know its search space (build it with extract or from_spec)")
        own, now = self._own_shapes, layer_shapes(self)
        return {"family": "lighttrack_net", "space": self.space.to_dict(), "arch": self.arch,
                "channels": {name: shape for name, shape in now.items() if own.get(name) != shape}}

    def reshape(self, channels: Mapping[str, Any]) -> None:
        """Rebuild (freshly initialised) the Conv2d / BatchNorm2d layers named in ``channels`` at the
        given widths (``[in, out, groups]`` / ``[features]``); errors name the layer."""
        modules = dict(self.named_modules())
        for name, shape in channels.items():
            layer = modules.get(name)
            where = f"model.channels[{name!r}]"
            if not isinstance(layer, (nn.Conv2d, nn.BatchNorm2d)):
                raise ValueError(f"{where}: no Conv2d or BatchNorm2d of that name in architecture {self.arch}")
            size = 3 if isinstance(layer, nn.Conv2d) else 1
            if (not isinstance(shape, (list, tuple)) or len(shape) != size
                    or not all(isinstance(v, int) and v >= 1 for v in shape)):
                raise ValueError(f"{where}: expected {size} positive integers "
                                 f"({'[in, out, groups]' if size == 3 else '[features]'}), got {shape!r}")
            if isinstance(layer, nn.Conv2d):
                c_in, c_out, groups = shape
                new: nn.Module = nn.Conv2d(c_in, c_out, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                                           groups, layer.bias is not None, layer.padding_mode)
            else:
                new = nn.BatchNorm2d(shape[0], layer.eps, layer.momentum, layer.affine, layer.track_running_stats)
            parent, _, attr = name.rpartition(".")
            setattr(self.get_submodule(parent) if parent else self, attr, new)


def layer_shapes(model: nn.Module) -> dict[str, list[int]]:
    """``[in, out, groups]`` of every Conv2d and ``[features]`` of every BatchNorm2d of ``model``, by name."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            out[name] = [m.in_channels, m.out_channels, m.groups]
        elif isinstance(m, nn.BatchNorm2d):
            out[name] = [m.num_features]
    return out


class _RunLayers(nn.Module):
    """Stem followed by the first ``depth`` searchable layers (no parameters of its own)."""

    def __init__(self, stem: nn.Module, layers: nn.ModuleList, depth: int):
        super().__init__()
        self.parts = [stem, *layers[:depth]]  # plain list: not registered twice

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.parts:
            x = m(x)
        return x


def _rename_shared_towers(module: nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any) -> None:
    """Checkpoints written before towers per stride existed keep their one tower set under ``towers.``."""
    for key in [k for k in state_dict if k.startswith(prefix + "towers.")]:
        state_dict[prefix + "tower_sets.all." + key[len(prefix + "towers."):]] = state_dict.pop(key)


def _drop_skips(seq: nn.Sequential) -> nn.Sequential:
    return nn.Sequential(*[m for m in seq if not isinstance(m, Skip)])
