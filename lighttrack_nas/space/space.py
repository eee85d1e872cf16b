"""Choice-based search spaces and architectures.

A :class:`SearchSpace` is an ordered list of labelled :class:`Choice` objects plus free-form
``settings`` (structural numbers a model builder reads), an ``ops`` vocabulary (op name -> op
spec for a registry) and named ``presets``. An :class:`Architecture` maps every label to one
allowed value; it is immutable, hashable and prints as a compact string::

    s1:k3e4-k5e6|s2:k3e6-...|out:s4b2|cls_w:256|cls:k3-k5-...

Tokens of one group (choices sharing a ``group``) are joined by ``-``, groups by ``|``.
"""
from __future__ import annotations

import copy

import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ..config import ConfigError, UnknownNameError, deep_merge, load_yaml
from .formats import get_format

Value = Any
RngLike = np.random.Generator | int | None
_RESERVED = set("|:-,= \t\n")


class SpaceError(ValueError):
    """A search-space definition or an architecture does not fit its space."""


def as_rng(rng: RngLike) -> np.random.Generator:
    """A numpy Generator from a seed, a Generator or None (fresh entropy)."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


@dataclass(frozen=True)
class Choice:
    """One labelled decision: ``values`` are the allowed options, ``kind`` says what they mean
    (``op``, ``width``, ``depth``, ``position`` or ``categorical``), ``group`` groups labels in the
    compact string."""

    label: str
    values: tuple[Value, ...]
    kind: str = "categorical"
    group: str = ""

    def __post_init__(self) -> None:
        if not self.values:
            raise SpaceError(f"choice {self.label!r}: needs at least one value")
        tokens = [token(v) for v in self.values]
        if len(set(tokens)) != len(tokens):
            raise SpaceError(f"choice {self.label!r}: duplicate values {list(self.values)}")
        for t in tokens + [self.label, self.group]:
            if any(c in _RESERVED for c in t):
                raise SpaceError(f"choice {self.label!r}: {t!r} contains one of the reserved characters '|:-,= '")
        if not self.group:
            object.__setattr__(self, "group", self.label.rsplit(".", 1)[0])

    def parse(self, tok: str) -> Value:
        """The value whose token is ``tok``; SpaceError naming label and allowed values otherwise."""
        for v in self.values:
            if token(v) == tok:
                return v
        raise SpaceError(f"{self.label}: {tok!r} is not allowed; allowed values: {self.allowed()}")

    def allowed(self) -> str:
        return ", ".join(token(v) for v in self.values)


def token(value: Value) -> str:
    """The string token of a choice value (``256``, ``k3e4``, ``True``)."""
    return str(value)


class Architecture(Mapping[str, Value]):
    """An immutable assignment of one value to every choice of a space."""

    __slots__ = ("space", "_values", "_key")

    def __init__(self, space: "SearchSpace", values: Mapping[str, Value]):
        self.space = space
        self._values = {c.label: values[c.label] for c in space.choices}
        self._key = (space.name, tuple(token(v) for v in self._values.values()))

    def __getitem__(self, label: str) -> Value:
        try:
            return self._values[label]
        except KeyError:
            raise UnknownNameError(f"{label!r} is not a choice of space {self.space.name!r}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Architecture):
            return self._key == other._key
        return NotImplemented

    def __str__(self) -> str:
        return self.space.encode(self)

    def __repr__(self) -> str:
        return f"Architecture({self.space.name!r}, {str(self)!r})"

    def replace(self, changes: Mapping[str, Value]) -> "Architecture":
        """A validated copy with the labels in ``changes`` set to new values."""
        return self.space.validate({**self._values, **changes})

    def to_json(self) -> str:
        return json.dumps({"space": self.space.name, "choices": self._values})


class SearchSpace:
    """An ordered collection of labelled choices with sampling and evolution operators."""

    def __init__(self, name: str, choices: list[Choice], settings: Mapping[str, Any] | None = None,
                 ops: Mapping[str, Mapping[str, Any]] | None = None, model: str | None = None,
                 presets: Mapping[str, str] | None = None, formats: list[str] | None = None):
        self.name = name
        self.choices = list(choices)
        self.settings = dict(settings or {})
        self.ops = {k: dict(v) for k, v in (ops or {}).items()}
        self.model = model
        self.formats = list(formats or [])
        self._by_label = {c.label: c for c in self.choices}
        if len(self._by_label) != len(self.choices):
            raise SpaceError(f"space {name!r}: duplicate choice labels")
        for c in self.choices:
            if c.kind == "op":
                for v in c.values:
                    if v not in self.ops:
                        raise SpaceError(f"choice {c.label!r}: op {v!r} is not declared under 'ops' "
                                         f"(declared: {', '.join(self.ops) or 'none'})")
        self.presets: dict[str, Architecture] = {}
        for preset, text in (presets or {}).items():
            self.presets[preset] = self.decode(text)

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_yaml(cls, path: str | Path) -> "SearchSpace":
        """Load a space from YAML (``yaml.safe_load``); ``extends: other.yaml`` inherits and
        deep-merges ``settings``/``ops``/``presets``."""
        try:
            spec = load_yaml(path)
        except ConfigError as err:
            raise SpaceError(str(err)) from None
        return cls.from_dict(spec, source=str(path))

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], source: str = "<dict>") -> "SearchSpace":
        """Build a space from its YAML-shaped mapping; errors name the field."""
        known = {"name", "model", "settings", "ops", "choices", "presets", "formats", "extends", "description"}
        unknown = set(spec) - known
        if unknown:
            raise SpaceError(f"{source}: unknown top-level field(s) {sorted(unknown)}; allowed: {sorted(known)}")
        if "name" not in spec or "choices" not in spec:
            raise SpaceError(f"{source}: fields 'name' and 'choices' are required")
        if not isinstance(spec["choices"], list):
            raise SpaceError(f"{source}: 'choices' must be a list of choice entries")
        choices: list[Choice] = []
        for i, entry in enumerate(spec["choices"]):
            choices.extend(_expand_choice(entry, f"{source}: choices[{i}]"))
        return cls(spec["name"], choices, spec.get("settings"), spec.get("ops"), spec.get("model"),
                   spec.get("presets"), spec.get("formats"))

    def to_dict(self) -> dict[str, Any]:
        """A ``from_dict``-compatible mapping (choices expanded), e.g. to store in a checkpoint."""
        return {"name": self.name, "model": self.model, "formats": copy.deepcopy(self.formats),
                "settings": copy.deepcopy(self.settings), "ops": copy.deepcopy(self.ops), "presets": {k: str(v) for k, v in self.presets.items()},
                "choices": [{"name": c.label, "values": list(c.values), "kind": c.kind, "group": c.group}
                            for c in self.choices]}

    # ---------------------------------------------------------------- basics
    @property
    def labels(self) -> list[str]:
        return [c.label for c in self.choices]

    def choice(self, label: str) -> Choice:
        try:
            return self._by_label[label]
        except KeyError:
            raise SpaceError(f"{label!r} is not a choice of space {self.name!r}") from None

    def __len__(self) -> int:
        return len(self.choices)

    @property
    def cardinality(self) -> int:
        """Number of distinct architectures (product of the choice sizes)."""
        return math.prod(len(c.values) for c in self.choices)

    def validate(self, values: Mapping[str, Value]) -> Architecture:
        """An Architecture from a label->value mapping; errors name the label, the bad value and
        the allowed values (string tokens are accepted for any value type)."""
        missing = [c.label for c in self.choices if c.label not in values]
        extra = [k for k in values if k not in self._by_label]
        if missing or extra:
            raise SpaceError(f"space {self.name!r}: missing labels {missing}, unknown labels {extra}")
        clean = {}
        for c in self.choices:
            v = values[c.label]
            clean[c.label] = v if any(v == a and type(v) is type(a) for a in c.values) else c.parse(token(v))
        return Architecture(self, clean)

    # ---------------------------------------------------------------- strings and JSON
    def encode(self, arch: Architecture) -> str:
        """The compact string ``group:tok-tok|group:tok``."""
        groups: dict[str, list[str]] = {}
        for c in self.choices:
            groups.setdefault(c.group, []).append(token(arch[c.label]))
        return "|".join(f"{g}:{'-'.join(toks)}" for g, toks in groups.items())

    def decode(self, text: str) -> Architecture:
        """Parse a preset name, a compact string, a JSON object or any registered external format
        (e.g. LightTrack's published ``back_...`` strings)."""
        text = text.strip()
        if text in self.presets:
            return self.presets[text]
        if text.startswith("{"):
            return self.from_json(text)
        for fmt in self.formats:
            codec = get_format(fmt)
            if codec.matches(text):
                return self.validate(codec.decode(self, text))
        return self._decode_compact(text)

    def _decode_compact(self, text: str) -> Architecture:
        order = list(dict.fromkeys(c.group for c in self.choices))
        members = {g: [c for c in self.choices if c.group == g] for g in order}
        seen: dict[str, list[str]] = {}
        for part in text.split("|"):
            if ":" not in part:
                raise SpaceError(
                    f"architecture string: segment {part!r} is not 'group:tokens'; expected groups "
                    f"{order} (or a preset: {sorted(self.presets) or 'none'})")
            g, toks = part.split(":", 1)
            if g not in members:
                raise SpaceError(f"architecture string: unknown group {g!r}; groups of {self.name!r}: {order}")
            seen[g] = toks.split("-")
        values = {}
        for g in order:
            if g not in seen:
                raise SpaceError(f"architecture string: group {g!r} is missing")
            if len(seen[g]) != len(members[g]):
                raise SpaceError(f"architecture string: group {g!r} has {len(seen[g])} values, "
                                 f"expected {len(members[g])} ({', '.join(c.label for c in members[g])})")
            for c, tok in zip(members[g], seen[g]):
                values[c.label] = c.parse(tok)
        return Architecture(self, values)

    def from_json(self, text: str | Mapping[str, Any]) -> Architecture:
        """Parse ``{"space": ..., "choices": {label: value}}`` (or a bare label->value mapping).
        Architectures transfer between spaces with the same labels (e.g. a preset and its tiny twin)."""
        try:
            data = json.loads(text) if isinstance(text, str) else dict(text)
        except json.JSONDecodeError as err:
            raise SpaceError(f"architecture JSON is malformed: {err}") from None
        return self.validate(data.get("choices", data))

    # ---------------------------------------------------------------- sampling and evolution
    def sample(self, rng: RngLike = None, constraints: list["Constraint"] | None = None,
               max_attempts: int = 1000) -> Architecture:
        """A uniformly sampled architecture satisfying every constraint (rejection, capped)."""
        gen = as_rng(rng)
        return self._accept(lambda: self._uniform(gen), constraints, max_attempts)

    def mutate(self, arch: Architecture, prob: float, rng: RngLike = None,
               constraints: list["Constraint"] | None = None, max_attempts: int = 1000) -> Architecture:
        """Each gene is replaced, with probability ``prob``, by a different allowed value."""
        gen = as_rng(rng)

        def draw() -> Architecture:
            values = dict(arch)
            for c in self.choices:
                if len(c.values) > 1 and gen.random() < prob:
                    others = [v for v in c.values if token(v) != token(arch[c.label])]
                    values[c.label] = others[gen.integers(len(others))]
            return Architecture(self, values)

        return self._accept(draw, constraints, max_attempts)

    def crossover(self, a: Architecture, b: Architecture, rng: RngLike = None,
                  constraints: list["Constraint"] | None = None, max_attempts: int = 1000) -> Architecture:
        """Uniform crossover: each gene from either parent with probability 1/2."""
        gen = as_rng(rng)

        def draw() -> Architecture:
            return Architecture(self, {c.label: (a if gen.random() < 0.5 else b)[c.label] for c in self.choices})

        return self._accept(draw, constraints, max_attempts)

    def _uniform(self, gen: np.random.Generator) -> Architecture:
        return Architecture(self, {c.label: c.values[gen.integers(len(c.values))] for c in self.choices})

    def _accept(self, draw: Callable[[], Architecture], constraints: list["Constraint"] | None,
                max_attempts: int) -> Architecture:
        constraints = constraints or []
        best: dict[str, tuple[float, Architecture]] = {}
        for _ in range(max(1, max_attempts)):
            arch = draw()
            ok = True
            for con in constraints:
                cost = con.cost(arch)
                if con.name not in best or cost < best[con.name][0]:
                    best[con.name] = (cost, arch)
                ok = ok and cost <= con.limit
            if ok:
                return arch
        lines = []
        for con in constraints:
            seen_cost, seen_arch = best[con.name]
            floor = minimize(self, con.cost, seen_arch)
            lines.append(f"{con.name} <= {con.describe(con.limit)}: smallest seen {con.describe(seen_cost)}, "
                         f"smallest achievable about {con.describe(con.cost(floor))} ({floor})")
        raise ConstraintError(f"no architecture met the constraints in {max_attempts} attempts; " + "; ".join(lines))


class ConstraintError(RuntimeError):
    """No architecture satisfying the constraints was found within the attempt cap."""


@dataclass
class Constraint:
    """``cost(arch) <= limit``; ``unit`` only affects messages."""

    name: str
    cost: Callable[[Architecture], float]
    limit: float
    unit: str = ""

    def __call__(self, arch: Architecture) -> bool:
        return self.cost(arch) <= self.limit

    def describe(self, value: float) -> str:
        for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
            if abs(value) >= div:
                return f"{value / div:.3g}{suffix}{self.unit}"
        return f"{value:.3g}{self.unit}"


def minimize(space: SearchSpace, cost: Callable[[Architecture], float], start: Architecture,
             sweeps: int = 3) -> Architecture:
    """Coordinate descent on ``cost`` from ``start``: an estimate of the cheapest architecture
    (exact for additive costs)."""
    values = dict(start)
    current = cost(start)
    for _ in range(sweeps):
        improved = False
        for c in space.choices:
            for v in c.values:
                trial = Architecture(space, {**values, c.label: v})
                t = cost(trial)
                if t < current:
                    values, current, improved = dict(trial), t, True
        if not improved:
            break
    return Architecture(space, values)


def largest_architecture(space: SearchSpace, cost: Callable[[Architecture], float],
                         start: Architecture | None = None) -> Architecture:
    """The most costly architecture (e.g. by MACs), by coordinate ascent from ``start``."""
    return minimize(space, lambda a: -cost(a), start if start is not None else space.sample(0))


def _expand_choice(entry: Any, where: str) -> list[Choice]:
    """One YAML choice entry -> Choice objects. ``repeat: N`` makes labels ``name.start..``."""
    if not isinstance(entry, Mapping):
        raise SpaceError(f"{where}: expected a mapping with 'name' and 'values', got {entry!r}")
    allowed = {"name", "values", "kind", "repeat", "start", "group"}
    unknown = set(entry) - allowed
    if unknown:
        raise SpaceError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    if "name" not in entry or "values" not in entry:
        raise SpaceError(f"{where}: fields 'name' and 'values' are required")
    values = entry["values"]
    if not isinstance(values, list) or not values:
        raise SpaceError(f"{where} ({entry['name']}): 'values' must be a non-empty list")
    kinds = {"op", "width", "depth", "position", "categorical"}
    kind = entry.get("kind", "categorical")
    if kind not in kinds:
        raise SpaceError(f"{where} ({entry['name']}): kind {kind!r} is not one of {sorted(kinds)}")
    name = str(entry["name"])
    if "repeat" not in entry:
        return [Choice(name, tuple(values), kind, entry.get("group", name))]
    repeat, start = entry["repeat"], entry.get("start", 0)
    if not isinstance(repeat, int) or repeat < 1 or not isinstance(start, int) or start < 0:
        raise SpaceError(f"{where} ({name}): 'repeat' must be a positive integer and 'start' >= 0")
    return [Choice(f"{name}.{i}", tuple(values), kind, entry.get("group", name)) for i in range(start, start + repeat)]


def experiment_space(cfg: Mapping[str, Any]) -> SearchSpace:
    """An experiment config's search space with ``space_settings`` merged into its settings."""
    space = SearchSpace.from_yaml(cfg["space"])
    if cfg.get("space_settings"):
        spec = space.to_dict()
        if not isinstance(cfg["space_settings"], dict):
            raise ConfigError(f"space_settings must be a mapping, got {cfg['space_settings']!r}")
        spec["settings"] = deep_merge(spec["settings"], cfg["space_settings"])
        space = SearchSpace.from_dict(spec, source=cfg["space"])
    return space
