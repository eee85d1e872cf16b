"""Fitness of an architecture with inherited supernet weights.

Extract the subnet (copies of its path's weights), recalibrate its BatchNorm statistics by exact
averaging over a fixed set of training crops, fold them into the convolutions (the fused form the
tracker deploys, :func:`~lighttrack_nas.deploy.inference_model`), track every validation sequence, and score with the
GOT-10k protocol: fitness = (AO + SR0.5) / 2 (:attr:`TrackerScore.fitness`, REFERENCE.md section 1).
"""
from __future__ import annotations

from collections.abc import Sequence as Seq

import numpy as np
import torch
from torch import nn

from ..data.sequence import Sequence
from ..deploy import inference_model
from ..evaluate.results import TrackerScore, score_tracks
from ..evaluate.tracking import score_model
from ..space.space import Architecture, largest_architecture
from ..tracker import TrackerConfig


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Seq[tuple[torch.Tensor, torch.Tensor]]) -> nn.Module:
    """Replace every BatchNorm's running statistics by their exact average over ``batches``
    (cumulative averaging: ``momentum=None``); returns the model in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for z, x in batches:
        model(z, x)
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    return model.eval()


FITNESS_FORM = "fused"  # what the fitness tracks: BatchNorm folded (since 2026-12-06); part of every score's key


def inherited_subnet(supernet: nn.Module, arch: Architecture,
                     calibration: Seq[tuple[torch.Tensor, torch.Tensor]]) -> nn.Module:
    """``arch``'s subnet as the search scores it: weights copied from ``supernet``, BatchNorm
    recalibrated on ``calibration``, then fused (BatchNorm folded, the deployment form)."""
    with torch.no_grad():
        return inference_model(recalibrate_batchnorm(supernet.extract(arch), calibration))


class SubnetEvaluator:
    """Scores architectures with weights inherited from a supernet (BN recalibrated per subnet)."""

    def __init__(self, supernet: nn.Module, calibration: list[tuple[torch.Tensor, torch.Tensor]],
                 sequences: list[Sequence], tracker_config: TrackerConfig | None = None):
        self.supernet, self.calibration, self.sequences = supernet, calibration, sequences
        self.tracker_config = tracker_config

    def score(self, arch: Architecture) -> TrackerScore:
        subnet = inherited_subnet(self.supernet, arch, self.calibration)
        return score_model(subnet, self.sequences, self.tracker_config, name=str(arch))

    def __call__(self, archs: list[Architecture]) -> list[float]:
        return [self.score(a).fitness for a in archs]


def static_baseline(sequences: list[Sequence]) -> TrackerScore:
    """The "box stays where it started" tracker: the first box repeated on every frame."""
    return score_tracks(sequences, {s.name: np.repeat(s.boxes[:1], len(s), axis=0) for s in sequences}, name="static")


def reference_architectures(space, macs, samples: int = 201, seed: int = 0) -> dict[str, Architecture]:
    """The largest subnet (most MACs, by coordinate ascent) and a median-size one (median MACs of
    ``samples`` uniform samples): the subnets the supernet-quality bar is measured on."""
    rng = np.random.default_rng(seed)
    drawn = sorted((space.sample(rng) for _ in range(samples)), key=macs)
    return {"largest": largest_architecture(space, macs, drawn[-1]), "median": drawn[len(drawn) // 2]}
