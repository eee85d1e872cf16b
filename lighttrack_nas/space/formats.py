"""External architecture-string formats a space can opt into (``formats: [lighttrack]`` in YAML).

The ``lighttrack`` format is the one of the published LightTrack strings::

    back_<0><18 backbone digits split 2+4+4+4+4><0>+cls_<width><8 ops>+reg_<width><8 ops>_ops_<stage><block>

Each digit is the index of the value in the corresponding choice's ``values`` list. The last four
backbone digits belong to the 192-channel stage that never runs when tracking: they are accepted
and dropped on decode, and written as ``0`` on encode.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Protocol

from ..config import UnknownNameError

if TYPE_CHECKING:
    from .space import Architecture, SearchSpace


class ArchFormat(Protocol):
    name: str

    def matches(self, text: str) -> bool: ...

    def decode(self, space: "SearchSpace", text: str) -> dict[str, Any]: ...

    def encode(self, arch: "Architecture") -> str: ...


_FORMATS: dict[str, ArchFormat] = {}


def register_format(fmt: ArchFormat) -> ArchFormat:
    """Register an external architecture-string format under ``fmt.name``."""
    _FORMATS[fmt.name] = fmt
    return fmt


def get_format(name: str) -> ArchFormat:
    try:
        return _FORMATS[name]
    except KeyError:
        raise UnknownNameError(f"unknown architecture format {name!r}; registered: {sorted(_FORMATS)}") from None


class LightTrackFormat:
    """LightTrack's published architecture strings (see module docstring)."""

    name = "lighttrack"
    backbone_groups = ("s1", "s2", "s3", "s4")
    unused_tail_layers = 4
    pattern = re.compile(r"^back_(\d+)\+cls_(\d)(\d+)\+reg_(\d)(\d+)_ops_(\d)(\d)$")

    def matches(self, text: str) -> bool:
        return text.startswith("back_")

    def decode(self, space: "SearchSpace", text: str) -> dict[str, Any]:
        from .space import SpaceError

        m = self.pattern.match(text)
        if not m:
            raise SpaceError(f"LightTrack string {text!r} does not match "
                             "'back_<digits>+cls_<w><ops>+reg_<w><ops>_ops_<stage><block>'")
        back, cls_w, cls_ops, reg_w, reg_ops, stage, block = m.groups()
        layers = [c for g in self.backbone_groups for c in space.choices if c.group == g]
        expected = len(layers) + self.unused_tail_layers + 2
        if len(back) != expected:
            raise SpaceError(f"LightTrack string: backbone has {len(back)} digits, expected {expected} "
                             f"(stem 0, {len(layers)} searchable + {self.unused_tail_layers} unused, tail 0)")
        values: dict[str, Any] = {}
        for choice, digit in zip(layers, back[1:1 + len(layers)]):
            values[choice.label] = _pick(choice, digit)
        for tower, width, ops in (("cls", cls_w, cls_ops), ("reg", reg_w, reg_ops)):
            values[f"{tower}_w"] = _pick(space.choice(f"{tower}_w"), width)
            tower_layers = [c for c in space.choices if c.group == tower]
            if len(ops) != len(tower_layers):
                raise SpaceError(f"LightTrack string: {tower} tower has {len(ops)} op digits, expected {len(tower_layers)}")
            for choice, digit in zip(tower_layers, ops):
                values[choice.label] = _pick(choice, digit)
        out = space.choice("out")
        per_stage = len(out.values) // 3
        values["out"] = _pick(out, str((int(stage) - 1) * per_stage + int(block)), f"ops_{stage}{block}")
        return values

    def encode(self, arch: "Architecture") -> str:
        space = arch.space
        idx = {c.label: [str(v) for v in c.values].index(str(arch[c.label])) for c in space.choices}
        back = "".join(str(idx[c.label]) for g in self.backbone_groups for c in space.choices if c.group == g)
        towers = {t: str(idx[f"{t}_w"]) + "".join(str(idx[c.label]) for c in space.choices if c.group == t)
                  for t in ("cls", "reg")}
        per_stage = len(space.choice("out").values) // 3
        stage, block = divmod(idx["out"], per_stage)
        return (f"back_0{back}{'0' * self.unused_tail_layers}0+cls_{towers['cls']}+reg_{towers['reg']}"
                f"_ops_{stage + 1}{block}")


def _pick(choice: Any, digit: str, shown: str | None = None) -> Any:
    from .space import SpaceError

    i = int(digit)
    if i >= len(choice.values):
        raise SpaceError(f"{choice.label}: digit {shown or digit} is out of range; allowed indices "
                         f"0..{len(choice.values) - 1} for values {choice.allowed()}")
    return choice.values[i]


register_format(LightTrackFormat())
