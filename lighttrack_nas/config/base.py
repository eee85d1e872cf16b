"""YAML configs as data: ``yaml.safe_load``, ``extends:`` inheritance, deep merge, clear errors."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Field:
    """One config field: its type (``int``; ``float``, which takes integers too; ``bool``, ``str``,
    ``dict``, ``list``), bounds or allowed values, and whether ``null`` is allowed."""

    kind: type = float
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None
    optional: bool = False
    note: str = ""               # said after the bounds, e.g. "(0: no weight averaging)"

    def check(self, value: Any, where: str) -> None:
        """Raise ConfigError naming ``where``, the value and what is allowed, unless ``value`` fits."""
        if value is None and self.optional:
            return
        null = " or null" if self.optional else ""
        if self.choices is not None:
            if isinstance(value, bool) or value not in self.choices:
                raise ConfigError(f"{where}: {value!r} is not one of {list(self.choices)}")
            return
        if self.kind in (int, float):
            ok = not isinstance(value, bool) and isinstance(value, int if self.kind is int else (int, float))
            ok = ok and math.isfinite(value)
            if ok and self.low is not None:
                ok = value > self.low if self.low_open else value >= self.low
            if ok and self.high is not None:
                ok = value < self.high if self.high_open else value <= self.high
            if not ok:
                kind = "an integer" if self.kind is int else "a number"
                raise ConfigError(f"{where} must be {kind}{self._bounds()}{self.note and ' ' + self.note}{null}, "
                                  f"got {value!r}")
        elif not isinstance(value, self.kind) or (self.kind is not bool and isinstance(value, bool)):
            raise ConfigError(f"{where} must be a {self.kind.__name__}{null}, got {value!r}")

    def __call__(self, value: Any, where: str) -> Any:
        """``value`` itself once :meth:`check` passes."""
        self.check(value, where)
        return value

    def _bounds(self) -> str:
        if self.low is not None and self.high is not None:
            return f" in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f" {'>' if self.low_open else '>='} {self.low:g}"
        return "" if self.high is None else f" {'<' if self.high_open else '<='} {self.high:g}"


def check_section(section: Any, fields: Mapping[str, Field], where: str, required: tuple[str, ...] = ()) -> None:
    """Raise ConfigError unless ``section`` is a mapping of known keys (unknown ones are named with
    the allowed ones), holding ``required``, each value fitting its :class:`Field`."""
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where} must be a mapping with keys {sorted(fields)}, got {section!r}")
    check_keys(section, set(fields), where)
    missing = [key for key in required if key not in section]
    if missing:
        raise ConfigError(f"{where}: {' and '.join(repr(k) for k in missing)} {'is' if len(missing) == 1 else 'are'} "
                          "required")
    for key, value in section.items():
        fields[key].check(value, f"{where}.{key}")


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
