"""The comparison with the transformer families (issue 7) on a micro config: a ViT pruned by both of its
methods, a STARK-lite hybrid and the CompressTracker ablation, next to NAS and the pruned CNN."""
import csv
import json
from pathlib import Path

import pytest
import yaml

from lighttrack_nas.workflows.compare import compare, prepare
from lighttrack_nas.config import ConfigError

from test_compare import MICRO_CNN, SHORT, _write, micro_compare
from test_transformer import MICRO_HYBRID, MICRO_VIT

# larger than the micro NAS subnets (<= 3.5 M MACs) so that both can be pruned to their MACs: 4.8 M MACs each
FAMILY_VIT = {**MICRO_VIT, "embed_dim": 96, "cls_tower": [16], "reg_tower": [16]}
FAMILY_HYBRID = {**MICRO_HYBRID, "embed_dim": 32, "widths": {
    **MICRO_HYBRID["widths"], "stem": 16, "stages": [{"stride": 2, "out": 24, "blocks": [[24]]},
                                                      {"stride": 2, "out": 32, "blocks": [[32]]},
                                                      {"stride": 2, "out": 48, "blocks": [[48]]}]}}
MICRO_VIT_PRUNE = {"min_head_dim": 2, "min_mlp": 2, "min_embed": 4, "min_width": 2,
                   "sparsity": {"train": dict(SHORT)}, "finetune": {"train": dict(SHORT)},
                   "latency": {"threads": 1, "min_run_time": 0.01}}


def families_compare(micro_config) -> dict:
    cfg = micro_compare(micro_config)
    cfg["compare"]["nas"]["budgets"] = ["3.5M"]
    cfg["compare"]["families"] = {
        "vit": {"model": FAMILY_VIT, "train": dict(SHORT),
                "prune": {**MICRO_VIT_PRUNE, "criteria": ["vit-slim", "torch-pruning"]}},
        "hybrid": {"model": FAMILY_HYBRID, "train": dict(SHORT), "prune": dict(MICRO_VIT_PRUNE)},
        # the supernet's own largest subnet (6.8 M MACs), no training of its own, pruned: NAS vs pruning within
        # one supernet (a lighttrack_net family trained alone, compare_all_tiny.yaml's lite0, prunes the same
        # way: tests/test_cnn_prune.py trains, prunes and fine-tunes one)
        "largest": {"model": {"family": "lighttrack_net", "arch": "largest"}, "dense": "supernet",
                    "prune": {"normalizer": "mean", "sparsity": {"train": dict(SHORT)}, "finetune": {"train": dict(SHORT)},
                              "latency": {"threads": 1, "min_run_time": 0.01}}}}
    cfg["compare"]["compresstracker"] = {"teacher": "vit", "ablation": 1, "train": dict(SHORT)}
    return cfg


@pytest.fixture(scope="module")
def run(micro_config, tmp_path_factory):
    base = tmp_path_factory.mktemp("compare_families")
    config = _write(base / "compare.yaml", families_compare(micro_config))
    out = base / "out"
    return config, out, compare(config, out, progress=False)


def test_every_family_and_method_has_its_rows(run):
    _, out, summary = run
    assert not summary["missing"], summary["missing"]
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    methods = {(r["family"], r["method"]) for r in rows}
    assert {("vit", "dense"), ("vit", "pruned-vit-slim"), ("vit", "pruned-torch-pruning"), ("hybrid", "dense"),
            ("hybrid", "pruned-vit-slim"), ("cnn", "pruned-slimming"), ("nas", "nas-supernet"),
            ("largest", "dense"), ("largest", "pruned-slimming")} <= methods
    ablation = {r["method"]: r for r in rows if r["kind"] == "compressed"}
    assert set(ablation) == {"compresstracker-plain", "compresstracker-replacement",
                             "compresstracker-replacement+guidance", "compresstracker"}
    dense_vit = next(r for r in rows if r["family"] == "vit" and r["kind"] == "dense")
    for r in ablation.values():
        assert int(r["layers"]) == 1 and int(r["macs"]) < int(dense_vit["macs"])
    for r in rows:  # pruned transformers are physically smaller and meet their budgets
        if r["family"] in ("vit", "hybrid") and r["kind"] == "extreme":
            dense = next(d for d in rows if d["family"] == r["family"] and d["kind"] == "dense")
            assert int(r["macs"]) <= float(r["budget_fraction"]) * int(dense["macs"])
        if r["kind"] == "matched" and r["family"] in ("vit", "hybrid", "largest"):
            assert abs(float(r["macs_vs_nas"])) <= 0.10, (r["family"], r["method"], r["macs_vs_nas"])
    assert all((out / "vit" / "seed0" / c / "prune_3.5M").is_dir() for c in ("vit-slim", "torch-pruning"))


