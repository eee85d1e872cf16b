"""Where candidates are scored: in this process, in a pool of local processes, or on Ray workers
(``distributed.py``).

A backend receives architecture strings and reports each one's scores as soon as it has them
(``on_result``), so the search driver can persist every finished candidate immediately. Every
backend builds their scorer from a picklable factory: :class:`FitnessSpec` for the real fitness
(supernet weights inherited, BatchNorm recalibrated, val split tracked), or any test double.
"""
from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch

from ..config import data_read

if TYPE_CHECKING:
    from .fitness import SubnetEvaluator

Scores = dict[str, float]
Scorer = Callable[[str], Scores]
OnResult = Callable[[str, Scores], None]


class Backend(Protocol):
    def score(self, archs: list[str], on_result: OnResult) -> None:
        """Score every architecture string, calling ``on_result(arch, scores)`` for each."""

    def close(self) -> None:
        """Release workers."""


def set_threads(threads: int) -> None:
    """Threads of PyTorch and OpenCV in this process (one evaluating worker)."""
    import cv2

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


@dataclass(frozen=True)
class FitnessSpec:
    """Everything a worker needs to score candidates; calling it loads the supernet, the
    calibration crops and the sequences once and returns the scorer."""

    checkpoint: str
    data: dict[str, Any]
    split: str = "val"
    sequences: int | None = None
    frames: int | None = None
    calibration_images: int = 2000
    calibration_batch: int = 32
    tracker: dict[str, float] = field(default_factory=dict)
    device: str = "auto"   # auto: cuda where the worker sees a GPU, else cpu
    threads: int = 1

    def identity(self) -> str:
        """What decides a candidate's scores, as the key a resumed search must match: the supernet is
        keyed apart (by its digest), splits the fitness never reads are left out, ``frames`` only when set."""
        from .fitness import FITNESS_FORM

        key = {"data": data_read(self.data, ("train", self.split)), "split": self.split, "sequences": self.sequences, "tracker": self.tracker,
               "calibration_images": self.calibration_images, "calibration_batch": self.calibration_batch,
               "device": self.device, "threads": self.threads, "form": FITNESS_FORM}
        if self.frames is not None:
            key["frames"] = self.frames
        return json.dumps(key, sort_keys=True)

    def prepare_data(self) -> None:
        """Generate missing data splits now (once, in the driver, before any worker reads them)."""
        from ..data.sources import load_split

        for split in ("train", self.split):
            load_split(self.data, split)

    def __call__(self) -> Scorer:
        from ..data.sources import load_split
        from ..models import load_supernet
        from ..tracker import TrackerConfig
        from ..data.pairs import calibration_batches
        from .fitness import SubnetEvaluator

        set_threads(self.threads)  # tracking is chaotic: fitness depends on the thread count
        device = ("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device
        supernet = load_supernet(self.checkpoint).to(device).eval()
        batches = calibration_batches(load_split(self.data, "train"), supernet.template_size, supernet.search_size,
                                      self.calibration_images, self.calibration_batch)
        batches = [(z.to(device), x.to(device)) for z, x in batches]
        evaluator = SubnetEvaluator(supernet, batches, load_split(self.data, self.split, self.sequences, self.frames),
                                    TrackerConfig.from_dict(self.tracker))
        return SubnetScorer(evaluator)


class SubnetScorer:
    """Architecture string -> fitness, AO, SR0.5, SR0.75, fps and the seconds it took."""

    def __init__(self, evaluator: "SubnetEvaluator"):
        self.evaluator = evaluator

    def __call__(self, arch: str) -> Scores:
        start = time.perf_counter()
        score = self.evaluator.score(self.evaluator.supernet.space.decode(arch))
        return {**score.to_dict(per_sequence=False), "seconds": time.perf_counter() - start}


class LocalBackend:
    """Scores candidates one after another in this process (the scorer is built on first use)."""

    def __init__(self, factory: Callable[[], Scorer]):
        self.factory = factory
        self._scorer: Scorer | None = None

    def score(self, archs: list[str], on_result: OnResult) -> None:
        if self._scorer is None:
            self._scorer = self.factory()
        for arch in archs:
            on_result(arch, self._scorer(arch))

    def close(self) -> None:
        self._scorer = None


_POOL_SCORER: Scorer | None = None


def _pool_init(factory: Callable[[], Scorer]) -> None:
    global _POOL_SCORER
    _POOL_SCORER = factory()


def _pool_score(arch: str) -> tuple[str, Scores]:
    assert _POOL_SCORER is not None, "the pool's initializer builds the scorer"
    return arch, _POOL_SCORER(arch)


class ProcessBackend:
    """Scores candidates in ``processes`` local worker processes (spawned, each building the scorer
    once), results reported as they finish: the search's ``processes`` setting, no Ray needed. A
    candidate's scores do not depend on which process scored it (same weights, crops and threads)."""

    def __init__(self, factory: Callable[[], Scorer], processes: int):
        if processes < 2:
            raise ValueError(f"ProcessBackend needs processes >= 2, got {processes} (use LocalBackend)")
        self.factory, self.processes = factory, processes
        self._pool: ProcessPoolExecutor | None = None

    def score(self, archs: list[str], on_result: OnResult) -> None:
        if self._pool is None:  # spawned: no forked torch / OpenCV thread state
            self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_pool_init, initargs=(self.factory,))
        for future in as_completed([self._pool.submit(_pool_score, arch) for arch in archs]):
            on_result(*future.result())

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
