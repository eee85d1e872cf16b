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
        extreme_budgets: [0.05, 0.01]   # fractions of each family's dense MACs, for every pruned family
        criteria: [slimming]      # optional: the pruning methods run (default: [criterion])
        ...                       # any key of the prune: section (lighttrack_nas.compress.PruneSettings)
      families:                   # optional: more dense families pruned the same way (issue 7)
        vit:                      # the family's name (its directory and table label)
          model: vit_tiny.yaml
          train: {...}
          prune: {from: prune_vit_tiny.yaml, criteria: [vit-slim, torch-pruning]}
        largest:
          model: {family: lighttrack_net, arch: largest}
          dense: supernet         # not trained alone: the supernet's own subnet of model.arch (weights
                                  # inherited, BatchNorm recalibrated); its train: is the base of the
                                  # sparsity and fine-tuning phases (default dense: train)
      tune:                       # optional: tracker hyper-parameters tuned per family and seed on val (Ray Tune)
        trials: 16                # 0 (default): every tracker uses the config's tracker: settings
        sequences: 16             # the first N val sequences
        workers: 2                # concurrent Ray trials
      compresstracker:            # optional: CompressTracker students of a family's dense tracker
        from: compress_vit_tiny.yaml   # its compress: section (and its keys below override it)
        teacher: vit              # the family whose dense tracker (per seed) is the teacher
        layers: [2, 4]            # one full student (every component on) per value
        ablation: 4               # layers of the ablation: plain / + replacement / + guidance / + mimicking

:func:`prepare` validates everything before any work and writes the resolved experiment configs the
stages run with into ``OUT/configs/``: ``nas.yaml`` (supernet training and the searches),
``retrain.yaml`` (``nas.train`` merged), one per pruned family (``cnn.yaml``, ``vit.yaml``, ...:
``model:``, its ``train`` merged, ``prune:``) and ``compresstracker.yaml``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ...compress import PruneSettings
from ...config import ConfigError, Field, check_keys, config_differences, deep_merge, load_yaml
from ...io import atomic_write
from ...search.settings import SearchSettings, parse_count
from ..retrain import INITS
from ...config import DEFAULT_TRAIN, load_experiment

COMPARE_KEYS = {"seeds", "split", "tolerance", "latency", "nas", "cnn", "prune", "families", "compresstracker", "tune"}
NAS_KEYS = {"budgets", "init", "train"}
CNN_KEYS = {"model", "train"}
FAMILY_KEYS = {"model", "train", "prune", "dense"}
DENSE_SOURCES = ("train", "supernet")
CT_KEYS = {"from", "teacher", "layers", "ablation", "train"}
ABLATION = (("plain", {"replacement": False, "guidance": False, "mimic": False}),
            ("replacement", {"replacement": True, "guidance": False, "mimic": False}),
            ("guidance", {"replacement": True, "guidance": True, "mimic": False}),
            ("mimicking", {"replacement": True, "guidance": True, "mimic": True}))
"""CompressTracker's ablation: each variant adds one component (the last is the full method)."""
LATENCY_DEFAULTS: dict[str, Any] = {"threads": 1, "min_run_time": 0.5}
TUNE_DEFAULTS: dict[str, Any] = {"trials": 0, "sequences": 16, "workers": 1}


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
    tune_trials: int = 0                  # tracker tuning per family and seed (0: off)
    tune_sequences: int = 16
    tune_workers: int = 1

    @staticmethod
    def nas_macs(label: str) -> float:
        """The MACs of a NAS budget label."""
        return parse_count(label, "compare.nas.budgets")

    @staticmethod
    def extreme_label(fraction: float) -> str:
        """``0.05`` -> ``x0.05`` (directory and table label of an extreme budget)."""
        return f"x{fraction:g}"


@dataclass(frozen=True)
class PrunedFamily:
    """A dense family trained per seed and pruned by each of its ``criteria``."""

    name: str                # cnn, vit, hybrid: directory and table label
    config: Path             # OUT/configs/{name}.yaml: model, train, prune
    criteria: tuple[str, ...]
    prune: dict[str, PruneSettings]   # per criterion
    dense: str = "train"     # train: its own dense training; supernet: the comparison supernet's subnet

    def experiment(self, seed: int) -> dict[str, Any]:
        """The family's experiment with ``seed``."""
        return load_experiment(self.config, {"seed": seed})


