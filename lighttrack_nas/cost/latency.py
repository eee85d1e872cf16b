"""Latency: a measurement harness and a per-op lookup table (LUT) for the per-frame network.

Practice (REFERENCE.md section 7): fixed thread count, warm-up, many repetitions, the median
(torch.utils.benchmark.Timer) and its spread; the CPU model, threads and library versions are
stored with every result. The LUT measures each candidate module once at its input shape and adds
a linear calibration fitted on a few whole subnets; predicted latency = scale x sum along the path
+ overhead.

Backends (``BACKENDS``): ``torch`` runs the modules as given; ``onnxruntime`` exports them to ONNX
and times ONNX Runtime (whole subnets in their fused inference form, as the tracker deploys them);
``onnxruntime-int8`` times that export with its graph quantised to int8 (calibrated on random
crops: the speed of an int8 graph does not depend on its ranges). So a search can target the
deployment runtime. :mod:`.predictor` fits a predictor on whole subnets instead of summing ops.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils import benchmark

from ..io import write_json
from ..machine import machine_info
from ..models.lighttrack import LightTrackSupernet
from ..space.space import Architecture
from .count import eval_mode
from .table import PathTable

BACKENDS = ("torch", "onnxruntime", "onnxruntime-int8")


@dataclass
class Latency:
    """Median and spread (seconds) of repeated timings."""

    median: float
    iqr: float
    runs: int
    threads: int

    @property
    def ms(self) -> float:
        return self.median * 1e3


def time_call(fn: Callable[[], Any], threads: int = 1, min_run_time: float = 0.2, warmup: int = 3) -> Latency:
    """Time ``fn()``: ``warmup`` untimed calls, then blocks until ``min_run_time`` seconds; median."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                fn()
            m = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads).blocked_autorange(
                min_run_time=min_run_time)
    finally:
        torch.set_num_threads(previous)
    return Latency(median=float(m.median), iqr=float(m.iqr), runs=len(m.times) * m.number_per_run, threads=threads)


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown latency backend {backend!r}; choose from {list(BACKENDS)}")


def backend_settings(backend: str) -> dict[str, Any]:
    """What decides the graphs ``backend`` times, for a predictor's metadata: the backend, and for
    ``onnxruntime-int8`` the op types its graphs keep float (a predictor made before that setting has none)."""
    if backend != "onnxruntime-int8":
        return {"backend": backend}
    from ..deploy.quantize import DEFAULT_KEEP_FLOAT

    return {"backend": backend, "keep_float": list(DEFAULT_KEEP_FLOAT)}


def deployed(model: nn.Module, backend: str = "torch", threads: int = 1) -> nn.Module:
    """``model`` as ``backend`` runs it when timed: as given (torch), or its fused form exported to ONNX
    Runtime, float or int8 (calibrated on random crops, which leaves its speed as it is)."""
    _check_backend(backend)
    if backend == "torch":
        return model.eval()
    from ..deploy import inference_model
    from ..deploy.quantize import random_crops

    calibration = random_crops(model.template_size, model.search_size) if backend == "onnxruntime-int8" else None
    return inference_model(model, backend, threads, calibration)


def time_tracking(model: nn.Module, threads: int = 1, min_run_time: float = 0.5) -> Latency:
    """Per-frame time of a ready tracking model: ``track(x)`` with the template cached."""
    model.eval()
    z = torch.randn(1, 3, model.template_size, model.template_size)
    x = torch.randn(1, 3, model.search_size, model.search_size)
    with torch.inference_mode():
        model.template(z)
    return time_call(lambda: model.track(x), threads, min_run_time)


def network_latency(model: nn.Module, threads: int = 1, min_run_time: float = 0.5, backend: str = "torch") -> Latency:
    """Per-frame network time of a tracking model: ``track(x)`` with the template cached, run by
    ``backend`` (:func:`deployed`) on ``threads`` threads."""
    return time_tracking(deployed(model, backend, threads), threads, min_run_time)


