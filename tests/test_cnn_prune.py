"""The dense CNN tracker (family cnn) and its pruning: shapes, tracker, checkpoints, budgets, slimming."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lighttrack_nas.compress import BudgetError, MinWidths, check_budget, measure, prune_checkpoint, prune_to_budget
from lighttrack_nas.data.sources import load_split
from lighttrack_nas.deploy import inference_model
from lighttrack_nas.models import SiameseCNN, build_model, build_supernet, load_tracking_model, read_checkpoint
from lighttrack_nas.tracker import Tracker
from lighttrack_nas.train.baseline import BaselineTrainer
from lighttrack_nas.train.trainer import training_memory_format
from lighttrack_nas.config import load_experiment
from lighttrack_nas.space import experiment_space

ROOT = Path(__file__).resolve().parents[1]
MICRO_CNN = {"family": "cnn", "template_size": 32, "search_size": 64, "cls_scale": 1.0, "reg_scale": 8,
             "widths": {"stem": 8, "stages": [{"stride": 2, "out": 16, "blocks": [[16]]},
                                              {"stride": 2, "out": 24, "blocks": [[24], [24]]},
                                              {"stride": 2, "out": 32, "blocks": [[16, 16]]}],  # bottleneck
                        "neck": 8, "cls_tower": [16, 16], "reg_tower": [16]}}


@pytest.fixture(scope="module")
def cnn_config(micro_config, tmp_path_factory):
    """The micro experiment with a micro CNN and a prune section (2-iteration trainings)."""
    cfg = yaml.safe_load(Path(micro_config).read_text())
    cfg["model"] = MICRO_CNN
    cfg["train"].update({"epochs": 1, "iters_per_epoch": 2, "batch_size": 2, "freeze_backbone_epochs": 0,
                         "checkpoint_every": 1})
    short = {"epochs": 1, "iters_per_epoch": 2}
    cfg["prune"] = {"min_width": 2, "sparsity": {"l1": 1e-3, "train": short}, "finetune": {"train": short},
                    "latency": {"threads": 1, "min_run_time": 0.01}}
    path = tmp_path_factory.mktemp("cnn") / "cnn_micro.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def dense_checkpoint(cnn_config, tmp_path_factory):
    """tools/train_baseline.py, two iterations."""
    out = tmp_path_factory.mktemp("dense")
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "train_baseline.py"), "--config", str(cnn_config),
                           "--out", str(out), "--no-progress"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out / "checkpoint.pt"


def _model(seed: int = 0) -> SiameseCNN:
    torch.manual_seed(seed)
    return build_model(MICRO_CNN).eval()


def _outputs(model, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    z, x = torch.randn(2, 3, 32, 32, generator=g), torch.randn(2, 3, 64, 64, generator=g)
    with torch.no_grad():
        return model.eval()(z, x)


def test_shapes_match_the_lighttrack_subnet_and_the_tracker_runs_it(micro_config):
    cfg = load_experiment(micro_config)
    space = experiment_space(cfg)
    subnet = build_supernet(space).extract(space.sample(0)).eval()
    cnn = _model()
    for attr in ("template_size", "search_size", "stride", "score_size"):
        assert getattr(cnn, attr) == getattr(subnet, attr)
    assert [t.shape for t in _outputs(cnn)] == [t.shape for t in _outputs(subnet)] == [(2, 1, 4, 4), (2, 4, 4, 4)]
    seq = load_split(cfg["data"], "val")[0]
    for model in (cnn, inference_model(cnn)):  # training form and the fused deployment form
        boxes, times = Tracker(model).track_sequence(seq)
        assert boxes.shape == (len(seq), 4) and torch.isfinite(torch.from_numpy(boxes)).all() and len(times) == len(seq)


def test_spec_round_trip_and_clear_width_errors():
    model = _model()
    assert model.spec() == {**MICRO_CNN, "attention_reduction": 1}
    bad = {**MICRO_CNN, "widths": {**MICRO_CNN["widths"], "stem": 0}}
    with pytest.raises(ValueError, match=r"model.widths.stem: expected a positive integer"):
        build_model(bad)
    with pytest.raises(ValueError, match=r"model.family: 'resnet' is not one of \['cnn', 'hybrid', 'lighttrack_net', 'vit'\]"):
        build_model({**MICRO_CNN, "family": "resnet"})


def test_checkpoint_round_trip_with_weights_only(dense_checkpoint):
    data = torch.load(dense_checkpoint, map_location="cpu", weights_only=True)
    assert data["kind"] == "cnn" and data["model_spec"]["widths"] == MICRO_CNN["widths"]
    model = load_tracking_model(dense_checkpoint, None)
    reference = build_model(data["model_spec"])
    reference.load_state_dict(data["model"])
    for a, b in zip(_outputs(model), _outputs(reference)):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="takes no --arch"):
        load_tracking_model(dense_checkpoint, "some-arch")


@pytest.mark.parametrize("budget", [0.5, 0.05])
def test_pruning_meets_the_budget_and_reloads_from_its_widths(budget):
    model = _model()
    result = prune_to_budget(model, budget, "macs", "magnitude", MinWidths(1), progress=False)
    assert 0 < result.pruned["macs"] <= budget * result.dense["macs"]
    assert result.pruned == measure(model) and result.pruned["params"] < result.dense["params"]
    spec = model.spec()
    assert spec["widths"]["neck"] == MICRO_CNN["widths"]["neck"]
    assert [p.conv.out_channels for p in model.predictors] == [1, 4]
    outputs = _outputs(model)
    assert [t.shape for t in outputs] == [(2, 1, 4, 4), (2, 4, 4, 4)]
    rebuilt = build_model(spec)
    rebuilt.load_state_dict(model.state_dict())
    for a, b in zip(outputs, _outputs(rebuilt)):
        assert torch.equal(a, b)


def test_pruned_networks_train_in_contiguous_layout(micro_config):
    # odd pruned channel counts abort oneDNN's channels-last convolution backward (torch 2.13 CPU)
    model = _model()
    assert training_memory_format(model, True) == torch.channels_last
    assert training_memory_format(model, False) == torch.contiguous_format
    prune_to_budget(model, 0.3, "macs", "magnitude", MinWidths(1), progress=False)
    assert training_memory_format(model, True) == torch.contiguous_format
    space = experiment_space(load_experiment(micro_config))
    # its 1x1 neck conv takes 4 or 16 correlation channels: not a spatial conv, channels-last kept
    assert training_memory_format(build_supernet(space), True) == torch.channels_last


def test_params_budget_and_slimming_criterion():
    model = _model()
    result = prune_to_budget(model, 0.3, "params", "slimming", MinWidths(1), progress=False)
    assert result.pruned["params"] <= 0.3 * result.dense["params"]


def test_a_layer_normalised_slimming_threshold_keeps_a_part_whose_scales_are_all_small():
    """The global threshold empties the towers whose BatchNorm scales all sit below the backbone's
    (issue 29's collapsed baseline); prune.normalizer mean ranks each layer against itself."""
    widths = {}
    for normalizer in ("none", "mean"):
        model, g = _model(), torch.Generator().manual_seed(0)
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                scale = 0.01 if "tower" in name else 1.0
                module.weight.data = scale * (0.5 + torch.rand(module.num_features, generator=g))
        prune_to_budget(model, 0.6, "macs", "slimming", MinWidths(2), progress=False, normalizer=normalizer)
        widths[normalizer] = model.spec()["widths"]["cls_tower"] + model.spec()["widths"]["reg_tower"]
    assert all(w == 2 for w in widths["none"])
    assert min(widths["mean"]) > 2
    with pytest.raises(ValueError, match=r"prune.normalizer: 'median' is not one of \['none', 'mean', 'max'\]"):
        prune_to_budget(_model(), 0.6, "macs", "slimming", progress=False, normalizer="median")


def test_minimum_widths_are_respected():
    mins = MinWidths(3, (("backbone.0.*", 6), ("cls_tower.*", 5)))
    dense, smallest = check_budget(_model(), 0.5, "macs", mins)
    model = _model()  # a budget of exactly the smallest cost forces every group to its minimum
    prune_to_budget(model, (smallest["macs"] + 0.5) / dense["macs"], "macs", "magnitude", mins, progress=False)
    w = model.spec()["widths"]
    assert w["stem"] == 6 and all(c == 5 for c in w["cls_tower"]) and all(c == 3 for c in w["reg_tower"])
    assert all(s["out"] == 3 and all(c == 3 for b in s["blocks"] for c in b) for s in w["stages"])


def test_unreachable_budget_names_the_budget_and_the_smallest_cost(cnn_config, dense_checkpoint, tmp_path):
    with pytest.raises(BudgetError, match=r"budget 1e-06 .* smallest achievable is [0-9.]+ M macs"):
        prune_to_budget(_model(), 1e-6, progress=False)
    cfg = load_experiment(cnn_config)
    with pytest.raises(BudgetError, match="budget 1e-06"):
        prune_checkpoint(cfg, dense_checkpoint, tmp_path, 1e-6, criterion="slimming", progress=False)
    assert not (tmp_path / "sparsity").exists()  # refused before any training


def test_slimming_l1_shrinks_batchnorm_scales(cnn_config, tmp_path):
    cfg = load_experiment(cnn_config)
    scales = {}
    for l1 in (0.0, 0.05):
        trainer = BaselineTrainer(cfg, tmp_path / str(l1), MICRO_CNN, _model().state_dict(), bn_l1=l1, progress=False)
        trainer.train()
        scales[l1] = torch.cat([w.detach().abs() for w in trainer.bn_scales])
    shrink = scales[0.0] - scales[0.05]  # same seed and data: the L1 term is the only difference
    assert shrink.min() > 0 and shrink.mean() > 1e-5


def test_prune_tool_end_to_end_and_resume(cnn_config, dense_checkpoint, tmp_path):
    out = tmp_path / "pruned"
    cmd = [sys.executable, str(ROOT / "tools" / "prune.py"), "--config", str(cnn_config), "--checkpoint",
           str(dense_checkpoint), "--budget", "0.3", "--criterion", "slimming", "--out", str(out), "--no-progress"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "prune.json").read_text())
    assert report["criterion"] == "slimming" and report["budget_kind"] == "macs"
    assert report["achieved"]["macs"] <= 0.3 and report["pruned"]["macs"] < report["dense"]["macs"]
    assert report["sparsity"] == {"l1": 1e-3, "iterations": 2, "batch_size": 2}
    assert report["finetune"] == {"iterations": 2, "batch_size": 2}
    assert report["dense"]["latency_ms"] > 0 and report["pruned"]["latency_ms"] > 0
    data = read_checkpoint(out / "checkpoint.pt")
    assert data["kind"] == "cnn" and data["model_spec"]["widths"] == report["pruned"]["widths"]
    model = load_tracking_model(out / "checkpoint.pt", None)
    assert measure(model)["macs"] == report["pruned"]["macs"]
    assert [t.shape for t in _outputs(model)] == [(2, 1, 4, 4), (2, 4, 4, 4)]
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 2 and "--resume" in again.stderr
    cfg = load_experiment(cnn_config)
    resumed = prune_checkpoint(cfg, dense_checkpoint, out, 0.3, criterion="slimming", resume=True, progress=False)
    assert resumed["pruned"]["widths"] == report["pruned"]["widths"]
    with pytest.raises(ValueError, match="was pruned for"):
        prune_checkpoint(cfg, dense_checkpoint, out, 0.5, criterion="slimming", resume=True, progress=False)