def test_report_covers_every_family(run):
    _, out, summary = run
    report = (out / "report.md").read_text()
    for text in ("pruned ViT (vit-slim)", "pruned ViT (torch-pruning)", "pruned hybrid", "pruned CNN",
                 "## Stability under compression", "Most stable under pruning",
                 "Does one-shot NAS beat every compressed family at every budget?", "## CompressTracker"):
        assert text in report, text
    pairs = {(e["family"], e["method"]) for e in summary["matched"]}
    assert pairs == {("cnn", "pruned-slimming"), ("vit", "pruned-vit-slim"), ("vit", "pruned-torch-pruning"),
                     ("hybrid", "pruned-vit-slim"), ("largest", "pruned-slimming")}
    assert (out / "stability.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "success_compresstracker.png").exists()
    stages = json.loads((out / "stages.json").read_text())
    assert "seed0/vit/vit-slim/sparsity" in stages and "seed0/vit/torch-pruning/sparsity" not in stages


def test_a_supernet_dense_family_is_the_supernets_subnet(run):
    """dense: supernet: the dense tracker holds the supernet's weights on the largest path (BatchNorm
    statistics recalibrated), trained by nothing but the supernet, whose phase its rows share."""
    import torch

    from lighttrack_nas.compress.pipeline import load_network
    from lighttrack_nas.models import load_supernet

    _, out, summary = run
    dense = load_network(out / "largest" / "seed0" / "dense" / "checkpoint.pt")
    supernet = load_supernet(out / "supernet" / "seed0" / "checkpoint.pt")
    path = supernet.extract(supernet.space.decode(dense.arch)).state_dict()
    weights = dense.state_dict()
    assert weights.keys() == path.keys()
    for name, tensor in path.items():
        if not name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert torch.equal(weights[name], tensor), name
    assert any(not torch.equal(weights[n], path[n]) for n in path if n.endswith("running_var"))
    rows = {(r["method"], r["budget"]): r for r in summary["rows"] if r["family"] == "largest"}
    phases = rows[("dense", "dense")]["training"]
    assert [p["phase"] for p in phases] == ["supernet"]
    assert phases[0]["shared"] == "every NAS tracker of seed 0 and every largest tracker"
    assert [p["phase"] for p in rows[("pruned-slimming", "3.5M")]["training"]] == ["supernet", "sparsity", "finetune"]


def test_family_config_errors_are_named(micro_config, tmp_path):
    cfg = families_compare(micro_config)
    cfg["compare"]["families"]["vit"]["prune"]["criteria"] = ["slimming"]
    with pytest.raises(ConfigError, match=r"compare.families.vit.prune.criterion: 'slimming' is not one of"):
        prepare(_write(tmp_path / "a.yaml", cfg), tmp_path / "out")
    cfg = families_compare(micro_config)
    cfg["compare"]["compresstracker"]["teacher"] = "cnn2"
    with pytest.raises(ConfigError, match=r"compresstracker.teacher: 'cnn2' is not one of the pruned families"):
        prepare(_write(tmp_path / "b.yaml", cfg), tmp_path / "out")
    cfg = families_compare(micro_config)
    cfg["compare"]["families"]["cnn"] = {"model": MICRO_CNN}
    with pytest.raises(ConfigError, match="family names must be distinct"):
        prepare(_write(tmp_path / "c.yaml", cfg), tmp_path / "out")
    cfg = families_compare(micro_config)
    cfg["compare"]["families"]["vit"]["dense"] = "supernet"
    with pytest.raises(ConfigError, match=r"families.vit.dense: supernet needs model.family lighttrack_net"):
        prepare(_write(tmp_path / "e.yaml", cfg), tmp_path / "out")
    cfg["compare"]["families"]["vit"]["dense"] = "inherit"
    with pytest.raises(ConfigError, match=r"families.vit.dense: 'inherit' is not one of \['train', 'supernet'\]"):
        prepare(_write(tmp_path / "f.yaml", cfg), tmp_path / "out")
    cfg = families_compare(micro_config)  # without compare.cnn: the families alone
    del cfg["compare"]["cnn"]
    with pytest.raises(ConfigError, match=r"compare.prune: without compare.cnn only extreme_budgets"):
        prepare(_write(tmp_path / "g.yaml", cfg), tmp_path / "out")
    cfg["compare"]["prune"] = {"extreme_budgets": [0.5]}
    cfg["compare"].pop("compresstracker")
    assert {f.name for f in prepare(_write(tmp_path / "h.yaml", cfg), tmp_path / "out").families} == \
        {"vit", "hybrid", "largest"}


def test_only_runs_the_chosen_groups(run, micro_config, tmp_path):
    from lighttrack_nas.workflows.compare import run_compare

    exp = prepare(_write(tmp_path / "d.yaml", families_compare(micro_config)), tmp_path / "out")
    with pytest.raises(ValueError, match=r"--only \['vitt'\]: not tracker groups"):
        run_compare(exp, tmp_path / "out", only=["vitt"], progress=False)
    with pytest.raises(FileNotFoundError, match="run the nas group of seed 0 first"):
        run_compare(exp, tmp_path / "out", only=["vit"], progress=False)
    config, out, _ = run  # everything finished: a run of one group skips all of its stages
    stages = run_compare(prepare(config, out), out, only=["hybrid"], progress=False)
    assert all(v["last"] == "skipped" for k, v in stages.items() if k.startswith("seed0/hybrid/"))


def test_compresstracker_refuses_a_half_trained_teacher(run, tmp_path):
    import shutil

    import torch

    from lighttrack_nas.workflows.compare import run_compare

    config, out, _ = run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    teacher = copy / "vit" / "seed0" / "dense" / "checkpoint.pt"
    state = torch.load(teacher, map_location="cpu", weights_only=True)
    torch.save({**state, "iteration": 1}, teacher)  # as another process sees it while the teacher still trains
    shutil.rmtree(copy / "vit" / "seed0" / "compresstracker")
    with pytest.raises(ValueError, match="teacher of seed 0 has not finished its training"):
        run_compare(prepare(config, copy), copy, only=["compresstracker"], progress=False)
