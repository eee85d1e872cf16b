"""Every shipped experiment config loads, and the network it trains accepts its backbone initialisation
(e.g. an EfficientNet-Lite0 start only for LightTrack supernets), so no long run fails at its start."""
import pytest

from conftest import ROOT
from lighttrack_nas.compress import PruneSettings
from lighttrack_nas.workflows.compare.settings import prepare
from lighttrack_nas.config import deep_merge
from lighttrack_nas.models import build_model, build_supernet
from lighttrack_nas.models.pretrained import init_backbone
from lighttrack_nas.config import load_experiment
from lighttrack_nas.space import experiment_space
from lighttrack_nas.train.baseline import model_spec

COMPARISONS = ("compare_tiny.yaml", "compare_all_tiny.yaml", "compare_scratch_tiny.yaml", "compare_imagenet_tiny.yaml")
EXPERIMENTS = sorted(p for p in (ROOT / "experiments").glob("*.yaml")
                     if p.name != "tracker.yaml" and p.name not in COMPARISONS)  # the comparisons: below


def _check_trainable(cfg):
    model = build_model(model_spec(cfg)) if "model" in cfg else build_supernet(experiment_space(cfg))
    if cfg["train"]["pretrained_backbone"]:
        init_backbone(model, cfg["train"]["pretrained_backbone"])


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_experiment_config_loads_and_its_model_initialises(path):
    _check_trainable(load_experiment(path))


@pytest.mark.parametrize("name", COMPARISONS)
def test_compare_families_initialise(name, tmp_path):
    experiment = prepare(ROOT / "experiments" / name, tmp_path)
    families = [family.experiment(0) for family in experiment.families]
    for cfg in (experiment.nas, experiment.retrain, *families):
        _check_trainable(cfg)
    scratch = name == "compare_scratch_tiny.yaml"  # the random-start row of the 2x2: nothing from ImageNet
    assert experiment.nas["train"]["pretrained_backbone"] == (None if scratch else "efficientnet-lite0")
    for family, cfg in zip(experiment.families, families):  # from scratch but the Lite0 ones (issue 29)
        start = "efficientnet-lite0" if family.name in ("lite0", "largest") and not scratch else None
        assert cfg["train"]["pretrained_backbone"] == start, family.name
    if scratch:  # a random backbone learns from the first iteration, at the head's rate
        assert experiment.nas["train"]["freeze_backbone_epochs"] == 0 and experiment.nas["train"]["backbone_lr_mult"] == 1
    if experiment.compress is not None:
        assert experiment.compress.experiment(0)["model"]["family"] == experiment.compress.teacher


def test_comparisons_give_nas_and_pruned_trackers_equal_training_budgets(tmp_path):
    """Issue 6's rule: the shared phases (supernet vs dense CNN + sparsity training) and each tracker's own
    training (NAS retraining vs pruned fine-tuning) see the same number of samples; the supernet's largest
    subnet shares the supernet's phase and adds only its sparsity training."""
    samples = lambda train: train["epochs"] * train["iters_per_epoch"] * train["batch_size"]  # noqa: E731
    full = prepare(ROOT / "experiments" / "compare_all_tiny.yaml", tmp_path / "all")
    cnn = full.family("cnn")
    dense = cnn.experiment(0)["train"]
    prune = cnn.prune[cnn.criteria[0]]
    assert cnn.criteria == ("slimming",)
    shared_cnn = samples(dense) + samples(deep_merge(dense, prune.sparsity_train))
    assert samples(full.nas["train"]) == shared_cnn
    assert samples(full.retrain["train"]) == samples(deep_merge(dense, prune.finetune_train))
    tiny = prepare(ROOT / "experiments" / "compare_tiny.yaml", tmp_path / "tiny")
    assert [(f.name, f.dense) for f in tiny.families] == [("largest", "supernet")]
    largest = tiny.family("largest")
    base = largest.experiment(0)["train"]
    prune = largest.prune["slimming"]
    assert samples(tiny.retrain["train"]) == samples(deep_merge(base, prune.finetune_train))
    assert samples(deep_merge(base, prune.sparsity_train)) <= samples(tiny.retrain["train"])
    # the 2x2 rows' stand-alone pruned sides are compare_all_tiny's lite0 / lite0_scratch: the same network and
    # training; every Lite0 pruned side prunes by the one recipe of prune_lite0_tiny.yaml, which tools/prune.py
    # runs alone after tools/train_baseline.py trained compare_all_tiny's lite0 (the thread count aside)
    unthreaded = lambda train: {k: v for k, v in train.items() if k != "threads"}  # noqa: E731
    alone_file = load_experiment(ROOT / "experiments" / "prune_lite0_tiny.yaml")
    recipe = {"slimming": PruneSettings.from_experiment(alone_file)}
    assert unthreaded(alone_file["train"]) == unthreaded(full.family("lite0").experiment(0)["train"])
    assert model_spec(alone_file) == model_spec(full.family("lite0").experiment(0))
    assert largest.prune == full.family("largest").prune == recipe
    for config, name in (("compare_imagenet_tiny.yaml", "lite0"), ("compare_scratch_tiny.yaml", "lite0_scratch")):
        row, alone = prepare(ROOT / "experiments" / config, tmp_path / name).family(name), full.family(name)
        assert unthreaded(row.experiment(0)["train"]) == unthreaded(alone.experiment(0)["train"]), config
        assert row.prune == alone.prune == recipe, config
        assert row.experiment(0)["model"] == alone.experiment(0)["model"], config


def test_extending_a_config_from_another_folder_keeps_its_file_paths(tmp_path):
    """``space:`` / ``tracker:`` mean the files next to the config that names them, not next to the one
    extending it (a probe config in runs/ extending experiments/supernet_tiny.yaml)."""
    probe = tmp_path / "probes" / "probe.yaml"
    probe.parent.mkdir()
    probe.write_text(f"extends: {ROOT / 'experiments' / 'search_tiny.yaml'}\nsampling: {{distill_reg: 1.0}}\n")
    cfg = load_experiment(probe)
    assert experiment_space(cfg).name == "lighttrack_tiny"
    assert cfg["tracker"] == str(ROOT / "experiments" / "tracker.yaml")
    (probe.parent / "space.yaml").write_text((ROOT / "search_spaces" / "lighttrack_tiny.yaml").read_text()
                                             .replace("extends: lighttrack.yaml", f"extends: {ROOT / 'search_spaces' / 'lighttrack.yaml'}")
                                             .replace("name: lighttrack_tiny", "name: own"))
    probe.write_text(probe.read_text() + "space: space.yaml\n")
    assert experiment_space(load_experiment(probe)).name == "own"  # a file's own space: next to it
