"""YAML configs as data: ``yaml.safe_load``, ``extends:`` inheritance, deep merge, clear errors."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config file is missing, malformed, or has a wrong field; the message names it."""


# top-level keys naming another file: resolved against the folder of the file that declares them
FILE_KEYS = ("space", "tracker")


def load_yaml(path: str | Path, _depth: int = 0) -> dict[str, Any]:
    """Read a YAML mapping; ``extends: other.yaml`` (relative to the file) is loaded first and
    deep-merged under this file's keys. A top-level :data:`FILE_KEYS` path is made absolute against
    the folder of the file that declares it, so it means the same wherever the file is extended from."""
    import yaml

    path = Path(path)
    if _depth > 8:
        raise ConfigError(f"{path}: 'extends' chain is too deep (cycle?)")
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: malformed YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level")
    for key in FILE_KEYS:
        if isinstance(data.get(key), str):
            data[key] = str((path.parent / data[key]).resolve())
    parent = data.pop("extends", None)
    return deep_merge(load_yaml(path.parent / parent, _depth + 1), data) if parent else data


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``, merging nested mappings key by key."""
    out = dict(base)
    for k, v in override.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def check_keys(section: Mapping[str, Any], allowed: set[str], where: str) -> None:
    """Raise ConfigError naming unknown keys of ``section`` and the allowed ones."""
    unknown = set(section) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