# ---------------------------------------------------------------- a LightTrack subnet as a dense family


@pytest.fixture(scope="module")
def lighttrack_config(micro_config, tmp_path_factory):
    """The micro experiment whose model is the space's largest subnet (family lighttrack_net), from
    the ImageNet start, with a prune section (2-iteration trainings)."""
    cfg = yaml.safe_load(Path(micro_config).read_text())
    cfg["model"] = {"family": "lighttrack_net", "arch": "largest"}
    cfg["train"].update({"epochs": 1, "iters_per_epoch": 2, "batch_size": 2, "freeze_backbone_epochs": 0,
                         "checkpoint_every": 1, "pretrained_backbone": "efficientnet-lite0"})
    short = {"epochs": 1, "iters_per_epoch": 2}
    cfg["prune"] = {"sparsity": {"l1": 1e-3, "train": short}, "finetune": {"train": short},
                    "latency": {"threads": 1, "min_run_time": 0.01}}
    path = tmp_path_factory.mktemp("ltn") / "lighttrack_micro.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_lighttrack_net_spec_resolves_the_experiment_space_and_the_largest_architecture(lighttrack_config):
    from lighttrack_nas.cost import CostTable
    from lighttrack_nas.train.baseline import model_spec

    cfg = load_experiment(lighttrack_config)
    spec = model_spec(cfg)
    space = experiment_space(cfg)
    assert spec["space"] == space.to_dict() and space.settings["search_size"] == 64
    table = CostTable(build_supernet(space))
    macs = table.macs(space.decode(spec["arch"]))
    assert all(table.macs(space.sample(s)) <= macs for s in range(20))
    assert build_model(spec).spec() == {**spec, "channels": {}}   # the dense network: nothing differs