@dataclass(frozen=True)
class CompressPlan:
    """CompressTracker students of the ``teacher`` family's dense tracker: ``(label, layers, switches)``."""

    config: Path             # OUT/configs/compresstracker.yaml (the teacher family's config + compress:)
    teacher: str
    variants: tuple[tuple[str, int, dict[str, bool]], ...]
    ablation: int | None

    def experiment(self, seed: int) -> dict[str, Any]:
        return load_experiment(self.config, {"seed": seed})


@dataclass(frozen=True)
class Experiment:
    """A prepared comparison: its settings and the resolved configs of each family."""

    config: Path
    settings: CompareSettings
    configs: Path            # OUT/configs
    nas_config: Path         # supernet training and searches
    retrain_config: Path     # stand-alone retraining of the found subnets
    nas: dict[str, Any]      # load_experiment(nas_config)
    retrain: dict[str, Any]
    families: tuple[PrunedFamily, ...]   # cnn first (when compare.cnn is given)
    compress: CompressPlan | None = None

    def family(self, name: str) -> PrunedFamily:
        return next(f for f in self.families if f.name == name)


def _where(config: Path, key: str) -> str:
    return f"{config}: compare.{key}"


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


def _model_section(spec: Any, base: Path, config: Path, key: str = "cnn") -> dict[str, Any]:
    """``{key}.model``: a mapping with a ``family``, or a YAML file whose ``model:`` section is one."""
    where = _where(config, f"{key}.model")
    if isinstance(spec, str):
        model = load_yaml(base / spec).get("model")
        where = f"{where} ({spec})"
    else:
        model = spec
    if not isinstance(model, Mapping) or "family" not in model:
        raise ConfigError(f"{where}: expected a model mapping with a 'family' (e.g. cnn), or a config file "
                          f"with a model: section")
    return dict(model)