class LatencyTable:
    """Per-op latency LUT of a supernet's per-frame path plus a fitted fixed overhead."""

    def __init__(self, entries: dict[tuple, float], overhead: float, meta: dict[str, Any], scale: float = 1.0):
        self.entries, self.overhead, self.meta, self.scale = entries, overhead, meta, scale
        self._paths: PathTable | None = None

    @classmethod
    def build(cls, supernet: LightTrackSupernet, threads: int = 1, min_run_time: float = 0.05,
              fit_subnets: int = 10, seed: int = 0, progress: Callable[[str], None] | None = None,
              backend: str = "torch") -> "LatencyTable":
        """Measure every candidate once, then fit ``measured = scale x sum + overhead`` by least squares
        on ``fit_subnets`` random subnets (ops timed alone run at another speed than in a chain; with
        fewer than 3 subnets only the overhead is fitted); the supernet keeps its train / eval mode.
        ``onnxruntime``: each candidate is exported on its own (a few seconds each)."""
        _check_backend(backend)

        def measure(module: nn.Module, *inputs: torch.Tensor) -> float:
            if progress:
                progress(type(module).__name__)
            if backend != "torch":
                from ..deploy.onnx import onnx_runner

                runner = onnx_runner(module, inputs, threads, int8=backend == "onnxruntime-int8")
                return time_call(runner, threads, min_run_time).median
            return time_call(lambda: module(*inputs), threads, min_run_time).median

        with eval_mode(supernet):
            paths = PathTable.measure(supernet, measure)
            rng = np.random.default_rng(seed)
            sums, measured = [], []
            for _ in range(fit_subnets):
                arch = supernet.space.sample(rng)
                measured.append(network_latency(supernet.extract(arch), threads, backend=backend).median)
                sums.append(paths.total(arch))
        scale, overhead = 1.0, float(np.median(np.subtract(measured, sums))) if sums else 0.0
        if len(sums) >= 3 and np.ptp(sums) > 0:
            scale, overhead = (float(v) for v in np.polyfit(sums, measured, 1))
        meta = {"space": supernet.space.name, "settings": supernet.space.settings, "threads": threads,
                **backend_settings(backend), "machine": machine_info(), "fit_subnets": fit_subnets}
        table = cls(paths.entries, overhead, meta, scale)
        table._paths = paths
        return table

    def bind(self, supernet: LightTrackSupernet) -> "LatencyTable":
        """Attach the path structure of ``supernet`` (needed after ``load``) without re-measuring."""
        if supernet.space.name != self.meta["space"] or supernet.space.settings != self.meta["settings"]:
            raise ValueError(f"latency table was built for space {self.meta['space']!r} with other settings")
        paths = PathTable(supernet, self.entries)
        self._paths = paths
        return self

    def predict(self, arch: Architecture) -> float:
        """Predicted per-frame network latency in seconds."""
        if self._paths is None:
            raise RuntimeError("call bind(supernet) on a loaded latency table first")
        return self.scale * self._paths.total(arch) + self.overhead

    def save(self, path: str | Path) -> None:
        """Write the LUT as JSON (atomically)."""
        data = {"meta": self.meta, "overhead": self.overhead, "scale": self.scale,
                "entries": [[list(k), v] for k, v in self.entries.items()]}
        write_json(path, data, indent=1)

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        try:
            data = json.loads(Path(path).read_text())
            entries = {tuple(k): float(v) for k, v in data["entries"]}
            return cls(entries, float(data["overhead"]), data["meta"], float(data.get("scale", 1.0)))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: latency table not found (build it with tools/build_latency_lut.py)") from None
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: not a latency table ({err})") from None


