"""Tracking data: the shared sequence interface, readers of standard data sets, the synthetic generator."""
from .readers import READERS, open_dataset
from .sequence import DataError, Sequence
from .synthetic import (CHALLENGES, SHARED_BACKGROUNDS, SOURCE_SPLITS, SPLIT_BACKGROUNDS, SPLITS, SequencePlan,
                        SyntheticFrame, ensure_dataset, generate_dataset, plan_sequence)

__all__ = [
    "CHALLENGES", "DataError", "READERS", "SHARED_BACKGROUNDS", "SOURCE_SPLITS", "SPLITS", "SPLIT_BACKGROUNDS", "Sequence",
    "SequencePlan", "SyntheticFrame", "ensure_dataset", "generate_dataset", "open_dataset", "plan_sequence",
]
