"""One-line builders: spaces from YAML, supernets, subnets, and tracking models from checkpoints."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..space.space import Architecture, SearchSpace
from .registry import model_builder, spec_families


def load_space(space: str | Path | Mapping[str, Any] | SearchSpace) -> SearchSpace:
    """A SearchSpace from a YAML path, a mapping (e.g. a checkpoint's or a model spec's), or the space itself."""
    if isinstance(space, SearchSpace):
        return space
    return SearchSpace.from_dict(space, "model.space") if isinstance(space, Mapping) else SearchSpace.from_yaml(space)


def build_supernet(space: str | Path | SearchSpace) -> nn.Module:
    """The weight-sharing supernet of ``space`` (its ``model:`` field picks the builder)."""
    space = load_space(space)
    return model_builder(space.model)(space)


def build_subnet(space: str | Path | SearchSpace, arch: str | Architecture) -> nn.Module:
    """A freshly initialised standalone subnet of ``arch``."""
    space = load_space(space)
    arch = arch if isinstance(arch, Architecture) else space.decode(arch)
    return build_supernet(space).extract(arch)


def build_model(spec: Mapping[str, Any]) -> nn.Module:
    """A stand-alone tracking network from a ``model:`` section or a checkpoint's ``model_spec``;
    its ``family`` names the registered class (e.g. ``cnn``)."""
    family = spec.get("family") if isinstance(spec, Mapping) else None
    if family not in spec_families():
        raise ValueError(f"model.family: {family!r} is not one of {spec_families()}")
    return model_builder(family).from_spec(spec)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``: no code in a user file ever runs)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: checkpoint not found") from None
    except Exception as err:  # torch raises several types for corrupt or unsafe files
        raise ValueError(f"{path}: not a readable weights-only checkpoint ({err})") from None
    if not isinstance(data, dict) or "model" not in data:
        raise ValueError(f"{path}: expected a checkpoint dict with a 'model' state dict")
    return data


def checkpoint_space(data: dict[str, Any], space: str | Path | SearchSpace | None) -> SearchSpace:
    """The space a checkpoint was trained in (stored in it), unless ``space`` is given."""
    if space is not None:
        return load_space(space)
    if "space" not in data:
        raise ValueError("this checkpoint does not record its search space: pass the space (--space)")
    return SearchSpace.from_dict(data["space"], source="checkpoint")


def load_supernet(checkpoint: str | Path, space: str | Path | SearchSpace | None = None) -> nn.Module:
    """A supernet with the weights of a training checkpoint (its own space unless ``space`` is given)."""
    data = read_checkpoint(checkpoint)
    supernet = build_supernet(checkpoint_space(data, space))
    supernet.load_state_dict(data["model"])
    return supernet


def load_tracking_model(checkpoint: str | Path | None, arch: str | None,
                        space: str | Path | SearchSpace | None = None) -> nn.Module:
    """A tracking model (``template``/``track``) for the tracker runtime, in eval mode.

    - supernet checkpoint (``kind: supernet``): the subnet of ``arch`` with inherited weights;
    - subnet checkpoint (``kind: subnet``, holding its ``arch``): that subnet with its weights;
    - checkpoint of a stand-alone family (``kind`` e.g. ``cnn``, holding its ``model_spec``: dense or
      pruned widths): that network with its weights (no ``arch`` or space involved);
    - no checkpoint: ``arch`` with random weights (speed measurements).
    The space is the one stored in the checkpoint unless ``space`` is given.
    """
    data = read_checkpoint(checkpoint) if checkpoint is not None else None
    if data is not None and "model_spec" in data:
        if arch is not None:
            raise ValueError(f"{checkpoint}: holds a {data.get('kind')!r} network, which takes no --arch")
        model = build_model(data["model_spec"])
        model.load_state_dict(data["model"])
        return model.eval()
    if data is None and space is None:
        raise ValueError("without a checkpoint, a search space (--space) is needed")
    space = checkpoint_space(data or {}, space)
    kind = data.get("kind", "supernet") if data else None
    if kind == "subnet":
        stored = space.decode(data["arch"])
        if arch is not None and space.decode(arch) != stored:
            raise ValueError(f"{checkpoint}: holds subnet {stored}, not the requested --arch {arch}")
        model = build_subnet(space, stored)
    else:
        if arch is None:
            raise ValueError("an architecture (--arch) is needed with a supernet checkpoint or without a checkpoint")
        supernet = build_supernet(space)
        if data:
            supernet.load_state_dict(data["model"])
        model = supernet.extract(space.decode(arch))
    if kind == "subnet":
        model.load_state_dict(data["model"])
    return model.eval()
