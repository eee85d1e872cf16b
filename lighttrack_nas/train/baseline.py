"""Training of stand-alone baseline trackers (families built from an experiment's ``model:`` section).

:class:`BaselineTrainer` trains the network of a registered family (``cnn`` today; a transformer or
hybrid family plugs in by registering a class with ``from_spec``/``spec``) with the generic
:class:`~lighttrack_nas.train.trainer.Trainer`: same data, loss, schedule and resumable checkpoints.
The checkpoint's ``kind`` is the family and it holds the ``model_spec`` that rebuilds the network, so
dense and pruned networks load the same way (``load_tracking_model``). With ``bn_l1 > 0`` it is
Network Slimming's sparsity training: an L1 penalty on every BatchNorm scale.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ConfigError
from ..cost.table import CostTable
from ..models.build import build_model as build_from_spec
from ..models.build import build_supernet, load_space
from ..space.space import experiment_space, largest_architecture
from .trainer import Trainer


def model_section(cfg: Mapping[str, Any], where: str = "experiment") -> dict[str, Any]:
    """The experiment's ``model:`` section (needs a ``family``)."""
    spec = cfg.get("model")
    if not isinstance(spec, Mapping) or "family" not in spec:
        raise ConfigError(f"{where}: a 'model:' section with a 'family' (e.g. cnn) is required")
    return dict(spec)


def model_spec(cfg: Mapping[str, Any], where: str = "experiment") -> dict[str, Any]:
    """The spec that builds the experiment's ``model:``: a ``lighttrack_net`` section takes the
    experiment's space (``space`` + ``space_settings``) unless it names one, and its ``arch`` may be
    ``largest`` (the space's architecture of most MACs); other families' sections as written."""
    spec = model_section(cfg, where)
    if spec["family"] == "lighttrack_net":
        if "arch" not in spec:
            raise ConfigError(f"{where}: model.arch is required for family lighttrack_net (an architecture, or "
                              f"'largest')")
        if "space" not in spec:
            if "space" not in cfg:
                raise ConfigError(f"{where}: model.space or the experiment's space is required for family "
                                  f"lighttrack_net")
            spec["space"] = experiment_space(cfg).to_dict()
        if spec["arch"] == "largest":
            space = load_space(spec["space"])
            spec["arch"] = str(largest_architecture(space, CostTable(build_supernet(space)).macs))
    return spec


class BaselineTrainer(Trainer):
    """Trains ``spec``'s network (default: the config's ``model:`` section), optionally from
    ``init_state`` weights; ``bn_l1`` adds ``bn_l1 * sign(gamma)`` to every BatchNorm scale's gradient."""

    def __init__(self, cfg: dict[str, Any], out_dir: str | Path, spec: Mapping[str, Any] | None = None,
                 init_state: Mapping[str, torch.Tensor] | None = None, bn_l1: float = 0.0,
                 max_iters: int | None = None, progress: bool = True):
        self.spec = dict(spec) if spec is not None else model_spec(cfg)
        self.kind = str(self.spec["family"])
        self.init_state, self.bn_l1 = init_state, float(bn_l1)
        super().__init__(cfg, out_dir, max_iters, progress)
        self.bn_scales = [m.weight for m in self.model.modules() if isinstance(m, nn.BatchNorm2d) and m.affine]

    def build_model(self) -> nn.Module:
        model = build_from_spec(self.spec)
        if self.init_state is not None:
            model.load_state_dict(self.init_state)
            return model
        return self.pretrained(model)

    def extra_state(self) -> dict[str, Any]:
        return {"model_spec": self.model.spec(), "bn_l1": self.bn_l1}

    def _step(self) -> None:
        if self.bn_l1:
            with torch.no_grad():
                for w in self.bn_scales:
                    if w.grad is not None:
                        w.grad.add_(torch.sign(w), alpha=self.bn_l1)
        super()._step()
