"""Path samplers for single-path one-shot training, and the learning-rate schedule."""
from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

import numpy as np

from ..space.space import Architecture, SearchSpace


class PathSampler:
    """Yields one architecture per iteration.

    ``uniform``: every choice sampled uniformly (SPOS). ``fair``: FairNAS strict fairness: paths
    come in blocks of ``m`` = the largest choice size; within a block every value of a choice of
    size ``m`` is used exactly once (smaller choices cycle through shuffled copies of their values,
    exactly fair when their size divides ``m``, as in LightTrack's space: 12 = 6 x 2 = 3 x 4).
    """

    def __init__(self, space: SearchSpace, strategy: str = "uniform", seed: int = 0):
        if strategy not in ("uniform", "fair"):
            raise ValueError(f"path sampling strategy {strategy!r} is not one of: uniform, fair")
        self.space, self.strategy = space, strategy
        self.rng = np.random.default_rng(seed)
        self.queue: list[Architecture] = []
        self.block = max(len(c.values) for c in space.choices)

    def __next__(self) -> Architecture:
        if self.strategy == "uniform":
            return self.space.sample(self.rng)
        if not self.queue:
            columns = {}
            for c in self.space.choices:
                reps = math.ceil(self.block / len(c.values))
                columns[c.label] = [v for _ in range(reps) for v in self.rng.permutation(np.array(c.values, dtype=object))][: self.block]
            self.queue = [Architecture(self.space, {label: columns[label][i] for label in columns}) for i in range(self.block)]
        return self.queue.pop(0)

    def resample(self, arch: Architecture, labels: Collection[str]) -> Architecture:
        """``arch`` with the values of ``labels`` drawn uniformly anew (from this sampler's RNG)."""
        fresh = self.space.sample(self.rng)
        return self.space.validate({c.label: fresh[c.label] if c.label in labels else arch[c.label]
                                    for c in self.space.choices})

    def __iter__(self) -> "PathSampler":
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "queue": [str(a) for a in self.queue]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.queue = [self.space.decode(a) for a in state["queue"]]


def learning_rate(iteration: int, total: int, warmup: int, start: float, peak: float, final: float) -> float:
    """LightTrack's schedule: linear warm-up ``start -> peak`` over ``warmup`` iterations, then
    log-linear decay from ``peak`` to ``final`` at the last iteration."""
    if iteration < warmup:
        return start + (peak - start) * iteration / warmup
    span = max(1, total - 1 - warmup)
    return peak * (final / peak) ** (min(iteration - warmup, span) / span)
