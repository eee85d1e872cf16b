"""Cost model: the per-op table agrees with full fvcore counts; tools/cost.py prints them."""
import json
import subprocess
import sys

import numpy as np
import pytest

from lighttrack_nas.cost import CostTable, count_tracking_model
from lighttrack_nas.cost.latency import LatencyTable
from lighttrack_nas.models import build_supernet
from lighttrack_nas.space import get_format
from lighttrack_nas.config import load_experiment
from lighttrack_nas.space import experiment_space

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


def test_latency_model_recovers_an_additive_latency_and_refuses_too_few_subnets(micro_config):
    """Fitted on subnets whose 'measured' time is a known non-negative function of their per-block
    MACs, the model predicts held-out subnets to within 2 %; with fewer than 10 subnets it refuses."""
    import numpy as np

    from lighttrack_nas.cost.latency import random_architectures
    from lighttrack_nas.cost.predictor import LatencyModel

    net = build_supernet(experiment_space(load_experiment(micro_config)))
    featurize = LatencyModel.featurizer(net)
    rate = {"macs:k7e6": 3.0, "macs:k3e4": 1.0, "macs:cls:k5": 2.0, "ops": 0.05, "const": 0.5}

    def seconds(arch):
        feats = featurize(arch)
        return 1e-3 * (sum(rate.get(k, 0.0) * v for k, v in feats.items()) + 0.2 * feats["macs"])

    train, held_out = random_architectures(net, 60, 0), random_architectures(net, 20, 1)
    model = LatencyModel.fit(net, train, [seconds(a) for a in train], {"backend": "torch", "threads": 1})
    errors = [abs(model.predict(a) - seconds(a)) / seconds(a) for a in held_out]
    assert max(errors) < 0.02 and (model.weights >= 0).all()
    with pytest.raises(ValueError, match="at least 10"):
        LatencyModel.fit(net, train[:9], [seconds(a) for a in train[:9]])


def test_validation_timings_are_medians_of_interleaved_rounds(micro_config, monkeypatch):
    import lighttrack_nas.cost.latency as latency

    net = build_supernet(experiment_space(load_experiment(micro_config)))
    # rounds 0, 2, 4 make the first timing, rounds 1, 3, 5 the second
    rounds = np.array([[1.0, 2.0], [5.0, 5.0], [3.0, 4.0], [6.0, 9.0], [2.0, 3.0], [7.0, 6.0]]) * 1e-3
    asked = []

    def fake_time_subnets(supernet, archs, threads, backend, count, min_run_time, progress):
        asked.append(count)
        return rounds

    class Fixed:
        meta = {"backend": "torch"}

        def predict(self, arch):
            return 2e-3

    monkeypatch.setattr(latency, "time_subnets", fake_time_subnets)
    result = latency.validate_table(Fixed(), net, count=2, repeats=3)
    assert asked == [6] and result["repeats"] == 3
    assert [p["measured_ms"] for p in result["pairs"]] == pytest.approx([2.0, 3.0])
    assert [p["remeasured_ms"] for p in result["pairs"]] == pytest.approx([6.0, 6.0])
    assert result["within_10pct"] == 0.5  # 2 ms predicted: exact for the first, 33 % off for the second
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        latency.validate_table(Fixed(), net, count=2, repeats=0)


def test_latency_model_build_save_load_and_validate(micro_config, tmp_path):
    """The fit / validate cycle on micro subnets: timed whole, saved, loaded back by the generic
    loader (same predictions), validated against two interleaved timings (the noise floor)."""
    from lighttrack_nas.cost.latency import validate_table
    from lighttrack_nas.cost.predictor import LatencyModel, load_latency_predictor

    net = build_supernet(experiment_space(load_experiment(micro_config)))
    model = LatencyModel.build(net, fit_subnets=10, min_run_time=0.005)
    assert model.meta["backend"] == "torch" and model.meta["fit_subnets"] == 10
    model.save(tmp_path / "model.json")
    loaded = load_latency_predictor(tmp_path / "model.json")
    assert isinstance(loaded, LatencyModel)
    with pytest.raises(RuntimeError, match="bind"):
        loaded.predict(net.space.sample(0))
    loaded.bind(net)
    archs = [net.space.sample(s) for s in range(3)]
    assert [loaded.predict(a) for a in archs] == pytest.approx([model.predict(a) for a in archs])
    result = validate_table(loaded, net, count=3, min_run_time=0.005)
    assert result["count"] == 3 and len(result["pairs"]) == 3
    assert 0.0 <= result["within_10pct"] <= 1.0 and 0.0 <= result["noise_floor"]["within_10pct"] <= 1.0
    assert all(p["measured_ms"] > 0 and p["remeasured_ms"] > 0 for p in result["pairs"])
    LatencyTable.build(net, min_run_time=0.001, fit_subnets=0).save(tmp_path / "lut.json")
    assert isinstance(load_latency_predictor(tmp_path / "lut.json"), LatencyTable)
    (tmp_path / "bad.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="not a latency predictor"):
        load_latency_predictor(tmp_path / "bad.json")
