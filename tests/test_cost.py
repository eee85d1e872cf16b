"""Cost model: the per-op table agrees with full fvcore counts; tools/cost.py prints them."""
import json
import subprocess
import sys

import pytest

from lighttrack_nas.cost import CostTable, count_tracking_model
from lighttrack_nas.cost.latency import LatencyTable
from lighttrack_nas.models import build_supernet
from lighttrack_nas.space import get_format
from lighttrack_nas.train import experiment_space, load_experiment

from conftest import ROOT


@pytest.fixture(scope="module")
def tiny(tiny_space):
    net = build_supernet(tiny_space)
    return net, CostTable(net)


def test_table_equals_full_fvcore_count(tiny, tiny_space):
    net, table = tiny
    archs = [tiny_space.sample(s) for s in range(6)] + [tiny_space.sample(0).replace({"out": "s2b0"})]
    for arch in archs:
        fast, full = table.cost(arch), count_tracking_model(net.extract(arch))
        assert (fast.macs, fast.params, fast.template_macs) == (full.macs, full.params, full.template_macs)
        assert fast.parts["backbone"]["params"] == full.parts["backbone"]["params"]
        assert fast.parts["head"]["params"] == full.parts["cls_tower"]["params"] + full.parts["reg_tower"]["params"]
        assert fast.parts["neck"]["macs"] == full.parts["norm"]["macs"] + full.parts["neck"]["macs"]


def test_counting_leaves_the_model_mode_alone(tiny, tiny_space):
    sub = tiny[0].extract(tiny_space.sample(0))
    for mode in (False, True):
        sub.train(mode)
        count_tracking_model(sub)
        assert all(m.training is mode for m in sub.modules())


def test_latency_table_leaves_the_supernet_mode_alone(micro_config):
    net = build_supernet(experiment_space(load_experiment(micro_config)))
    for mode in (True, False):
        net.train(mode)
        LatencyTable.build(net, min_run_time=0.001, fit_subnets=0)
        assert all(m.training is mode for m in net.modules())


def test_cost_grows_with_the_architecture(tiny, tiny_space):
    _, table = tiny
    small = tiny_space.decode("s1:k3e4-k3e4|s2:k3e4-k3e4-k3e4-k3e4|s3:k3e4-k3e4-k3e4-k3e4|s4:k3e4-k3e4-k3e4-k3e4"
                              "|out:s3b0|cls_w:128|cls:k3-skip-skip-skip-skip-skip-skip-skip|reg_w:128"
                              "|reg:k3-skip-skip-skip-skip-skip-skip-skip")
    big = tiny_space.decode("s1:k7e6-k7e6|s2:k7e6-k7e6-k7e6-k7e6|s3:k7e6-k7e6-k7e6-k7e6|s4:k7e6-k7e6-k7e6-k7e6"
                            "|out:s4b3|cls_w:256|cls:k5-k5-k5-k5-k5-k5-k5-k5|reg_w:256|reg:k5-k5-k5-k5-k5-k5-k5-k5")
    assert table.macs(small) < table.macs(big) / 3 and table.params(small) < table.params(big) / 3
    # layers after the output position cost nothing
    assert table.cost(small) == table.cost(small.replace({"s4.3": "k7e6", "s3.3": "k7e6"}))


def _cost_tool(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "cost.py"), *args], capture_output=True, text=True,
                          cwd=ROOT)


def test_cost_tool_json_for_preset_and_published_string(space):
    out = _cost_tool("--space", "search_spaces/lighttrack.yaml", "--arch", "lighttrack-mobile", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert all(isinstance(data[k], int) for k in ("macs", "params", "template_macs"))
    assert abs(data["macs"] - 530e6) / 530e6 < 0.01 and abs(data["params"] - 1.97e6) / 1.97e6 < 0.01
    assert set(data["parts"]) == {"backbone", "neck", "head"}
    assert sum(p["macs"] for p in data["parts"].values()) == data["macs"]
    published = get_format("lighttrack").encode(space.presets["lighttrack-mobile"])
    again = json.loads(_cost_tool("--arch", published, "--json").stdout)
    assert again["macs"] == data["macs"] and again["arch"] == data["arch"]


def test_cost_tool_table_and_errors():
    out = _cost_tool("--space", "search_spaces/lighttrack_tiny.yaml", "--sample", "2", "--seed", "3")
    assert out.returncode == 0 and out.stdout.count("per frame") == 2 and "backbone" in out.stdout
    bad = _cost_tool("--arch", "s1:k3e4-k9e9")
    assert bad.returncode == 2 and "allowed values: k3e4" in bad.stderr and "Traceback" not in bad.stderr


def test_latency_tool_samples_subnets(tiny_space):
    """``tools/latency.py --sample N --crops T S``: measured latency quartiles and the median MACs of
    the same uniform samples the space draws with that seed, at the given crops."""
    import numpy as np

    tool = [sys.executable, str(ROOT / "tools" / "latency.py"), "--space", "search_spaces/lighttrack_tiny.yaml"]
    out = subprocess.run([*tool, "--sample", "2", "--crops", "32", "64", "--seed", "4", "--json"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    sample = json.loads(out.stdout)["sample"]
    assert sample["count"] == 2 and 0 < sample["q25_ms"] <= sample["median_ms"] <= sample["q75_ms"]
    space = tiny_space.from_dict(tiny_space.to_dict())
    space.settings.update(template_size=32, search_size=64)
    table, rng = CostTable(build_supernet(space)), np.random.default_rng(4)
    assert sample["median_macs"] == pytest.approx(np.median([table.cost(space.sample(rng)).macs for _ in range(2)]))
    out = subprocess.run(tool, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "--sample N" in out.stderr
