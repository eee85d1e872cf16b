"""Tracker hyper-parameter tuning (penalty_k, window_influence, lr) of one subnet with Ray Tune.

Per-data-set tuning of these three is standard practice (LightTrack tuned them for VOT-2019).
Each trial tracks the sequences with one setting and reports the search fitness
(AO + SR0.5) / 2; the BatchNorm-recalibrated model and the sequences go to Ray's object store once.
Sampling is uniform over :data:`RANGES`; the base setting is always the first trial, so the
result is never worse than the base on the tuned sequences.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from ..data.sequence import Sequence
from ..io import atomic_write, write_json
from ..tracker import TrackerConfig
from .backend import set_threads
from .distributed import import_ray, start_ray
from ..evaluate.tracking import score_model

RANGES: dict[str, tuple[float, float]] = {
    "penalty_k": (0.0, 0.3),         # LightTrack default 0.062, VOT-2019 0.007
    "window_influence": (0.1, 0.7),  # default 0.38, VOT-2019 0.225
    "lr": (0.1, 1.0),                # default 0.765, VOT-2019 0.616
}
METRICS = ("fitness", "ao", "sr50", "sr75")


@dataclass
class TuneResult:
    """The best tracker setting, its scores, the base setting's scores and every trial."""

    best: TrackerConfig
    scores: dict[str, float]
    base_scores: dict[str, float]
    trials: list[dict[str, float]]


def _trial(config: dict[str, float], model: nn.Module, sequences: list[Sequence], base: dict[str, float]) -> None:
    from ray import tune

    set_threads(1)
    score = score_model(model, sequences, TrackerConfig.from_dict({**base, **config}))
    tune.report({k: v for k, v in score.to_dict(per_sequence=False).items() if k in METRICS})


def tune_tracker(model: nn.Module, sequences: list[Sequence], base: TrackerConfig, samples: int, out: str | Path,
                 workers: int | None = None, address: str | None = None, seed: int = 0) -> TuneResult:
    """Run ``samples`` trials (the base setting first) on ``workers`` concurrent Ray workers."""
    ray = import_ray()
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    if samples < 1:
        raise ValueError(f"--samples must be >= 1, got {samples}")
    # trials run in their own working directories: frame paths must not be relative
    sequences = [replace(s, frames=[Path(f).resolve() for f in s.frames]) for s in sequences]
    owns = start_ray(workers, address)
    try:
        trainable = tune.with_resources(tune.with_parameters(_trial, model=model, sequences=sequences,
                                                             base=base.to_dict()), {"cpu": 1})
        start = {k: getattr(base, k) for k in RANGES}
        tuner = tune.Tuner(
            trainable, param_space={k: tune.uniform(lo, hi) for k, (lo, hi) in RANGES.items()},
            tune_config=tune.TuneConfig(metric="fitness", mode="max", num_samples=samples,
                                        search_alg=BasicVariantGenerator(points_to_evaluate=[start], random_state=seed),
                                        max_concurrent_trials=workers, reuse_actors=True),
            run_config=tune.RunConfig(name="tune_tracker", storage_path=str(Path(out).resolve() / "ray_results"),
                                      verbose=0))
        grid = tuner.fit()
    finally:
        if owns:
            ray.shutdown()
    trials = [{**{k: r.config[k] for k in RANGES}, **{k: r.metrics[k] for k in METRICS}}
              for r in grid if r.error is None and "fitness" in r.metrics]
    if not trials:
        raise RuntimeError(f"every tuning trial failed; first error: {next(r.error for r in grid)}")
    best = max(trials, key=lambda t: t["fitness"])
    base_trial = next(t for t in trials if all(t[k] == start[k] for k in RANGES))
    return TuneResult(best=TrackerConfig.from_dict({**base.to_dict(), **{k: best[k] for k in RANGES}}),
                      scores={k: best[k] for k in METRICS}, base_scores={k: base_trial[k] for k in METRICS},
                      trials=trials)


def write_tuning(result: TuneResult, out: str | Path, info: dict[str, Any]) -> Path:
    """``tracker.yaml`` (loadable by ``TrackerConfig.from_yaml``), ``trials.csv`` and ``tune.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    header = [f"# Tracker hyper-parameters tuned by tools/tune_tracker.py on {info.get('split', 'val')} "
              f"({result.scores['fitness']:.4f} fitness; base {result.base_scores['fitness']:.4f}).",
              f"# Subnet: {info.get('arch')}",
              "# Ranges: " + ", ".join(f"{k} [{lo}, {hi}]" for k, (lo, hi) in RANGES.items())]
    body = [f"{k}: {v:.6g}" for k, v in result.best.to_dict().items()]
    path = out / "tracker.yaml"
    atomic_write(path, "\n".join(header + body) + "\n")
    trials = io.StringIO(newline="")
    writer = csv.DictWriter(trials, fieldnames=list(RANGES) + list(METRICS))
    writer.writeheader()
    writer.writerows(sorted(result.trials, key=lambda t: -t["fitness"]))
    atomic_write(out / "trials.csv", trials.getvalue())
    write_json(out / "tune.json", {**info, "ranges": RANGES, "best": result.best.to_dict(), "scores": result.scores,
                                   "base_scores": result.base_scores, "trials": len(result.trials)})
    return path