def parse_settings(data: Mapping[str, Any], config: Path) -> tuple[CompareSettings, dict[str, Any],
                                                                    dict[str, dict[str, Any]]]:
    """The settings, the ``nas.train`` override and every pruned family's ``{model, train, prune}``
    (``cnn`` first, from ``compare.cnn`` / ``compare.prune``) of the raw ``compare:`` mapping ``data``;
    errors name the key."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{config}: a 'compare:' section (a mapping) is required")
    check_keys(data, COMPARE_KEYS, f"{config}: compare")
    base = config.parent
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds:
        raise ConfigError(f"{_where(config, 'seeds')} must be a non-empty list of integers, got {seeds!r}")
    seeds = tuple(Field(int, low=0)(s, _where(config, "seeds")) for s in seeds)
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{_where(config, 'seeds')} repeats a seed: {list(seeds)}")
    split = data.get("split", "test")
    if not isinstance(split, str):
        raise ConfigError(f"{_where(config, 'split')} must be a split name, got {split!r}")
    tolerance = Field(low=0, high=1, low_open=True)(data.get("tolerance", 0.10), _where(config, "tolerance"))
    latency = deep_merge(LATENCY_DEFAULTS, _section(data, "latency", set(LATENCY_DEFAULTS), config))
    threads = Field(int, low=1)(latency["threads"], _where(config, "latency.threads"))
    min_run_time = Field(low=0, low_open=True)(latency["min_run_time"], _where(config, "latency.min_run_time"))
    tune = deep_merge(TUNE_DEFAULTS, _section(data, "tune", set(TUNE_DEFAULTS), config))
    tune_trials = Field(int, low=0)(tune["trials"], _where(config, "tune.trials"))
    tune_sequences = Field(int, low=1)(tune["sequences"], _where(config, "tune.sequences"))
    tune_workers = Field(int, low=1)(tune["workers"], _where(config, "tune.workers"))

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

    prune = dict(data.get("prune") or {})
    extremes = prune.pop("extreme_budgets", [])
    if not isinstance(extremes, list):
        raise ConfigError(f"{_where(config, 'prune.extreme_budgets')} must be a list of fractions, got {extremes!r}")
    extremes = tuple(Field(low=0, high=1, low_open=True)(b, _where(config, "prune.extreme_budgets")) for b in extremes)
    families: dict[str, dict[str, Any]] = {}
    if data.get("cnn") is not None:
        cnn = _section(data, "cnn", CNN_KEYS, config)
        if "model" not in cnn:
            raise ConfigError(f"{_where(config, 'cnn')}: 'model' is required (a config file with a model: section, "
                              f"or the model mapping)")
        families["cnn"] = {"model": _model_section(cnn["model"], base, config),
                           "train": _train_override(cnn, "cnn", config),
                           "prune": _prune_section(prune, base, config, "prune"), "dense": "train"}
    elif set(prune) - {"extreme_budgets"}:
        raise ConfigError(f"{_where(config, 'prune')}: without compare.cnn only extreme_budgets belongs here (each "
                          f"family has its own prune: section), got {sorted(prune)}")
    extra = data.get("families") or {}
    if not isinstance(extra, Mapping):
        raise ConfigError(f"{_where(config, 'families')} must be a mapping of family name -> section, got {extra!r}")
    for name, section in extra.items():
        key = f"families.{name}"
        if name in families or not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"{_where(config, key)}: family names must be distinct identifiers other than "
                              f"'cnn' (compare.cnn), got {name!r}")
        section = _section(extra, name, FAMILY_KEYS, config)
        if "model" not in section:
            raise ConfigError(f"{_where(config, key)}: 'model' is required")
        dense = section.get("dense", "train")
        if dense not in DENSE_SOURCES:
            raise ConfigError(f"{_where(config, key)}.dense: {dense!r} is not one of {list(DENSE_SOURCES)}")
        model = _model_section(section["model"], base, config, key)
        if dense == "supernet" and model["family"] != "lighttrack_net":
            raise ConfigError(f"{_where(config, key)}.dense: supernet needs model.family lighttrack_net (a subnet of "
                              f"the supernet), got {model['family']!r}")
        families[name] = {"model": model, "train": _train_override(section, key, config),
                          "prune": _prune_section(dict(section.get("prune") or {}), base, config, f"{key}.prune"),
                          "dense": dense}
    if not families:
        raise ConfigError(f"{config}: compare needs a pruned family: compare.cnn and/or compare.families")

    settings = CompareSettings(seeds, split, tolerance, threads, min_run_time, tuple(labels), init, extremes,
                               tune_trials, tune_sequences, tune_workers)
    return settings, _train_override(nas, "nas", config), families


def _prune_section(prune: dict[str, Any], base: Path, config: Path, key: str) -> dict[str, Any]:
    """A family's ``prune:`` section with its ``from:`` file merged under it (``criteria`` kept)."""
    if "extreme_budgets" in prune:
        raise ConfigError(f"{_where(config, key)}.extreme_budgets: set the extreme budgets once, in "
                          f"compare.prune.extreme_budgets (they apply to every pruned family)")
    source = prune.pop("from", None)
    if source is not None:
        base_prune = load_yaml(base / source).get("prune")
        if not isinstance(base_prune, Mapping):
            raise ConfigError(f"{_where(config, key)}.from: {source} has no prune: section")
        prune = deep_merge(base_prune, prune)
    return prune


def _compress_plan(data: Mapping[str, Any], config: Path, families: Mapping[str, Any]) -> tuple[dict[str, Any], str,
                                                                                                  list, int | None]:
    """(``compress:`` section, teacher family, full-student layers, ablation layers) of ``compress``."""
    section = _section(data, "compresstracker", CT_KEYS, config)
    where = _where(config, "compresstracker")
    compress: dict[str, Any] = {}
    if "from" in section:
        compress = load_yaml(config.parent / section["from"]).get("compress")
        if not isinstance(compress, Mapping):
            raise ConfigError(f"{where}.from: {section['from']} has no compress: section")
        compress = dict(compress)
    if section.get("train"):
        compress["train"] = deep_merge(compress.get("train") or {}, _train_override(section, "compresstracker", config))
    teacher = section.get("teacher")
    if teacher not in families:
        raise ConfigError(f"{where}.teacher: {teacher!r} is not one of the pruned families {sorted(families)}")
    layers = section.get("layers", [])
    if not isinstance(layers, list):
        raise ConfigError(f"{where}.layers must be a list of student depths, got {layers!r}")
    layers = [Field(int, low=1)(n, f"{where}.layers") for n in layers]
    ablation = section.get("ablation")
    if ablation is not None:
        ablation = Field(int, low=1)(ablation, f"{where}.ablation")
    if not layers and ablation is None:
        raise ConfigError(f"{where}: give layers (full students) and/or ablation (the depth of the ablation)")
    return compress, teacher, layers, ablation


RESUME_FREE_KEYS = frozenset({"description", "device", "data.workers", "train.threads", "train.checkpoint_every",
                              "train.log_every", "search.processes"})
