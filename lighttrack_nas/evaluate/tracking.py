"""Track a set of sequences with a tracking model and score it: the in-memory path from a model
to its metrics (no result files). Any model with ``template``/``track`` works (LightTrack subnets,
fused or ONNX forms, other CNN trackers); the tracker runtime is imported on first use (torch).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from ..data.sequence import Sequence
from .results import score_tracks

if TYPE_CHECKING:
    from torch import nn

    from ..tracker import TrackerConfig


def track_sequences(model: "nn.Module", sequences: list[Sequence], config: "TrackerConfig | None" = None,
                    progress: bool = False) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Boxes ``(N, 4)`` and seconds per frame ``(N,)`` of every sequence, by name (row 0: the
    given first box and the initialisation time)."""
    from ..tracker import Tracker

    tracker = Tracker(model, config)
    boxes, times = {}, {}
    for seq in tqdm(sequences, desc="tracking", unit="seq", disable=not progress, leave=False):
        boxes[seq.name], times[seq.name] = tracker.track_sequence(seq)
    return boxes, times


def evaluate_tracking_model(model: "nn.Module", sequences: list[Sequence], config: "TrackerConfig | None" = None,
                            progress: bool = False) -> dict[str, Any]:
    """Track ``sequences`` and score them with both protocols: ``ao``, ``sr50``, ``sr75``,
    ``success_auc``, ``precision20``, ``norm_precision20``, ``fps`` and ``per_sequence``
    (:meth:`TrackerScore.to_dict`)."""
    boxes, times = track_sequences(model, sequences, config, progress)
    return score_tracks(sequences, boxes, times).to_dict()
