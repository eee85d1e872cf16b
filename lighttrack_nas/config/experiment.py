"""The experiment schema: every section an experiment YAML may hold, its defaults, and the loader
every stage uses (training, search, compression, the comparison).

```yaml
extends: base.yaml            # the one inheritance keyword (lighttrack_nas.config.load_yaml)
space: ../search_spaces/lighttrack_tiny.yaml
data: {root: cache/data, generate: true, splits: {train: {sequences: 60, frames: 80}}}
train: {epochs: 30, batch_size: 32, lr: {peak: 0.03}}
```
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .base import ConfigError, Field, check_section, deep_merge, load_yaml

DEFAULT_TRAIN: dict[str, Any] = {
    "epochs": 30, "iters_per_epoch": 100, "batch_size": 32, "momentum": 0.9, "weight_decay": 1e-4,
    "lr": {"start": 0.01, "peak": 0.03, "final": 1e-4, "warmup_epochs": 5},
    "backbone_lr_mult": 0.1, "freeze_backbone_epochs": 10, "grad_clip": 10.0, "label_radius_px": 16,
    "reg_loss_weight": 1.2, "checkpoint_every": 100, "log_every": 10, "pretrained_backbone": None,
    "threads": None, "optimizer": "sgd", "channels_last": True, "ema_decay": 0.0, "train_backbone_from": None,
    "search_size": None,
}
OPTIMIZERS = ("sgd", "adamw")
TRAIN_FIELDS: dict[str, Field] = {
    **{key: Field(int, low=1) for key in ("epochs", "iters_per_epoch", "batch_size", "checkpoint_every", "log_every")},
    "freeze_backbone_epochs": Field(int, low=0), "threads": Field(int, low=1, optional=True),
    "momentum": Field(low=0, high=1), "weight_decay": Field(low=0), "backbone_lr_mult": Field(low=0),
    "reg_loss_weight": Field(low=0), "label_radius_px": Field(low=0, low_open=True),
    "grad_clip": Field(low=0, optional=True), "channels_last": Field(bool), "lr": Field(dict),
    "pretrained_backbone": Field(str, optional=True), "train_backbone_from": Field(str, optional=True),
    "optimizer": Field(choices=OPTIMIZERS), "ema_decay": Field(low=0, high=1, high_open=True,
                                                                note="(0: no weight averaging)"),
    "search_size": Field(int, optional=True),   # its bounds need the model (trainer: a multiple of its stride)
}
LR_FIELDS = {key: Field(low=0) for key in DEFAULT_TRAIN["lr"]}
SAMPLING_FIELDS: dict[str, Field] = {
    "strategy": Field(str), "accumulate": Field(int, low=1), "head_paths": Field(int, low=1), "ramp": Field(dict),
    "head_teacher": Field(bool), "distill": Field(low=0), "distill_reg": Field(low=0),
}
RAMP_FIELDS = {"values": Field(list), "iterations": Field(int, low=1)}
DATA_FIELDS: dict[str, Field] = {
    "root": Field(str), "format": Field(str), "generate": Field(bool), "splits": Field(dict),
    "max_gap": Field(int, low=1), "augmentation": Field(dict), "workers": Field(int, low=0),
}
SPLIT_FIELDS = {"sequences": Field(int, low=1), "frames": Field(int, low=2), "size": Field(list), "seed": Field(int)}
# settings a resume may change: they do not change what is trained (file paths of the space and the
# tracker may move with the checkout; a changed space itself fails on the stored weights), or, for
# ema_decay, are checked apart (a run without averaging may continue an averaged one's trained weights)
RESUME_FREE = frozenset({"description", "device", "space", "tracker", "search", "train.threads",
                         "train.checkpoint_every", "train.log_every", "train.ema_decay", "data.workers",
                         "data.splits.val", "data.splits.test"})   # training reads the train split only
TOP_KEYS = {"space", "space_settings", "data", "train", "sampling", "seed", "device", "tracker", "search",
            "description", "model", "prune", "compress"}


def load_experiment(path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """An experiment config with defaults filled in, unknown keys and ill-typed values rejected
    (ConfigError naming the field and what it allows)."""
    cfg = deep_merge(load_yaml(path), overrides or {})
    unknown = set(cfg) - TOP_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}")
    cfg["train"] = check_train(cfg.get("train", {}), f"{path}: train")
    cfg.setdefault("sampling", {"strategy": "uniform", "accumulate": 1})
    check_section(cfg["sampling"], SAMPLING_FIELDS, f"{path}: sampling")
    for key in ("distill", "distill_reg"):
        if cfg["sampling"].get(key) and not cfg["sampling"].get("head_teacher"):
            raise ConfigError(f"{path}: sampling.{key} needs sampling.head_teacher: true (the head it distils from)")
    check_section(cfg["sampling"].get("ramp") or {}, RAMP_FIELDS, f"{path}: sampling.ramp")
    if "space" not in cfg or "data" not in cfg:
        raise ConfigError(f"{path}: 'space' and 'data' are required")
    check_data_config(cfg["data"], f"{path}: data")
    return cfg


def data_read(data: Mapping[str, Any], splits: Iterable[str]) -> dict[str, Any]:
    """A ``data:`` section as far as work that reads only ``splits`` depends on it: those splits, and
    no loader worker count (the key of a resumed search, of stand-alone results)."""
    wanted = set(splits)
    return {**{k: v for k, v in data.items() if k not in ("splits", "workers")},
            "splits": {k: v for k, v in (data.get("splits") or {}).items() if k in wanted}}


def check_train(train: Any, where: str = "train") -> dict[str, Any]:
    """A ``train:`` section over :data:`DEFAULT_TRAIN`, every field checked."""
    check_section(train, TRAIN_FIELDS, where)
    merged = deep_merge(DEFAULT_TRAIN, train)
    check_section(merged["lr"], LR_FIELDS, f"{where}.lr")
    return merged


def check_data_config(data: Any, where: str = "data") -> None:
    """Raise ConfigError naming the first unknown key or ill-typed value of a ``data:`` section."""
    check_section(data, DATA_FIELDS, where)
    for split, params in (data.get("splits") or {}).items():
        at = f"{where}.splits.{split}"
        check_section(params, SPLIT_FIELDS, at, required=("sequences", "frames"))
        size = params.get("size", [640, 480])
        if not (isinstance(size, list) and len(size) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
            raise ConfigError(f"{at}.size must be [width, height] in pixels, got {size!r}")
