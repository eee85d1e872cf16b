"""Ray evaluation backend: candidates scored on long-lived Ray actors.

Each actor builds its scorer once (supernet, calibration crops and sequences loaded a single time)
and receives several candidates per task, so Ray's per-task overhead is amortised. An actor that
dies (killed, out of memory, crashed node) is replaced and its candidates are retried, at most
``max_retries`` times per task. Ray is imported only here, so it stays an optional dependency.
"""
from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from typing import Any

from .backend import OnResult, Scorer, Scores

log = logging.getLogger(__name__)


def import_ray() -> Any:
    """The ``ray`` module, or an ImportError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ImportError("Ray is not installed: pip install 'ray[tune]' (or the package's [ray] extra)") from None
    return ray


def start_ray(workers: int | None = None, address: str | None = None) -> bool:
    """Join the cluster at ``address``, or start a local Ray with ``workers`` CPUs; a session that
    is already running is reused. Returns whether this call started it (and should shut it down)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, logging_level=logging.WARNING, configure_logging=False)
    else:
        ray.init(address="local", num_cpus=workers, include_dashboard=False, logging_level=logging.WARNING,
                 configure_logging=False)  # a Ray of its own: never joins another process's local one
    return True


class _Worker:
    """A Ray actor holding one scorer."""

    def __init__(self, factory: Callable[[], Scorer]):
        self.scorer = factory()

    def ready(self) -> bool:
        return True

    def score(self, archs: list[str]) -> list[Scores]:
        return [self.scorer(a) for a in archs]


class RayBackend:
    """Spreads candidates over ``workers`` Ray actors of ``cpus_per_worker`` CPUs each (as many as
    the cluster's CPUs allow when ``workers`` is ``None``)."""

    def __init__(self, factory: Callable[[], Scorer], workers: int | None = None, address: str | None = None,
                 candidates_per_task: int = 4, max_retries: int = 3, cpus_per_worker: int = 1):
        self.ray = import_ray()
        self.owns_ray = start_ray(None if workers is None else workers * cpus_per_worker, address)
        self.per_task, self.max_retries = candidates_per_task, max_retries
        count = workers or max(1, int(self.ray.cluster_resources().get("CPU", 1)) // cpus_per_worker)
        self.actor_class = self.ray.remote(num_cpus=cpus_per_worker)(_Worker)
        self.factory = self.ray.put(factory)
        self.actors = [self._spawn() for _ in range(count)]
        self.retries = 0
        try:
            self.ray.get([a.ready.remote() for a in self.actors])
        except self.ray.exceptions.RayError as err:
            self.close()
            cause = str(err).strip().splitlines()[-1]  # the worker's exception, after Ray's traceback
            raise RuntimeError(f"a Ray worker could not build its scorer: {cause}") from None

    def _spawn(self) -> Any:
        return self.actor_class.remote(self.factory)

    def score(self, archs: list[str], on_result: OnResult) -> None:
        ray = self.ray
        size = max(1, min(self.per_task, math.ceil(len(archs) / len(self.actors))))
        pending = deque((archs[i:i + size], 0) for i in range(0, len(archs), size))
        idle, running = list(self.actors), {}
        while pending or running:
            while pending and idle:
                actor, (chunk, attempt) = idle.pop(), pending.popleft()
                running[actor.score.remote(chunk)] = (actor, chunk, attempt)
            done, _ = ray.wait(list(running), num_returns=1)
            actor, chunk, attempt = running.pop(done[0])
            try:
                results = ray.get(done[0])
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as err:
                if attempt >= self.max_retries:
                    raise RuntimeError(f"Ray workers died {attempt + 1} times scoring {chunk}: {err}") from None
                log.warning("a Ray worker died (%s); retrying its %d candidate(s)", type(err).__name__, len(chunk))
                self.retries += 1
                replacement = self._spawn()
                self.actors[self.actors.index(actor)] = replacement
                ray.kill(actor)
                idle.append(replacement)
                pending.appendleft((chunk, attempt + 1))
                continue
            for arch, scores in zip(chunk, results):
                on_result(arch, scores)
            idle.append(actor)

    def close(self) -> None:
        """Stop the actors, and Ray itself when this backend started it."""
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []
        if self.owns_ray:
            self.ray.shutdown()
