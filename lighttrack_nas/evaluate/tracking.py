"""Track sequences with a tracking model and score them: the one in-memory path from a model (or
a checkpoint) to its metrics. Any model with ``template``/``track`` works (LightTrack subnets, fused
or ONNX forms, other CNN trackers); the tracker runtime is imported on first use (torch).

- :func:`track_sequences`: boxes and per-frame times of every sequence.
- :func:`score_model`: the above, scored (:class:`~lighttrack_nas.evaluate.results.TrackerScore`).
- :func:`evaluate_checkpoint`: a checkpoint in its fused inference form, tracked, scored, its cost
  counted, its result files written when asked.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from ..data.sequence import Sequence
from .results import TrackerScore, score_tracks, write_results

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


def score_model(model: "nn.Module", sequences: list[Sequence], config: "TrackerConfig | None" = None,
                progress: bool = False, name: str = "tracker") -> TrackerScore:
    """Track ``sequences`` with ``model`` and score them with both protocols (GOT-10k and OPE)."""
    boxes, times = track_sequences(model, sequences, config, progress)
    return score_tracks(sequences, boxes, times, name)


@dataclass
class CheckpointScore:
    """A checkpoint tracked in its fused form: its scores, its cost and the model that was tracked."""

    score: TrackerScore
    macs: float
    params: float
    template_macs: float
    model: Any

    def to_dict(self) -> dict[str, Any]:
        """The scores' :meth:`~TrackerScore.to_dict` with ``macs``, ``params`` and ``template_macs``."""
        return {**self.score.to_dict(), "macs": self.macs, "params": self.params, "template_macs": self.template_macs}


def evaluate_checkpoint(checkpoint: str | Path, sequences: list[Sequence], config: "TrackerConfig | None" = None, *,
                        threads: int | None = None, results: str | Path | None = None,
                        progress: bool = False) -> CheckpointScore:
    """Load a tracking checkpoint, count its cost, track ``sequences`` with its fused inference form
    (with ``threads`` torch threads: tracking is chaotic, results depend on the thread count) and
    score it; with ``results``, also write one GOT-10k result file per sequence there."""
    import torch

    from ..cost import count_tracking_model
    from ..deploy import inference_model
    from ..models.build import load_tracking_model

    model = load_tracking_model(checkpoint, None)
    cost = count_tracking_model(model)
    deployed = inference_model(model)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        boxes, times = track_sequences(deployed, sequences, config, progress)
    finally:
        torch.set_num_threads(previous)
    if results is not None:
        for seq in sequences:
            write_results(results, seq.name, boxes[seq.name], times[seq.name])
    score = score_tracks(sequences, boxes, times, Path(checkpoint).parent.name)
    return CheckpointScore(score, cost.macs, cost.params, cost.template_macs, deployed)
