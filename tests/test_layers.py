"""The package's layers: every import (module level or inside a function) points down or sideways
within a layer, never up, and the packages import one another without circles."""
import ast
from collections import defaultdict

from conftest import ROOT

PACKAGE = ROOT / "lighttrack_nas"
# bottom first: configs and utilities, the space, models, then data / cost / tracker / deploy (the
# deployed forms are what latency is measured on), then the stages (train / search / compress /
# evaluate), then the workflows that chain them and the tools' error contract
LAYERS = [
    {"config", "io", "machine"},
    {"space"},
    {"models"},
    {"data", "cost", "tracker", "deploy"},
    {"train", "search", "compress", "evaluate"},
    {"workflows", "cli"},  # cli: the tools' error contract (names every layer's user errors)
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _imports() -> dict[str, set[str]]:
    """Top-level part of the package each top-level part imports (itself excluded)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts  # ('lighttrack_nas', 'search', 'runner')
        if len(parts) == 2 and parts[1] == "__init__":
            continue
        package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[tuple[str, ...]] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[:len(package) - node.level + 1]
                    targets.append(base + tuple(node.module.split(".")) if node.module else base)
                elif node.module and node.module.startswith("lighttrack_nas"):
                    targets.append(tuple(node.module.split(".")))
            elif isinstance(node, ast.Import):
                targets += [tuple(a.name.split(".")) for a in node.names if a.name.startswith("lighttrack_nas")]
            for target in targets:
                if len(target) > 1 and target[1] != parts[1]:
                    edges[parts[1]].add(target[1])
    return edges


def test_every_part_has_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}
    assert parts == set(RANK), f"add new parts to LAYERS (tests/test_layers.py): {sorted(parts ^ set(RANK))}"


def test_no_import_points_up():
    upward = sorted(f"{a} (layer {RANK[a]}) imports {b} (layer {RANK[b]})"
                    for a, targets in _imports().items() for b in targets if RANK[b] > RANK[a])
    assert upward == []


def test_no_circles_between_packages():
    edges = _imports()
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            assert state.get(nxt) != 1, f"import circle: {' -> '.join(trail + [node, nxt])}"
            if nxt not in state:
                visit(nxt, trail + [node])
        state[node] = 2

    for node in sorted(RANK):
        if node not in state:
            visit(node, [])


def test_families_take_the_shared_parts_from_models_tracking():
    """The tracking interface, Siamese forward, neck and predictor live in models/tracking.py: no
    module reaches into the LightTrack file for them."""
    shared = {"CachedTemplate", "TrackingNet", "CorrelationNeck", "PositionNorm", "Predictor"}
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[-1] == "lighttrack":
                wrong += [f"{path.relative_to(ROOT)}: {a.name}" for a in node.names if a.name in shared]
    assert wrong == []


def test_user_commands_and_benchmarks_are_apart():
    assert sorted(p.name for p in (ROOT / "tools").glob("bench*.py")) == []
    assert {"inference.py", "ranking.py", "search.py"} <= {p.name for p in (ROOT / "benchmarks").glob("*.py")}