def test_a_pruned_lighttrack_subnet_reloads_from_its_spec(lighttrack_config):
    space = experiment_space(load_experiment(lighttrack_config))
    torch.manual_seed(0)
    net = build_supernet(space).extract(space.sample(3)).eval()
    result = prune_to_budget(net, 0.5, "macs", "magnitude", progress=False)
    assert result.pruned["macs"] <= 0.5 * result.dense["macs"]
    spec = net.spec()
    assert spec["channels"] and all(k.startswith(("backbone.", "norm.", "cls_tower.", "reg_tower."))
                                    for k in spec["channels"])  # the neck and the predictors' outputs are kept
    assert net.neck.adjust.out_channels == space.settings["neck_channels"]
    rebuilt = build_model(spec)
    rebuilt.load_state_dict(net.state_dict())
    z, x = torch.randn(1, 3, net.template_size, net.template_size), torch.randn(1, 3, net.search_size, net.search_size)
    with torch.no_grad():
        for a, b in zip(net(z, x), rebuilt.eval()(z, x)):
            assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"model.channels\['backbone.nope'\]"):
        build_model({**spec, "channels": {"backbone.nope": [1, 1, 1]}})
    with pytest.raises(ValueError, match=r"expected 3 positive integers"):
        build_model({**spec, "channels": {"backbone.0.0": [3, 0]}})


