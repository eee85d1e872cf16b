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

from ..config import ConfigError
from .readers import open_dataset
from .sequence import Sequence
from .synthetic import ensure_dataset


def load_split(data_cfg: dict[str, Any], split: str, limit: int | None = None,
               frames: int | None = None) -> list[Sequence]:
    """The first ``limit`` sequences of ``split`` (all with None), each cut to its first ``frames``
    frames (whole with None); generated first when the config says so."""
    root = Path(data_cfg.get("root", "cache/data"))
    if data_cfg.get("generate", True):
        params = data_cfg.get("splits", {}).get(split)
        if params is None:
            raise ConfigError(f"data.splits has no entry for split {split!r} (have: {sorted(data_cfg.get('splits', {}))})")
        size = params.get("size", [640, 480])
        ensure_dataset(root, split, sequences=int(params["sequences"]), frames=int(params["frames"]),
                       seed=int(params.get("seed", 0)), size=(int(size[0]), int(size[1])))
    sequences = open_dataset(data_cfg.get("format", "got10k"), root, split)
    sequences = sequences[:limit] if limit else sequences
    return [s.head(frames) for s in sequences] if frames else sequences
