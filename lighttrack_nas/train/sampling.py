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

    ``ramp_values`` / ``ramp_iterations`` (uniform only): a progressive curriculum in which each of
    these values (e.g. ``skip``) is drawn with a probability rising linearly from 0 to the uniform
    one over the first ``ramp_iterations`` paths, the other values of its choice sharing the rest.
    """

    def __init__(self, space: SearchSpace, strategy: str = "uniform", seed: int = 0,
                 ramp_values: Collection[str] = (), ramp_iterations: int = 0):
        if strategy not in ("uniform", "fair"):
            raise ValueError(f"path sampling strategy {strategy!r} is not one of: uniform, fair")
        if ramp_iterations and strategy != "uniform":
            raise ValueError("a sampling ramp needs the uniform strategy")
        self.space, self.strategy = space, strategy
        self.rng = np.random.default_rng(seed)
        self.queue: list[Architecture] = []
        self.block = max(len(c.values) for c in space.choices)
        self.ramp_values, self.ramp_iterations = {str(v) for v in ramp_values}, int(ramp_iterations)
        self.count = 0

    def __next__(self) -> Architecture:
        self.count += 1
        if self.strategy == "uniform":
            return self._draw()
        if not self.queue:
            columns = {}
            for c in self.space.choices:
                reps = math.ceil(self.block / len(c.values))
                columns[c.label] = [v for _ in range(reps) for v in self.rng.permutation(np.array(c.values, dtype=object))][: self.block]
            self.queue = [Architecture(self.space, {label: columns[label][i] for label in columns}) for i in range(self.block)]
        return self.queue.pop(0)

    def _draw(self) -> Architecture:
        """A uniform path, or during the ramp one with the ramped values' reduced probability."""
        if not self.ramp_iterations or self.count > self.ramp_iterations:
            return self.space.sample(self.rng)
        fraction = (self.count - 1) / self.ramp_iterations
        values = {}
        for c in self.space.choices:
            ramped = [str(v) in self.ramp_values for v in c.values]
            n, k = len(c.values), sum(ramped)
            p = np.full(n, 1.0 / n)
            if 0 < k < n:
                p = np.where(ramped, fraction / n, (1.0 - k * fraction / n) / (n - k))
            values[c.label] = c.values[int(self.rng.choice(n, p=p))]
        return Architecture(self.space, values)

    def resample(self, arch: Architecture, labels: Collection[str]) -> Architecture:
        """``arch`` with the values of ``labels`` drawn anew (from this sampler's RNG and distribution)."""
        fresh = self._draw()
        return self.space.validate({c.label: fresh[c.label] if c.label in labels else arch[c.label]
                                    for c in self.space.choices})

    def __iter__(self) -> "PathSampler":
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "queue": [str(a) for a in self.queue], "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.queue = [self.space.decode(a) for a in state["queue"]]
        self.count = int(state.get("count", 0))


def learning_rate(iteration: int, total: int, warmup: int, start: float, peak: float, final: float) -> float:
    """LightTrack's schedule: linear warm-up ``start -> peak`` over ``warmup`` iterations, then
    log-linear decay from ``peak`` to ``final`` at the last iteration."""
    if iteration < warmup:
        return start + (peak - start) * iteration / warmup
    span = max(1, total - 1 - warmup)
    return peak * (final / peak) ** (min(iteration - warmup, span) / span)