def test_pruning_counts_macs_exactly_only_near_the_budget(lighttrack_config, monkeypatch):
    """Between fvcore counts the MACs are estimated from the layer widths (LayerMacs); the budget is
    still met exactly and the network lands just under it."""
    import lighttrack_nas.compress.prune as prune_module
    from lighttrack_nas.cost.count import LayerMacs, frame_macs

    from lighttrack_nas.train.baseline import model_spec

    torch.manual_seed(0)
    net = build_model(model_spec(load_experiment(lighttrack_config))).eval()
    layers, exact = LayerMacs(net), frame_macs(net)
    assert 0.9 * exact < layers() <= exact  # the convolutions are nearly all of it
    counts, cnn = [], _model()
    monkeypatch.setattr(prune_module, "frame_macs", lambda m: counts.append(1) or frame_macs(m))
    result = prune_to_budget(cnn, 0.3, "macs", "magnitude", MinWidths(1), progress=False)
    assert 0.28 < result.ratio("macs") <= 0.3 and result.pruned["macs"] == frame_macs(cnn)
    assert len(counts) - 2 < result.steps / 2, (len(counts), result.steps)  # 2: the dense and smallest counts


def test_lighttrack_net_trains_from_the_imagenet_start_prunes_and_fine_tunes(lighttrack_config, tmp_path):
    from lighttrack_nas.models.pretrained import init_backbone
    from lighttrack_nas.train.baseline import model_spec

    cfg = load_experiment(lighttrack_config)
    spec = model_spec(cfg)
    space = experiment_space(cfg)
    fresh, donor = build_model(spec), build_supernet(space)
    init_backbone(fresh, "efficientnet-lite0")
    init_backbone(donor, "efficientnet-lite0")  # the supernet's own transfer, then the same path
    expected, got = donor.extract(space.decode(spec["arch"])).state_dict(), fresh.state_dict()
    for name, _ in fresh.backbone.named_parameters():
        if ".se.reduce." in name:  # random by design: the transfer's SE gate is neutral through zero expand weights
            continue
        assert torch.equal(got[f"backbone.{name}"], expected[f"backbone.{name}"])

    dense = tmp_path / "dense"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "train_baseline.py"), "--config", str(lighttrack_config),
                           "--out", str(dense), "--no-progress"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert read_checkpoint(dense / "checkpoint.pt")["kind"] == "lighttrack_net"
    report = prune_checkpoint(cfg, dense / "checkpoint.pt", tmp_path / "pruned", 0.5, progress=False)
    assert report["criterion"] == "slimming" and report["achieved"]["macs"] <= 0.5
    assert report["pruned"]["widths"]["arch"] == spec["arch"] and report["pruned"]["widths"]["channels"]
    model = load_tracking_model(tmp_path / "pruned" / "checkpoint.pt", None)
    assert measure(model)["macs"] == report["pruned"]["macs"]
