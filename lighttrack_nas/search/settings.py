"""The ``search:`` section of an experiment config and the budgets of a search.

```yaml
search:
  strategy: evolution          # or random (same number of evaluations)
  population: 48               # candidates per generation
  generations: 20
  topk: 10                     # parents kept for breeding
  mutants: 24                  # per generation, from the top-k
  crossovers: 24               # per generation, uniform crossover of two top-k parents
  mutation_prob: 0.1           # per gene
  max_attempts: 1000           # rejection-sampling cap per candidate (budgets)
  calibration_images: 2000     # training pairs for exact BatchNorm recalibration
  calibration_batch: 32
  split: val                   # tracked to score a candidate
  val_sequences: null          # first K sequences of the split (null: all)
  val_frames: null             # the first F frames of each (null: whole sequences)
  finalists: 5                 # best candidates re-measured for real latency at the end
  threads: 1                   # torch threads of each evaluating process (fitness depends on it slightly)
  processes: 1                 # local evaluating processes (without Ray); --workers / --ray-address use Ray instead
  budgets: {flops: 600M, params: 2M, latency: null}    # defaults for --*-budget
  latency: {lut_min_run_time: 0.05, lut_fit_subnets: 10, min_run_time: 0.5, regression_subnets: 0}
  ray: {candidates_per_task: 4, max_retries: 3}
```
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..config import ConfigError, Field, check_keys, check_section
from ..space.space import Architecture, Constraint
from .evolution import STRATEGIES, EvolutionConfig

_COUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmg]?)\s*$", re.IGNORECASE)
_TIME = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*(us|ms|s)\s*$", re.IGNORECASE)
_SCALE = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def parse_count(text: str | float, what: str = "budget") -> float:
    """``600M``, ``2.5G``, ``800K`` or a plain number -> a positive count."""
    match = _COUNT.match(str(text))
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{what}: {text!r} is not a positive count like 600M, 2.5G, 800K or 1500000")
    return float(match.group(1)) * _SCALE[match.group(2).lower()]


def parse_seconds(text: str, what: str = "budget") -> float:
    """``8ms``, ``8000us`` or ``0.008s`` -> seconds (the unit is required)."""
    match = _TIME.match(str(text))
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{what}: {text!r} is not a positive duration with a unit, like 8ms, 8000us or 0.008s")
    return float(match.group(1)) * _SCALE[match.group(2).lower()]


@dataclass(frozen=True)
class Budgets:
    """Per-frame MACs, parameters and latency (seconds) limits; ``None`` means unconstrained."""

    flops: float | None = None
    params: float | None = None
    latency: float | None = None

    @classmethod
    def parse(cls, flops: str | None = None, params: str | None = None, latency: str | None = None) -> "Budgets":
        """From strings such as ``600M``, ``2M`` and ``8ms``; ``None`` or ``"none"``: unconstrained (``"none"``
        overrides a config's default budget)."""
        def unset(value: str | None) -> bool:
            return value is None or str(value).strip().lower() == "none"

        return cls(flops=None if unset(flops) else parse_count(flops, "flops budget"),
                   params=None if unset(params) else parse_count(params, "params budget"),
                   latency=None if unset(latency) else parse_seconds(latency, "latency budget"))

    def constraints(self, macs: Callable[[Architecture], float], params: Callable[[Architecture], float],
                    latency: Callable[[Architecture], float] | None) -> list[Constraint]:
        """Constraints for the search; ``latency`` predicts seconds (needed with a latency budget)."""
        out = []
        if self.flops is not None:
            out.append(Constraint("MACs", macs, self.flops))
        if self.params is not None:
            out.append(Constraint("params", params, self.params))
        if self.latency is not None:
            if latency is None:
                raise ValueError("a latency budget needs a latency table")
            out.append(Constraint("predicted latency", lambda a: latency(a) * 1e3, self.latency * 1e3, " ms"))
        return out

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


@dataclass(frozen=True)
class SearchSettings(EvolutionConfig):
    """Every number of a search: the evolution's (defaults: LightTrack's published setting; the
    seed is the experiment's, not part of this section) and the scoring, latency and Ray settings."""

    strategy: str = "evolution"
    calibration_images: int = 2000
    calibration_batch: int = 32
    split: str = "val"
    val_sequences: int | None = None
    val_frames: int | None = None
    finalists: int = 5
    threads: int = 1
    processes: int = 1
    budgets: dict[str, str | None] = field(default_factory=dict)
    latency: dict[str, float] = field(default_factory=lambda: dict(LATENCY_DEFAULTS))
    ray: dict[str, int] = field(default_factory=lambda: dict(RAY_DEFAULTS))

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None, where: str = "search") -> "SearchSettings":
        """Validate a ``search:`` mapping; errors name the key, the value and what is allowed."""
        data = dict(section or {})
        check_section(data, SEARCH_FIELDS, where)
        data["budgets"] = _budgets(data.get("budgets") or {}, f"{where}.budgets")
        data["latency"] = _numbers(data.get("latency") or {}, LATENCY_DEFAULTS, f"{where}.latency")
        data["ray"] = _numbers(data.get("ray") or {}, RAY_DEFAULTS, f"{where}.ray")
        settings = cls(**data)
        if settings.mutants + settings.crossovers > settings.population:
            raise ConfigError(f"{where}: mutants + crossovers ({settings.mutants} + {settings.crossovers}) exceed the "
                              f"population ({settings.population})")
        if settings.topk > settings.population:
            raise ConfigError(f"{where}: topk ({settings.topk}) exceeds the population ({settings.population})")
        return settings

    def evolution(self, seed: int) -> EvolutionConfig:
        """The strategy's numbers."""
        return EvolutionConfig(**{**{f.name: getattr(self, f.name) for f in fields(EvolutionConfig)}, "seed": seed})