def time_subnets(supernet: LightTrackSupernet, archs: list[Architecture], threads: int = 1, backend: str = "torch",
                 rounds: int = 1, min_run_time: float = 0.5, progress: Callable[[int], None] | None = None
                 ) -> np.ndarray:
    """Median seconds per frame of every architecture, ``rounds`` times: ``(rounds, len(archs))``.
    With one round each subnet is timed right after it is prepared. With several, all are prepared
    first and then timed round by round (interleaved), so every round runs under the same conditions
    and round-to-round differences show the machine's own noise. ``progress(k)`` is called after
    each of the ``subnet_steps(len(archs), rounds)`` steps (preparations and timings)."""
    out = np.zeros((rounds, len(archs)))
    step = 0

    def done() -> None:
        nonlocal step
        if progress:
            progress(step)
        step += 1

    if rounds == 1:
        for i, arch in enumerate(archs):
            out[0, i] = time_tracking(deployed(supernet.extract(arch), backend, threads), threads, min_run_time).median
            done()
        return out
    ready: list[nn.Module] = []
    for arch in archs:
        ready.append(deployed(supernet.extract(arch), backend, threads))
        done()
    for r in range(rounds):
        for i, model in enumerate(ready):
            out[r, i] = time_tracking(model, threads, min_run_time).median
            done()
    return out


def subnet_steps(count: int, rounds: int) -> int:
    """How many ``progress`` calls :func:`time_subnets` makes for ``count`` subnets and ``rounds`` rounds."""
    return count * rounds if rounds == 1 else count * (rounds + 1)


def random_architectures(supernet: LightTrackSupernet, count: int, seed: int) -> list[Architecture]:
    """``count`` uniformly sampled architectures of the supernet's space (generator seeded by ``seed``)."""
    rng = np.random.default_rng(seed)
    return [supernet.space.sample(rng) for _ in range(count)]


def measure_random_subnets(supernet: LightTrackSupernet, count: int, threads: int = 1, seed: int = 1,
                           backend: str = "torch", progress: Callable[[int], None] | None = None
                           ) -> list[tuple[Architecture, float]]:
    """``count`` uniformly sampled architectures (seed ``seed``) and their measured median seconds per frame."""
    archs = random_architectures(supernet, count, seed)
    return list(zip(archs, time_subnets(supernet, archs, threads, backend, progress=progress)[0].tolist()))


def agreement(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """How well ``predicted`` matches ``measured`` seconds: the share within +-10 %, Spearman's rank
    correlation, the mean absolute relative error and the RMSE (ms)."""
    from scipy.stats import spearmanr

    rel = np.abs(predicted - measured) / measured
    rho = float(spearmanr(predicted, measured)[0]) if len(measured) > 2 else float("nan")
    return {"within_10pct": float(np.mean(rel <= 0.10)), "spearman": rho, "mean_abs_rel_error": float(rel.mean()),
            "rmse_ms": float(np.sqrt(np.mean((predicted - measured) ** 2)) * 1e3)}


def validate_table(table: Any, supernet: LightTrackSupernet, count: int, threads: int = 1, seed: int = 1,
                   progress: Callable[[int], None] | None = None, min_run_time: float = 0.5,
                   repeats: int = 1) -> dict[str, Any]:
    """Prepare ``count`` random subnets, then time them twice with the table's backend, each timing the
    median of ``repeats`` rounds, all ``2 x repeats`` rounds interleaved (``progress`` counts
    ``subnet_steps(count, 2 * repeats)`` steps). The noise floor is how well the second timing agrees
    with the first; the predictor (``table.predict``: a :class:`LatencyTable` or a fitted
    :class:`~lighttrack_nas.cost.predictor.LatencyModel`) is scored against the first, taken the same
    way. Repeats spread each timing over the run, so a slow spell of a shared machine moves it less."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    archs = random_architectures(supernet, count, seed)
    rounds = time_subnets(supernet, archs, threads, table.meta.get("backend", "torch"), 2 * repeats, min_run_time,
                          progress)
    times = np.stack([np.median(rounds[0::2], axis=0), np.median(rounds[1::2], axis=0)])
    pred = np.array([table.predict(arch) for arch in archs])
    return {"count": count, "repeats": repeats, **agreement(pred, times[0]), "noise_floor": agreement(times[1], times[0]),
            "pairs": [{"predicted_ms": p * 1e3, "measured_ms": m * 1e3, "remeasured_ms": m2 * 1e3, "arch": str(a)}
                      for p, m, m2, a in zip(pred, times[0], times[1], archs)]}


def latency_result(lat: Latency) -> dict[str, Any]:
    return {**asdict(lat), "ms": lat.ms, "machine": machine_info()}
