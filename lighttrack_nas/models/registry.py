"""Model registry: a search space's ``model:`` field names the supernet class that builds it; an
experiment's ``model: {family: ...}`` section names a stand-alone family (a class with ``from_spec``)."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..config import UnknownNameError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable:
    """Class decorator registering a supernet builder ``cls(space)``, or a family with
    ``cls.from_spec(spec)``, under ``name``."""

    def deco(cls: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _MODELS[name] = cls
        return cls

    return deco


def model_builder(name: str | None) -> Callable[..., nn.Module]:
    if name not in _MODELS:
        raise UnknownNameError(f"model {name!r} is not registered; registered: {sorted(_MODELS)}")
    return _MODELS[name]


def spec_families() -> list[str]:
    """Registered families built from a ``model:`` section (those with ``from_spec``)."""
    return sorted(name for name, cls in _MODELS.items() if hasattr(cls, "from_spec"))