SEARCH_FIELDS: dict[str, Field] = {
    **{key: Field(int, low=1) for key in ("population", "generations", "topk", "max_attempts", "calibration_images",
                                          "calibration_batch", "finalists", "threads", "processes")},
    "mutants": Field(int, low=0), "crossovers": Field(int, low=0), "val_sequences": Field(int, low=1, optional=True),
    "val_frames": Field(int, low=2, optional=True),
    "mutation_prob": Field(low=0, high=1), "strategy": Field(choices=tuple(sorted(STRATEGIES))),
    "split": Field(str), "budgets": Field(dict, optional=True), "latency": Field(dict, optional=True),
    "ray": Field(dict, optional=True),
}
LATENCY_DEFAULTS: dict[str, float] = {"lut_min_run_time": 0.05, "lut_fit_subnets": 10, "min_run_time": 0.5,
                                      "regression_subnets": 0}
_ZERO_ALLOWED = {"lut_fit_subnets", "regression_subnets"}
RAY_DEFAULTS: dict[str, int] = {"candidates_per_task": 4, "max_retries": 3}


def _numbers(data: Mapping[str, Any], defaults: Mapping[str, float], where: str) -> dict[str, Any]:
    """``defaults`` overridden by ``data``: integers stay integers, every value positive."""
    check_keys(data, set(defaults), where)
    out = dict(defaults)
    for key, value in data.items():
        if isinstance(defaults[key], int):
            Field(int, low=0 if key in _ZERO_ALLOWED else 1).check(value, f"{where}.{key}")
            if key == "regression_subnets" and 0 < value < 10:
                raise ConfigError(f"{where}.regression_subnets must be 0 (per-op table) or >= 10, got {value!r}")
        else:
            Field(low=0, low_open=True).check(value, f"{where}.{key}")
        out[key] = value
    return out


def _budgets(data: Mapping[str, Any], where: str) -> dict[str, str | None]:
    """Budget strings, checked by parsing them now."""
    check_keys(data, {"flops", "params", "latency"}, where)
    out = {k: (None if v is None else str(v)) for k, v in data.items()}
    try:
        Budgets.parse(**out)
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None
    return out
