"""Fitness of an architecture with inherited supernet weights.

Extract the subnet (copies of its path's weights), recalibrate its BatchNorm statistics by exact
averaging over a fixed set of training crops, track every validation sequence, and score with the
GOT-10k protocol: fitness = (AO + SR0.5) / 2 (REFERENCE.md section 1).
"""
from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..data.sequence import Sequence
from ..evaluate.metrics import evaluate_got10k
from ..evaluate.results import image_size
from ..evaluate.tracking import track_sequences
from ..space.space import Architecture, largest_architecture
from ..tracker import TrackerConfig


@dataclass
class TrackScore:
    """GOT-10k scores of one tracker on a set of sequences, and the search fitness."""

    ao: float
    sr50: float
    sr75: float
    fps: float

    @property
    def fitness(self) -> float:
        return (self.ao + self.sr50) / 2

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "fitness": self.fitness}


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


def track_and_score(model: nn.Module, sequences: list[Sequence], config: TrackerConfig | None = None) -> TrackScore:
    """Run the tracker over ``sequences`` and score them with the GOT-10k protocol."""
    preds, times = track_sequences(model, sequences, config)
    frames = sum(len(t) - 1 for t in times.values())
    seconds = sum(float(np.sum(t[1:])) for t in times.values())
    return score_predictions(sequences, preds, fps=frames / seconds if seconds else 0.0)


def score_predictions(sequences: list[Sequence], preds: dict[str, np.ndarray], fps: float = 0.0) -> TrackScore:
    """GOT-10k AO / SR of predicted boxes (boxes clipped to each image, cover > 0 frames)."""
    result = evaluate_got10k({s.name: s.boxes for s in sequences}, preds,
                             covers={s.name: s.cover for s in sequences if s.cover is not None} or None,
                             sizes={s.name: image_size(s) for s in sequences})
    return TrackScore(ao=result.ao, sr50=result.sr50, sr75=result.sr75, fps=fps)


class SubnetEvaluator:
    """Scores architectures with weights inherited from a supernet (BN recalibrated per subnet)."""

    def __init__(self, supernet: nn.Module, calibration: list[tuple[torch.Tensor, torch.Tensor]],
                 sequences: list[Sequence], tracker_config: TrackerConfig | None = None):
        self.supernet, self.calibration, self.sequences = supernet, calibration, sequences
        self.tracker_config = tracker_config

    def score(self, arch: Architecture) -> TrackScore:
        subnet = recalibrate_batchnorm(self.supernet.extract(arch), self.calibration)
        return track_and_score(subnet, self.sequences, self.tracker_config)

    def __call__(self, archs: list[Architecture]) -> list[float]:
        return [self.score(a).fitness for a in archs]


def static_baseline(sequences: list[Sequence]) -> TrackScore:
    """The "box stays where it started" tracker: the first box repeated on every frame."""
    return score_predictions(sequences, {s.name: np.repeat(s.boxes[:1], len(s), axis=0) for s in sequences})


def reference_architectures(space, macs, samples: int = 201, seed: int = 0) -> dict[str, Architecture]:
    """The largest subnet (most MACs, by coordinate ascent) and a median-size one (median MACs of
    ``samples`` uniform samples): the subnets the supernet-quality bar is measured on."""
    rng = np.random.default_rng(seed)
    drawn = sorted((space.sample(rng) for _ in range(samples)), key=macs)
    return {"largest": largest_architecture(space, macs, drawn[-1]), "median": drawn[len(drawn) // 2]}
