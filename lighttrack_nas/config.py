"""YAML configs as data: ``yaml.safe_load``, ``extends:`` inheritance, deep merge, clear errors."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config file is missing, malformed, or has a wrong field; the message names it."""


class UnknownNameError(KeyError, ValueError):
    """A name (model, op, format, choice, candidate) that is not known; the message lists the known ones.
    A KeyError for lookups, a ValueError for the command line (one line, no traceback)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class StopError(RuntimeError):
    """Work cannot go on for a reason its message explains (e.g. the loss became NaN)."""


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


def check_number(section: Mapping[str, Any], key: str, where: str, *, integer: bool = False,
                 low: float | None = None, high: float | None = None, low_open: bool = False,
                 optional: bool = False) -> None:
    """Raise ConfigError unless ``section[key]`` is a number (an integer with ``integer``) within
    ``[low, high]`` (``(low, high]`` with ``low_open``), or None with ``optional``; absent keys pass."""
    if key not in section or (optional and section[key] is None):
        return
    value = section[key]
    kind = "an integer" if integer else "a number"
    ok = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        bounds = "" if low is None else f" {'>' if low_open else '>='} {low}"
        bounds += "" if high is None else f"{' and' if bounds else ''} <= {high}"
        raise ConfigError(f"{where}.{key} must be {kind}{bounds}{' or null' if optional else ''}, got {value!r}")


def check_type(section: Mapping[str, Any], key: str, where: str, kind: type, optional: bool = False) -> None:
    """Raise ConfigError unless ``section[key]`` is a ``kind`` (or None with ``optional``); absent keys pass."""
    if key not in section or (optional and section[key] is None):
        return
    if not isinstance(section[key], kind) or (kind is not bool and isinstance(section[key], bool)):
        raise ConfigError(f"{where}.{key} must be a {kind.__name__}{' or null' if optional else ''}, "
                          f"got {section[key]!r}")


def config_differences(saved: Any, now: Any, ignore: frozenset[str] = frozenset(), _at: str = "") -> list[str]:
    """``"key.path: saved X, now Y"`` for every leaf that differs between two plain configs, except
    the dotted paths in ``ignore``."""
    if _at in ignore:
        return []
    if isinstance(saved, Mapping) and isinstance(now, Mapping):
        out: list[str] = []
        for key in sorted(set(saved) | set(now), key=str):
            path = f"{_at}.{key}" if _at else str(key)
            out += config_differences(saved.get(key, "<absent>"), now.get(key, "<absent>"), ignore, path)
        return out
    return [] if saved == now else [f"{_at}: saved {saved!r}, now {now!r}"]
