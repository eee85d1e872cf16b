"""Search-space API: parsing, round trips, validation errors, operators, constraints."""
import json
import math

import numpy as np
import pytest
import yaml

from lighttrack_nas.space import Constraint, ConstraintError, SearchSpace, SpaceError, get_format

MOBILE = "back_04502514044521042540+cls_211000022+reg_100000111_ops_32"


def test_lighttrack_space_is_the_published_one(space):
    backbone = [c for c in space.choices if c.group in {"s1", "s2", "s3", "s4"}]
    assert [len([c for c in backbone if c.group == g]) for g in ("s1", "s2", "s3", "s4")] == [2, 4, 4, 4]
    assert all(c.values == ("k3e4", "k3e6", "k5e4", "k5e6", "k7e4", "k7e6") for c in backbone)
    assert len(space.choice("out").values) == 12
    for tower in ("cls", "reg"):
        assert space.choice(f"{tower}_w").values == (128, 192, 256)
        layers = [c for c in space.choices if c.group == tower]
        assert len(layers) == 8
        assert layers[0].values == ("k3", "k5") and all(c.values == ("k3", "k5", "skip") for c in layers[1:])
    assert space.cardinality == 6**14 * 12 * (3 * 2 * 3**7) ** 2
    assert space.ops["k5e6"] == {"type": "mbconv", "kernel": 5, "expand": 6, "se": 0.25}


def test_published_mobile_string_decodes_as_published(space):
    arch = space.decode(MOBILE)
    assert arch == space.presets["lighttrack-mobile"]
    assert [arch[f"s1.{i}"] for i in range(2)] == ["k7e4", "k7e6"]
    assert [arch[f"s4.{i}"] for i in range(4)] == ["k7e6", "k5e4", "k3e6", "k3e4"]
    assert arch["cls_w"] == 256 and arch["reg_w"] == 192 and arch["out"] == "s4b2"
    assert [arch[f"cls.{i}"] for i in range(8)] == ["k5", "k5", "k3", "k3", "k3", "k3", "skip", "skip"]
    assert [arch[f"reg.{i}"] for i in range(8)] == ["k3"] * 5 + ["k5"] * 3


@pytest.mark.parametrize("seed", range(5))
def test_round_trips_compact_json_published(space, seed):
    arch = space.sample(seed)
    assert space.decode(str(arch)) == arch
    assert space.decode(arch.to_json()) == arch
    assert space.from_json(json.loads(arch.to_json())) == arch
    published = get_format("lighttrack").encode(arch)
    assert published.startswith("back_0") and space.decode(published) == arch


def test_equality_hash_and_dedup(space):
    a, b = space.sample(3), space.sample(3)
    assert a is not b and a == b and hash(a) == hash(b) and len({a, b}) == 1
    c = a.replace({"cls_w": 128 if a["cls_w"] != 128 else 192})
    assert c != a and len({a, c}) == 2


def test_tiny_space_shares_labels_and_accepts_archs_of_the_full_space(space, tiny_space):
    assert tiny_space.labels == space.labels
    arch = space.sample(7)
    assert str(tiny_space.decode(str(arch))) == str(arch)
    assert tiny_space.settings["search_size"] == 128 and space.settings["search_size"] == 256


@pytest.mark.parametrize("text, fragment", [
    ("s1:k3e4-k9e9", "s1.1: 'k9e9' is not allowed; allowed values: k3e4, k3e6, k5e4, k5e6, k7e4, k7e6"),
    ("s1:k3e4", "group 's1' has 1 values, expected 2"),
    ("bogus:1", "unknown group 'bogus'"),
    ("nonsense", "is not 'group:tokens'"),
    ("back_0450+cls_211000022+reg_100000111_ops_32", "backbone has 4 digits, expected 20"),
    ("back_04502514044521042540+cls_211000022+reg_100000111_ops_37", "out: digit ops_37 is out of range"),
    ("back_04502514044521042540+cls_281000022+reg_100000111_ops_32", "cls.0: digit 8 is out of range"),
    ('{"choices": {"s1.0": "k3e4"}}', "missing labels"),
    ("{not json", "architecture JSON is malformed"),
])
def test_bad_architecture_strings_name_the_problem(space, text, fragment):
    with pytest.raises(SpaceError) as err:
        space.decode(text)
    assert fragment in str(err.value)


def test_validate_names_label_value_and_allowed(space):
    values = dict(space.sample(0))
    values["cls_w"] = 100
    with pytest.raises(SpaceError, match=r"cls_w: '100' is not allowed; allowed values: 128, 192, 256"):
        space.validate(values)
    values["cls_w"] = "192"  # tokens are accepted for typed values
    assert space.validate(values)["cls_w"] == 192