"""Keys of a resolved config that a resumed comparison may change (they do not change any result)."""


def _write(path: Path, cfg: Mapping[str, Any], started: bool = False) -> None:
    """Write a resolved config; when the comparison has ``started`` (a stage ran), ConfigError naming
    the differences if ``path`` holds one made with other settings (the resume would mix its finished
    stages with the new settings')."""
    if started and path.exists():
        changed = config_differences(yaml.safe_load(path.read_text()) or {}, yaml.safe_load(yaml.safe_dump(dict(cfg))),
                                     RESUME_FREE_KEYS)
        if changed:
            raise ConfigError(f"{path}: the comparison in {path.parent.parent} was prepared with other settings "
                              f"({'; '.join(changed[:4])}{' ...' if len(changed) > 4 else ''}): choose another --out "
                              f"or remove it")
    atomic_write(path, yaml.safe_dump(dict(cfg), sort_keys=False))


def _prune_error(config: Path, family: str, err: ValueError) -> str:
    """A PruneSettings message (it starts with ``prune.<key>``) placed in the compare section."""
    return f"{config}: compare.{err}" if family == "cnn" else f"{config}: compare.families.{family}.{err}"


def prepare(config: str | Path, out: str | Path) -> Experiment:
    """Validate the comparison ``config`` and write its resolved per-family configs into
    ``out/configs/``; raises ConfigError naming the first bad key, before any work."""
    config = Path(config)
    raw = load_yaml(config)
    if "compare" not in raw:
        raise ConfigError(f"{config}: a 'compare:' section is required (see docs/compare.md)")
    section = raw.pop("compare")
    settings, nas_train, families = parse_settings(section, config)
    for key in ("model", "prune"):
        raw.pop(key, None)  # each family's come from its compare section
    SearchSettings.from_config(raw.get("search"), f"{config}: search")  # the searches' settings, checked now

    configs, started = Path(out) / "configs", (Path(out) / "stages.json").exists()
    configs.mkdir(parents=True, exist_ok=True)
    paths = {name: configs / f"{name}.yaml" for name in ("nas", "retrain")}
    common = {k: v for k, v in raw.items() if k != "search"}
    train = raw.get("train") or {}
    _write(paths["nas"], raw, started)
    _write(paths["retrain"], {**common, "train": deep_merge(train, nas_train)}, started)
    loaded = {name: load_experiment(path) for name, path in paths.items()}
    pruned = []
    for name, fam in families.items():
        prune = dict(fam["prune"])
        criteria = prune.pop("criteria", None)
        path = configs / f"{name}.yaml"
        _write(path, {**common, "model": fam["model"], "train": deep_merge(train, fam["train"]), "prune": prune},
               started)
        cfg = load_experiment(path)
        key = "prune" if name == "cnn" else f"families.{name}.prune"
        try:
            if criteria is None:
                criteria = [PruneSettings.from_experiment(cfg).criterion]
        except ValueError as err:
            raise ConfigError(_prune_error(config, name, err)) from None
        if not isinstance(criteria, list) or not criteria or len(set(map(str, criteria))) != len(criteria):
            raise ConfigError(f"{config}: compare.{key}.criteria must be a non-empty list of distinct pruning "
                              f"criteria, got {criteria!r}")
        try:
            per = {c: PruneSettings.from_experiment(cfg, criterion=c) for c in criteria}
        except ValueError as err:
            raise ConfigError(_prune_error(config, name, err)) from None
        pruned.append(PrunedFamily(name, path, tuple(criteria), per, fam["dense"]))
    plan = None
    if section.get("compresstracker"):
        compress, teacher, layers, ablation = _compress_plan(section, config, families)
        fam = families[teacher]
        path = configs / "compresstracker.yaml"
        _write(path, {**common, "model": fam["model"], "train": deep_merge(train, fam["train"]), "compress": compress},
               started)
        load_experiment(path)
        variants = [(f"ct{n}", n, dict(ABLATION[-1][1])) for n in layers]  # label, layers, switches
        if ablation is not None:
            variants += [(f"ct{ablation}-{label}", ablation, dict(switches)) for label, switches in ABLATION
                         if not (label == ABLATION[-1][0] and ablation in layers)]
        plan = CompressPlan(path, teacher, tuple(variants), ablation)
    return Experiment(config, settings, configs, paths["nas"], paths["retrain"], loaded["nas"], loaded["retrain"],
                      tuple(pruned), plan)
