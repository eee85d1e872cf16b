"""The ``compare:`` section of a comparison config and the per-family experiment configs derived from it.

A comparison config is an experiment config (``extends:`` chains allowed, e.g. ``search_tiny.yaml``:
space, data, supernet training and the ``search:`` section) plus a ``compare:`` section::

    compare:
      seeds: [0, 1, 2]            # default of --seeds
      split: test                 # the held-out split every tracker is tracked on
      tolerance: 0.10             # matched MACs: |pruned / NAS - 1| <= tolerance
      latency: {threads: 1, min_run_time: 0.5}
      nas:
        budgets: [15M, 25M, 40M]  # one search (MACs budget) per value, per seed
        init: supernet            # retraining: supernet or scratch
        train: {...}              # merged over train: for the retraining
      cnn:
        model: cnn_tiny.yaml      # a config whose model: section is used, or the model mapping itself
        train: {...}              # merged over train: for the dense CNN
      prune:
        from: prune_cnn_tiny.yaml # optional: its prune: section is the base of this one
        extreme_budgets: [0.05, 0.01]
        ...                       # any key of the prune: section (lighttrack_nas.compress.PruneSettings)

:func:`prepare` validates everything before any work and writes the resolved experiment configs the
stages run with into ``OUT/configs/``: ``nas.yaml`` (supernet training and the searches),
``retrain.yaml`` (``nas.train`` merged) and ``cnn.yaml`` (``model:``, ``cnn.train`` merged, ``prune:``).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..compress import PruneSettings
from ..config import ConfigError, check_keys, deep_merge, load_yaml
from ..search.settings import SearchSettings, parse_count
from ..train.retrain import INITS
from ..train.trainer import DEFAULT_TRAIN, load_experiment

COMPARE_KEYS = {"seeds", "split", "tolerance", "latency", "nas", "cnn", "prune"}
NAS_KEYS = {"budgets", "init", "train"}
CNN_KEYS = {"model", "train"}
LATENCY_DEFAULTS: dict[str, Any] = {"threads": 1, "min_run_time": 0.5}


@dataclass(frozen=True)
class CompareSettings:
    """The parsed ``compare:`` section (see the module docstring)."""

    seeds: tuple[int, ...]
    split: str
    tolerance: float
    latency_threads: int
    latency_min_run_time: float
    nas_budgets: tuple[str, ...]          # MACs budgets as written (600M, 25M): directory and table labels
    nas_init: str
    extreme_budgets: tuple[float, ...]    # fractions of the dense CNN's MACs

    @staticmethod
    def nas_macs(label: str) -> float:
        """The MACs of a NAS budget label."""
        return parse_count(label, "compare.nas.budgets")

    @staticmethod
    def extreme_label(fraction: float) -> str:
        """``0.05`` -> ``x0.05`` (directory and table label of an extreme budget)."""
        return f"x{fraction:g}"


@dataclass(frozen=True)
class Experiment:
    """A prepared comparison: its settings and the resolved configs of each family."""

    config: Path
    settings: CompareSettings
    configs: Path            # OUT/configs
    nas_config: Path         # supernet training and searches
    retrain_config: Path     # stand-alone retraining of the found subnets
    cnn_config: Path         # dense CNN training and pruning
    nas: dict[str, Any]      # load_experiment(nas_config)
    retrain: dict[str, Any]
    cnn: dict[str, Any]
    prune: PruneSettings

    def cnn_experiment(self, seed: int) -> dict[str, Any]:
        """The CNN family's experiment with ``seed``."""
        return load_experiment(self.cnn_config, {"seed": seed})


def _where(config: Path, key: str) -> str:
    return f"{config}: compare.{key}"


def _integer(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where} must be an integer >= {minimum}, got {value!r}")
    return value


def _number(value: Any, where: str, low: float, high: float, low_open: bool = True) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or value > high or value < low or (low_open and value == low):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise ConfigError(f"{where} must be a number in {interval}, got {value!r}")
    return float(value)


def _section(data: Mapping[str, Any], key: str, allowed: set[str], config: Path) -> dict[str, Any]:
    section = data.get(key) or {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"{_where(config, key)} must be a mapping, got {section!r}")
    check_keys(section, allowed, _where(config, key))
    return dict(section)


def _train_override(section: Mapping[str, Any], key: str, config: Path) -> dict[str, Any]:
    train = section.get("train") or {}
    if not isinstance(train, Mapping):
        raise ConfigError(f"{_where(config, key)}.train must be a mapping, got {train!r}")
    check_keys(train, set(DEFAULT_TRAIN), f"{_where(config, key)}.train")
    return dict(train)


def _resolve(path: str | Path, base: Path) -> str:
    """``path`` relative to the config's folder (as load_experiment resolves ``space``), absolute."""
    return str((base / path).resolve())


def _model_section(spec: Any, base: Path, config: Path) -> dict[str, Any]:
    """``cnn.model``: a mapping with a ``family``, or a YAML file whose ``model:`` section is one."""
    where = _where(config, "cnn.model")
    if isinstance(spec, str):
        model = load_yaml(base / spec).get("model")
        where = f"{where} ({spec})"
    else:
        model = spec
    if not isinstance(model, Mapping) or "family" not in model:
        raise ConfigError(f"{where}: expected a model mapping with a 'family' (e.g. cnn), or a config file "
                          f"with a model: section")
    return dict(model)


