"""Model registry: a search space's ``model:`` field names the supernet class that builds it."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable:
    """Class decorator registering a supernet builder ``cls(space)`` under ``name``."""

    def deco(cls: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _MODELS[name] = cls
        return cls

    return deco


def model_builder(name: str | None) -> Callable[..., nn.Module]:
    if name not in _MODELS:
        raise KeyError(f"model {name!r} is not registered; registered: {sorted(_MODELS)}")
    return _MODELS[name]