@pytest.mark.parametrize("spec, fragment", [
    ({"name": "x", "choices": [{"name": "a", "valus": [1]}]}, "choices[0]: unknown field(s) ['valus']"),
    ({"name": "x", "choices": [{"name": "a", "values": []}]}, "'values' must be a non-empty list"),
    ({"name": "x", "choices": [{"name": "a", "values": [1], "kind": "colour"}]}, "kind 'colour' is not one of"),
    ({"name": "x", "choices": [{"name": "a", "values": ["p", "p"]}]}, "duplicate values"),
    ({"name": "x", "choices": [{"name": "a", "values": ["p-q"]}]}, "reserved characters"),
    ({"name": "x", "choices": [{"name": "a", "kind": "op", "values": ["conv"]}]}, "op 'conv' is not declared under 'ops'"),
    ({"name": "x", "choices": [{"name": "a", "values": [1], "repeat": 0}]}, "'repeat' must be a positive integer"),
    ({"name": "x", "choices": [], "colour": 1}, "unknown top-level field(s) ['colour']"),
    ({"choices": []}, "fields 'name' and 'choices' are required"),
])
def test_bad_space_definitions_name_the_field(spec, fragment):
    with pytest.raises(SpaceError) as err:
        SearchSpace.from_dict(spec, source="toy.yaml")
    assert fragment in str(err.value)


def test_malformed_yaml_and_extends(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nchoices: [\n")
    with pytest.raises(SpaceError, match=r"bad.yaml: malformed YAML"):
        SearchSpace.from_yaml(bad)
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(
        {"name": "base", "settings": {"a": 1, "b": {"c": 2, "d": 3}}, "choices": [{"name": "x", "values": [1, 2]}]}))
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nname: child\nsettings: {b: {d: 4}}\n")
    child = SearchSpace.from_yaml(tmp_path / "child.yaml")
    assert child.name == "child" and child.settings == {"a": 1, "b": {"c": 2, "d": 4}} and child.labels == ["x"]
    with pytest.raises(SpaceError, match="cannot read"):
        SearchSpace.from_yaml(tmp_path / "missing.yaml")


def test_sampling_is_seeded_uniform_and_in_space(space):
    assert space.sample(11) == space.sample(11)
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(600)]
    for arch in archs[:50]:
        assert space.validate(dict(arch)) == arch
    counts = np.bincount([space.choice("out").values.index(a["out"]) for a in archs], minlength=12)
    assert counts.min() > 25 and counts.max() < 80  # about 50 each
    assert len(set(archs)) == len(archs)


def test_mutation_probability_and_validity(space):
    rng = np.random.default_rng(0)
    arch = space.sample(rng)
    assert space.mutate(arch, 0.0, rng) == arch
    every = space.mutate(arch, 1.0, rng)
    assert all(every[label] != arch[label] for label in space.labels)
    changed = [sum(m[l] != arch[l] for l in space.labels) for m in (space.mutate(arch, 0.1, rng) for _ in range(300))]
    assert 0.07 * len(space) < np.mean(changed) < 0.13 * len(space)


def test_crossover_takes_every_gene_from_a_parent(space):
    rng = np.random.default_rng(1)
    a, b = space.sample(rng), space.sample(rng)
    children = [space.crossover(a, b, rng) for _ in range(50)]
    for child in children:
        assert all(child[l] in (a[l], b[l]) for l in space.labels)
    differing = [l for l in space.labels if a[l] != b[l]]
    from_a = np.mean([np.mean([c[l] == a[l] for l in differing]) for c in children])
    assert 0.4 < from_a < 0.6


def test_constraints_filter_and_unreachable_budget_reports_minimum():
    space = SearchSpace.from_dict({"name": "toy", "choices": [{"name": "w", "repeat": 3, "values": [1, 2, 3]}]})
    total = Constraint("width", lambda a: sum(a[l] for l in space.labels), limit=4)
    for seed in range(20):
        assert total(space.sample(seed, [total]))
    impossible = Constraint("width", total.cost, limit=2)
    with pytest.raises(ConstraintError) as err:
        space.sample(0, [impossible], max_attempts=50)
    msg = str(err.value)
    assert "50 attempts" in msg and "smallest achievable about 3" in msg and "w:1-1-1" in msg
    parent = space.decode("w:1-1-2")
    assert total(space.mutate(parent, 0.9, 0, [total]))
    with pytest.raises(ConstraintError):
        space.crossover(parent, parent, 0, [impossible], max_attempts=5)


def test_cardinality_is_exact_product():
    space = SearchSpace.from_dict({"name": "toy", "choices": [
        {"name": "a", "repeat": 2, "values": [1, 2, 3]}, {"name": "b", "values": ["x", "y"]}]})
    assert space.cardinality == 18 == math.prod([3, 3, 2])
    assert len({space.sample(s) for s in range(400)}) == 18
