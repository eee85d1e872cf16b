"""Data named by an experiment config: generated on first use into a cache, or read from disk.

```yaml
data:
  root: cache/data            # data-set root (generated data is cached here)
  format: got10k              # reader for open_dataset
  generate: true              # make the splits with the real-photograph generator if missing
  splits:
    train: {sequences: 60, frames: 80, size: [320, 240], seed: 1}
    val:   {sequences: 20, frames: 80, size: [320, 240], seed: 2}
```
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import ConfigError, check_keys, check_number, check_type
from .readers import open_dataset
from .sequence import Sequence
from .synthetic import ensure_dataset


DATA_KEYS = {"root", "format", "generate", "splits", "max_gap", "augmentation", "workers"}
SPLIT_KEYS = {"sequences", "frames", "size", "seed"}


def check_data_config(data_cfg: Any, where: str = "data") -> None:
    """Raise ConfigError naming the first unknown key or ill-typed value of a ``data:`` section."""
    if not isinstance(data_cfg, dict):
        raise ConfigError(f"{where} must be a mapping, got {data_cfg!r}")
    check_keys(data_cfg, DATA_KEYS, where)
    for key in ("root", "format"):
        check_type(data_cfg, key, where, str)
    check_type(data_cfg, "generate", where, bool)
    check_number(data_cfg, "max_gap", where, integer=True, low=1)
    check_number(data_cfg, "workers", where, integer=True, low=0)
    check_type(data_cfg, "augmentation", where, dict)
    check_type(data_cfg, "splits", where, dict)
    for split, params in (data_cfg.get("splits") or {}).items():
        at = f"{where}.splits.{split}"
        if not isinstance(params, dict):
            raise ConfigError(f"{at} must be a mapping with keys {sorted(SPLIT_KEYS)}, got {params!r}")
        check_keys(params, SPLIT_KEYS, at)
        if "sequences" not in params or "frames" not in params:
            raise ConfigError(f"{at}: 'sequences' and 'frames' are required")
        check_number(params, "sequences", at, integer=True, low=1)
        check_number(params, "frames", at, integer=True, low=2)
        check_number(params, "seed", at, integer=True)
        size = params.get("size", [640, 480])
        if not (isinstance(size, list) and len(size) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
            raise ConfigError(f"{at}.size must be [width, height] in pixels, got {size!r}")


def load_split(data_cfg: dict[str, Any], split: str, limit: int | None = None) -> list[Sequence]:
    """The sequences of ``split`` (generating them first when the config says so)."""
    root = Path(data_cfg.get("root", "cache/data"))
    if data_cfg.get("generate", True):
        params = data_cfg.get("splits", {}).get(split)
        if params is None:
            raise ConfigError(f"data.splits has no entry for split {split!r} (have: {sorted(data_cfg.get('splits', {}))})")
        size = params.get("size", [640, 480])
        ensure_dataset(root, split, sequences=int(params["sequences"]), frames=int(params["frames"]),
                       seed=int(params.get("seed", 0)), size=(int(size[0]), int(size[1])))
    sequences = open_dataset(data_cfg.get("format", "got10k"), root, split)
    return sequences[:limit] if limit else sequences
