"""Pruning of the transformer families (vit, hybrid): ViT-Slim masks folded and removed physically,
budgets, scopes, minimum widths, torch-pruning's heads, settings per family, the whole run."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lighttrack_nas.compress import (BudgetError, MinWidths, PruneSettings, SlimTrainer, TransformerMinWidths,
                                     fold_gates, measure, prune_checkpoint, prune_model, slim_to_budget,
                                     torch_prune_to_budget)
from lighttrack_nas.compress.vit_prune import check_transformer_budget, gates
from lighttrack_nas.config import ConfigError
from lighttrack_nas.models import build_model, load_tracking_model, read_checkpoint
from lighttrack_nas.models.transformer import Attention, Mlp
from lighttrack_nas.config import load_experiment

from test_transformer import MICRO_HYBRID, MICRO_VIT

ROOT = Path(__file__).resolve().parents[1]
SPECS = {"vit": MICRO_VIT, "hybrid": MICRO_HYBRID}


def _config(micro_config, directory: Path, model: dict) -> Path:
    cfg = yaml.safe_load(Path(micro_config).read_text())
    cfg["model"] = model
    cfg["train"].update({"epochs": 1, "iters_per_epoch": 2, "batch_size": 2, "freeze_backbone_epochs": 0,
                         "checkpoint_every": 1})
    short = {"epochs": 1, "iters_per_epoch": 2}
    cfg["prune"] = {"sparsity": {"l1": 1e-3, "attn_l1": 0.05, "mlp_l1": 0.05, "embed_l1": 0.05, "train": short},
                    "finetune": {"train": short}, "latency": {"threads": 1, "min_run_time": 0.01}}
    path = directory / f"{model['family']}_micro.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def vit_config(micro_config, tmp_path_factory):
    return _config(micro_config, tmp_path_factory.mktemp("vit"), MICRO_VIT)


@pytest.fixture(scope="module")
def dense_checkpoint(tmp_path_factory):
    """A micro ViT checkpoint as tools/train_baseline.py writes one (kind, model_spec, weights)."""
    path = tmp_path_factory.mktemp("dense") / "checkpoint.pt"
    model = _model("vit")
    torch.save({"kind": "vit", "model_spec": model.spec(), "model": model.state_dict()}, path)
    return path


def _model(family: str, gated: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    return build_model({**SPECS[family], **({"gates": True} if gated else {})}).eval()


def _inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 3, 32, 32, generator=g), torch.randn(2, 3, 64, 64, generator=g)


def _outputs(model):
    with torch.no_grad():
        return model.eval()(*_inputs())


def _randomise(model, low: float = 0.5, high: float = 1.5) -> None:
    """Masks and BatchNorm scales uniform in [low, high) (a trained network's scores), biases and
    LayerNorm shifts random (they start at zero)."""
    for _, mask in gates(model):
        mask.data.uniform_(low, high)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(low, high)
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.LayerNorm)) and m.bias is not None:
            m.bias.data.normal_(0, 0.1)


def _layers(spec: dict) -> list[dict]:
    return spec["layers"] if spec["family"] == "vit" else spec["encoder"] + spec["decoder"]


def _assert_consistent(model) -> None:
    """Every pruned layer agrees with the head bookkeeping and the embedding width."""
    d = model.embed_dim
    for m in model.modules():
        if isinstance(m, Attention):
            assert m.num_heads == len(m.head_dims) and m.inner == sum(m.head_dims) == m.proj.in_features
            assert (m.q.out_features, m.kv.out_features) == (m.inner, 2 * m.inner) if m.cross else \
                m.qkv.out_features == 3 * m.inner
            assert m.proj.out_features == d and (m.q if m.cross else m.qkv).in_features == d
        elif isinstance(m, Mlp):
            assert m.fc1.in_features == m.fc2.out_features == d and m.fc1.out_features == m.fc2.in_features
        elif isinstance(m, torch.nn.LayerNorm):
            assert m.normalized_shape == (d,)
    assert model.pos_x.shape[-1] == model.pos_z.shape[-1] == d
    assert model.cls_tower[0][0].in_channels == model.reg_tower[0][0].in_channels == d
    assert [p.conv.out_channels for p in (model.cls_tower[-1], model.reg_tower[-1])] == [1, 4]


def _round_trip(model) -> None:
    """The pruned network rebuilds from its spec, loads its weights and computes the same."""
    spec = model.spec()
    assert "gates" not in spec and not any(mask is not None for _, mask in gates(model))
    rebuilt = build_model(spec)
    rebuilt.load_state_dict(model.state_dict())
    for a, b in zip(_outputs(model), _outputs(rebuilt)):
        assert a.shape == b.shape and torch.equal(a, b)
    assert [t.shape for t in _outputs(model)] == [(2, 1, 4, 4), (2, 4, 4, 4)]


@pytest.mark.parametrize("family", ["vit", "hybrid"])
def test_units_with_zero_masks_are_removed_exactly(family):
    model = _model(family, gated=True)
    _randomise(model)
    expected = {k: v for k, v in model.spec().items() if k != "gates"}
    for i, (m, layer) in enumerate(zip((m for m in model.gated_modules() if isinstance(m, Attention)),
                                       _layers(expected))):
        if i == 0:  # the whole last head of the first attention, one dimension of the others
            m.gate.data[-m.head_dims[-1]:] = 0
            layer["head_dims"] = layer["head_dims"][:-1]
        else:
            m.gate.data[0] = 0
            layer["head_dims"] = [layer["head_dims"][0] - 1, *layer["head_dims"][1:]]
    for m, layer in zip((m for m in model.gated_modules() if isinstance(m, Mlp)), _layers(expected)):
        m.gate.data[:3] = 0
        layer["mlp"] -= 3
    gated = _outputs(model)
    folded = build_model(model.spec())
    folded.load_state_dict(model.state_dict())
    fold_gates(folded)
    for a, b in zip(gated, _outputs(folded)):  # folding alone changes nothing
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    dense, target = measure(folded)["macs"], measure(build_model(expected))["macs"]
    result = slim_to_budget(model, (target + 0.5) / dense, "macs", progress=False)  # the threshold at the zeros
    assert model.spec() == expected and result.pruned["macs"] == target < result.dense["macs"] == dense
    for a, b in zip(gated, _outputs(model)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    _round_trip(model)


@pytest.mark.parametrize("family", ["vit", "hybrid"])
def test_vit_slim_meets_the_budget_physically_in_both_parts(family):
    model = _model(family, gated=True)
    _randomise(model, 0.1, 1.0)
    dense_spec = model.spec()
    result = slim_to_budget(model, 0.3, "macs", TransformerMinWidths(), "global", progress=False)
    assert result.pruned == measure(model) and result.pruned["macs"] <= 0.3 * result.dense["macs"]
    assert result.pruned["params"] < result.dense["params"] and result.steps > 1
    spec = model.spec()
    inner = [sum(layer["head_dims"]) for layer in _layers(spec)]
    assert sum(inner) < sum(sum(layer["head_dims"]) for layer in _layers(dense_spec))
    assert sum(layer["mlp"] for layer in _layers(spec)) < sum(layer["mlp"] for layer in _layers(dense_spec))
    if family == "hybrid":  # the CNN channels are pruned to the same budget
        widths = lambda w: w["stem"] + sum(s["out"] + sum(map(sum, s["blocks"])) for s in w["stages"])  # noqa: E731
        assert widths(spec["widths"]) < widths(dense_spec["widths"])
    _assert_consistent(model)
    _round_trip(model)


def test_global_and_layer_scopes():
    specs = {}
    for scope in ("global", "layer"):
        model = _model("vit", gated=True)
        for block, (low, high) in zip(model.blocks, [(0.1, 0.2), (0.8, 0.9)]):  # layer 0's masks below layer 1's
            block.attn.gate.data.uniform_(low, high)
            block.mlp.gate.data.uniform_(low, high)
        model.embed_gate.data.uniform_(0.4, 0.6)
        slim_to_budget(model, 0.5, "macs", TransformerMinWidths(), scope, progress=False)
        specs[scope] = model.spec()
    first, second = specs["global"]["layers"]
    assert first["mlp"] < second["mlp"] and sum(first["head_dims"]) < sum(second["head_dims"])
    assert second["mlp"] == 32 and second["head_dims"] == [8, 8]  # one threshold: the best units all stay
    first, second = specs["layer"]["layers"]
    assert first["mlp"] == second["mlp"] and sum(first["head_dims"]) == sum(second["head_dims"])
    kept = [specs["layer"]["embed_dim"] / 16, first["mlp"] / 32, sum(first["head_dims"]) / 16,
            specs["layer"]["cls_tower"][0] / 8]  # the same fraction of every width (rounded up)
    assert max(kept) - min(kept) <= 1 / 8 and max(kept) < 1


def test_minimum_widths_and_an_unreachable_budget():
    mins = TransformerMinWidths(head_dim=2, mlp=3, embed=4, convs=MinWidths(2))
    model = _model("vit", gated=True)
    _randomise(model)
    dense, smallest = check_transformer_budget(model, 1.0, "macs", mins)
    slim_to_budget(model, (smallest["macs"] + 0.5) / dense["macs"], "macs", mins, "layer", progress=False)
    spec = model.spec()
    assert spec["embed_dim"] == 4 and spec["cls_tower"] == spec["reg_tower"] == [2]
    assert all(layer["head_dims"] == [2] and layer["mlp"] == 3 for layer in spec["layers"])
    assert measure(model) == smallest
    _round_trip(model)
    for prune in (slim_to_budget, torch_prune_to_budget):
        with pytest.raises(BudgetError, match=r"budget 1e-06 .* smallest achievable is [0-9.]+ M macs .*min_head_dim"):
            prune(_model("vit", gated=True), 1e-6, "macs", mins, progress=False)


def test_torch_pruning_removes_head_dims_then_heads_and_keeps_a_working_forward():
    model = _model("vit")
    result = torch_prune_to_budget(model, 0.2, "macs", TransformerMinWidths(head_dim=4), progress=False)
    assert result.pruned["macs"] <= 0.2 * result.dense["macs"] and result.pruned == measure(model)
    heads = [block.attn.head_dims for block in model.blocks]
    assert all(len(set(dims)) == 1 and dims[0] >= 4 for dims in heads)  # timm's uniform head layout
    assert sum(map(sum, heads)) < 2 * 16 and model.embed_dim <= 16
    _assert_consistent(model)
    _round_trip(model)


def test_settings_check_the_criterion_per_family_and_name_the_field(vit_config, micro_config, tmp_path):
    cfg = load_experiment(vit_config)
    assert PruneSettings.from_experiment(cfg).criterion == "vit-slim"
    with pytest.raises(ConfigError, match=r"prune.criterion: 'slimming' is not one of \['torch-pruning', 'vit-slim'\] "
                                          r"for family vit"):
        PruneSettings.from_experiment(cfg, criterion="slimming")
    hybrid = load_experiment(_config(micro_config, tmp_path, MICRO_HYBRID))
    with pytest.raises(ConfigError, match=r"'torch-pruning' is not one of \['vit-slim'\] for family hybrid"):
        PruneSettings.from_experiment(hybrid, criterion="torch-pruning")
    for key, value, message in [("scope", "wide", r"prune.scope: 'wide' is not one of \['global', 'layer'\]"),
                                ("min_mlp", 0, r"prune.min_mlp must be an integer >= 1, got 0"),
                                ("layer_scope_below", 2, r"prune.layer_scope_below must be a number in \[0, 1\]"),
                                ("sparsity", {"attn_l1": -1}, r"prune.sparsity.attn_l1 must be a number >= 0")]:
        with pytest.raises(ConfigError, match=message):
            PruneSettings.from_experiment({**cfg, "prune": {**cfg["prune"], key: value}})
    settings = PruneSettings.from_experiment(cfg)
    assert (settings.scope_for(0.05), settings.scope_for(0.5)) == ("layer", "global")
    with pytest.raises(ValueError, match="this network has none"):
        prune_model(_model("vit"), 0.5, "macs", settings, progress=False)
    with pytest.raises(ValueError, match="for family vit cannot prune a hybrid network"):
        prune_model(_model("hybrid", gated=True), 0.5, "macs", settings, progress=False)


def test_mask_l1_shrinks_the_masks(vit_config, tmp_path):
    cfg = load_experiment(vit_config)
    masks = {}
    for l1 in (0.0, 0.05):
        model = _model("vit", gated=True)
        trainer = SlimTrainer(cfg, tmp_path / str(l1), model.spec(), model.state_dict(), 0.0,
                              {"attn": l1, "mlp": l1, "embed": l1}, progress=False)
        trainer.train()
        masks[l1] = torch.cat([mask.detach() for _, mask in gates(trainer.model)])
    shrink = masks[0.0] - masks[0.05]  # same seed and data: the L1 term is the only difference
    assert shrink.min() > 0 and read_checkpoint(trainer.checkpoint_path)["model_spec"]["gates"] is True


def test_prune_checkpoint_end_to_end(vit_config, dense_checkpoint, tmp_path):
    cfg = load_experiment(vit_config)
    out = tmp_path / "slim"
    report = prune_checkpoint(cfg, dense_checkpoint, out, 0.3, criterion="vit-slim", progress=False)
    assert json.loads((out / "prune.json").read_text()) == report
    assert report["criterion"] == "vit-slim" and report["achieved"]["macs"] <= 0.3
    assert report["sparsity"] == {"l1": 1e-3, "gate_l1": {"attn": 0.05, "mlp": 0.05, "embed": 0.05},
                                  "iterations": 2, "batch_size": 2}
    assert report["pruned"]["widths"]["embed_dim"] <= 16 and "layers" in report["dense"]["widths"]
    sparse = read_checkpoint(out / "sparsity" / "checkpoint.pt")
    assert sparse["model_spec"]["gates"] is True and not torch.equal(sparse["model"]["embed_gate"], torch.ones(16))
    model = load_tracking_model(out / "checkpoint.pt", None)
    assert measure(model)["macs"] == report["pruned"]["macs"]
    z, x = _inputs()
    with torch.no_grad():
        model.template(z)
        cls, reg = model.track(x)
    assert cls.shape == (2, 1, 4, 4) and reg.shape == (2, 4, 4, 4)


def test_prune_tool_with_torch_pruning(vit_config, dense_checkpoint, tmp_path):
    out = tmp_path / "tp"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "prune.py"), "--config", str(vit_config),
                           "--checkpoint", str(dense_checkpoint), "--budget", "0.5", "--criterion", "torch-pruning",
                           "--out", str(out), "--no-progress"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "prune.json").read_text())
    assert report["criterion"] == "torch-pruning" and report["achieved"]["macs"] <= 0.5
    assert report["sparsity"]["iterations"] == 0 and not (out / "sparsity").exists()
    spec = read_checkpoint(out / "checkpoint.pt")["model_spec"]
    assert all(len(set(layer["head_dims"])) == 1 for layer in spec["layers"])
