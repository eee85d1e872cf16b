"""Evolutionary and random search over any SearchSpace, with a batched fitness function.

Evolution as published for SPOS / LightTrack: a random initial population, then each generation
keeps the top-k candidates seen so far and breeds ``mutants`` (per-gene mutation with
``mutation_prob``) and ``crossovers`` (uniform) from them; duplicates of anything already
evaluated are rejected; constraints are enforced by capped rejection sampling. Fitness is
evaluated a batch at a time (so a caller can spread a batch over workers) and cached per
architecture. The whole state round-trips through ``state_dict`` for resuming.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..space.space import Architecture, Constraint, SearchSpace

Evaluate = Callable[[list[Architecture]], Sequence[float]]


@dataclass(frozen=True)
class EvolutionConfig:
    """Numbers of the search (defaults: LightTrack's published setting)."""

    population: int = 48
    generations: int = 20
    topk: int = 10
    mutants: int = 24
    crossovers: int = 24
    mutation_prob: float = 0.1
    max_attempts: int = 1000
    seed: int = 0


class Search:
    """Shared state of a search: the fitness cache, the generation counter and the RNG."""

    def __init__(self, space: SearchSpace, evaluate: Evaluate, config: EvolutionConfig,
                 constraints: list[Constraint] | None = None):
        self.space, self.evaluate_batch, self.config = space, evaluate, config
        self.constraints = list(constraints or [])
        self.rng = np.random.default_rng(config.seed)
        self.fitness: dict[Architecture, float] = {}
        self.generation = 0

    @property
    def done(self) -> bool:
        return self.generation >= self.config.generations

    def best(self, k: int = 1) -> list[tuple[Architecture, float]]:
        """The ``k`` best (architecture, fitness) pairs evaluated so far."""
        return sorted(self.fitness.items(), key=lambda kv: -kv[1])[:k]

    def _evaluate(self, archs: list[Architecture]) -> None:
        new = [a for a in dict.fromkeys(archs) if a not in self.fitness]
        if new:
            scores = self.evaluate_batch(new)
            if len(scores) != len(new):
                raise RuntimeError(f"fitness function returned {len(scores)} values for {len(new)} architectures")
            self.fitness.update(zip(new, map(float, scores)))

    def _fresh(self, draw: Callable[[], Architecture], count: int, taken: set[Architecture]) -> list[Architecture]:
        """Up to ``count`` new architectures from ``draw``, unseen and distinct (capped attempts)."""
        out: list[Architecture] = []
        for _ in range(count * 10):
            if len(out) >= count:
                break
            arch = draw()
            if arch not in taken and arch not in self.fitness:
                taken.add(arch)
                out.append(arch)
        return out

    def _sample(self) -> Architecture:
        return self.space.sample(self.rng, self.constraints, self.config.max_attempts)

    def step(self) -> list[Architecture]:
        """Run one generation; returns the candidates evaluated in it."""
        raise NotImplementedError

    def run(self, on_generation: Callable[["Search"], None] | None = None) -> tuple[Architecture, float]:
        """Run the remaining generations (calling ``on_generation`` after each) and return the best."""
        while not self.done:
            self.step()
            if on_generation is not None:
                on_generation(self)
        return self.best(1)[0]

    def state_dict(self) -> dict[str, Any]:
        return {"generation": self.generation, "config": asdict(self.config),
                "rng": self.rng.bit_generator.state,
                "fitness": [[str(a), f] for a, f in self.fitness.items()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["config"] != asdict(self.config):
            raise ValueError("saved search state was made with a different configuration; "
                             f"saved {state['config']}, now {asdict(self.config)}")
        self.generation = state["generation"]
        self.rng.bit_generator.state = state["rng"]
        self.fitness = {self.space.decode(a): float(f) for a, f in state["fitness"]}


class Evolution(Search):
    """Top-k evolution with mutation and uniform crossover (SPOS / LightTrack)."""

    def step(self) -> list[Architecture]:
        cfg = self.config
        taken: set[Architecture] = set()
        if self.generation == 0:
            batch = self._fresh(self._sample, cfg.population, taken)
        else:
            parents = [a for a, _ in self.best(cfg.topk)]
            pick = lambda: parents[self.rng.integers(len(parents))]  # noqa: E731
            batch = self._fresh(lambda: self.space.mutate(pick(), cfg.mutation_prob, self.rng, self.constraints,
                                                          cfg.max_attempts), cfg.mutants, taken)
            batch += self._fresh(lambda: self.space.crossover(pick(), pick(), self.rng, self.constraints,
                                                              cfg.max_attempts), cfg.crossovers, taken)
            batch += self._fresh(self._sample, cfg.population - len(batch), taken)  # top up to equal counts
        self._evaluate(batch)
        self.generation += 1
        return batch


class RandomSearch(Search):
    """Uniform random sampling with the same number of evaluations as Evolution."""

    def step(self) -> list[Architecture]:
        batch = self._fresh(self._sample, self.config.population, set())
        self._evaluate(batch)
        self.generation += 1
        return batch


STRATEGIES: dict[str, type[Search]] = {"evolution": Evolution, "random": RandomSearch}
