"""Tracking evaluation: OPE and GOT-10k metrics, result files, and tracking a model in memory
(docs/evaluation.md).

Plots live in :mod:`lighttrack_nas.evaluate.plots` (imported on demand: it loads matplotlib).
"""
from .metrics import (GOT10kResult, OPEResult, centre_error, clip_boxes, evaluate_got10k, evaluate_ope,
                      frame_rate, iou, normalized_centre_error, paired_ao_difference, paired_bootstrap)
from .results import (TrackerResults, TrackerScore, open_results, read_boxes, read_times, score_results,
                      score_tracks, write_results)
from .tracking import CheckpointScore, evaluate_checkpoint, score_model, track_sequences

__all__ = [
    "CheckpointScore", "GOT10kResult", "OPEResult", "TrackerResults", "TrackerScore", "centre_error", "clip_boxes",
    "evaluate_checkpoint", "evaluate_got10k", "evaluate_ope", "frame_rate", "iou", "normalized_centre_error",
    "open_results", "paired_ao_difference", "paired_bootstrap", "read_boxes", "read_times", "score_model", "score_results", "score_tracks",
    "track_sequences", "write_results",
]