def parse_settings(data: Mapping[str, Any], config: Path) -> tuple[CompareSettings, dict[str, Any], dict[str, Any],
                                                                    dict[str, Any], dict[str, Any]]:
    """The settings, ``nas.train``, ``cnn.train`` overrides, the CNN's ``model:`` and ``prune:``
    sections of the raw ``compare:`` mapping ``data``; errors name the key."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{config}: a 'compare:' section (a mapping) is required")
    check_keys(data, COMPARE_KEYS, f"{config}: compare")
    base = config.parent
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds:
        raise ConfigError(f"{_where(config, 'seeds')} must be a non-empty list of integers, got {seeds!r}")
    seeds = tuple(_integer(s, _where(config, "seeds"), 0) for s in seeds)
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{_where(config, 'seeds')} repeats a seed: {list(seeds)}")
    split = data.get("split", "test")
    if not isinstance(split, str):
        raise ConfigError(f"{_where(config, 'split')} must be a split name, got {split!r}")
    tolerance = _number(data.get("tolerance", 0.10), _where(config, "tolerance"), 0.0, 1.0)
    latency = deep_merge(LATENCY_DEFAULTS, _section(data, "latency", set(LATENCY_DEFAULTS), config))
    threads = _integer(latency["threads"], _where(config, "latency.threads"), 1)
    min_run_time = _number(latency["min_run_time"], _where(config, "latency.min_run_time"), 0.0, math.inf)

    nas = _section(data, "nas", NAS_KEYS, config)
    budgets = nas.get("budgets")
    if not isinstance(budgets, list) or not budgets:
        raise ConfigError(f"{_where(config, 'nas.budgets')} must be a non-empty list of MACs budgets like 25M, "
                          f"got {budgets!r}")
    labels = []
    for budget in budgets:
        try:
            parse_count(budget, _where(config, "nas.budgets"))
        except ValueError as err:
            raise ConfigError(str(err)) from None
        labels.append(str(budget).strip())
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{_where(config, 'nas.budgets')} repeats a budget: {labels}")
    init = nas.get("init", "supernet")
    if init not in INITS:
        raise ConfigError(f"{_where(config, 'nas.init')}: {init!r} is not one of {list(INITS)}")

    cnn = _section(data, "cnn", CNN_KEYS, config)
    if "model" not in cnn:
        raise ConfigError(f"{_where(config, 'cnn')}: 'model' is required (a config file with a model: section, "
                          f"or the model mapping)")
    model = _model_section(cnn["model"], base, config)

    prune = dict(data.get("prune") or {})
    extremes = prune.pop("extreme_budgets", [])
    if not isinstance(extremes, list):
        raise ConfigError(f"{_where(config, 'prune.extreme_budgets')} must be a list of fractions, got {extremes!r}")
    extremes = tuple(_number(b, _where(config, "prune.extreme_budgets"), 0.0, 1.0) for b in extremes)
    source = prune.pop("from", None)
    if source is not None:
        base_prune = load_yaml(base / source).get("prune")
        if not isinstance(base_prune, Mapping):
            raise ConfigError(f"{_where(config, 'prune.from')}: {source} has no prune: section")
        prune = deep_merge(base_prune, prune)

    settings = CompareSettings(seeds, split, tolerance, threads, min_run_time, tuple(labels), init, extremes)
    return settings, _train_override(nas, "nas", config), _train_override(cnn, "cnn", config), model, prune


def _write(path: Path, cfg: Mapping[str, Any]) -> None:
    path.write_text(yaml.safe_dump(dict(cfg), sort_keys=False))


def prepare(config: str | Path, out: str | Path) -> Experiment:
    """Validate the comparison ``config`` and write its resolved per-family configs into
    ``out/configs/``; raises ConfigError naming the first bad key, before any work."""
    config = Path(config)
    raw = load_yaml(config)
    if "compare" not in raw:
        raise ConfigError(f"{config}: a 'compare:' section is required (see docs/compare.md)")
    settings, nas_train, cnn_train, model, prune = parse_settings(raw.pop("compare"), config)
    base = config.parent
    if "space" in raw:
        raw["space"] = _resolve(raw["space"], base)
    if isinstance(raw.get("tracker"), str):
        raw["tracker"] = _resolve(raw["tracker"], base)
    for key in ("model", "prune"):
        raw.pop(key, None)  # the CNN family's come from compare.cnn / compare.prune
    SearchSettings.from_config(raw.get("search"), f"{config}: search")  # the searches' settings, checked now

    configs = Path(out) / "configs"
    configs.mkdir(parents=True, exist_ok=True)
    paths = {name: configs / f"{name}.yaml" for name in ("nas", "retrain", "cnn")}
    family = {k: v for k, v in raw.items() if k != "search"}
    train = raw.get("train") or {}
    _write(paths["nas"], raw)
    _write(paths["retrain"], {**family, "train": deep_merge(train, nas_train)})
    _write(paths["cnn"], {**family, "model": model, "train": deep_merge(train, cnn_train), "prune": prune})
    loaded = {name: load_experiment(path) for name, path in paths.items()}
    try:
        prune_settings = PruneSettings.from_experiment(loaded["cnn"])
    except ValueError as err:  # messages start with the key: prune.<key>: ...
        raise ConfigError(f"{config}: compare.{err}") from None
    return Experiment(config, settings, configs, paths["nas"], paths["retrain"], paths["cnn"], loaded["nas"],
                      loaded["retrain"], loaded["cnn"], prune_settings)
