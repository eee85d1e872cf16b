"""Supernet training: loss, schedule, samplers, single-path updates, resume after SIGKILL, 2 processes."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lighttrack_nas.config import ConfigError
from lighttrack_nas.models import path_parameters
from lighttrack_nas.config import load_experiment
from lighttrack_nas.train import PathSampler, SupernetTrainer, TrainingError, balanced_bce, iou_loss, learning_rate

from conftest import ROOT

def _train_cmd(config, out, *extra):
    return [sys.executable, str(ROOT / "tools" / "train_supernet.py"), "--config", str(config), "--out", str(out),
            "--no-progress", *extra]


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_balanced_bce_and_iou_loss_by_hand():
    labels = torch.tensor([[[1.0, 0.0, 0.0, -1.0]]])
    logits = torch.tensor([[[0.0, 0.0, 2.0, 5.0]]])
    bce = lambda x, y: -(y * np.log(1 / (1 + np.exp(-x))) + (1 - y) * np.log(1 - 1 / (1 + np.exp(-x))))  # noqa: E731
    expected = 0.5 * bce(0.0, 1) + 0.5 * (bce(0.0, 0) + bce(2.0, 0)) / 2  # ignore label -1
    assert balanced_bce(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    target = torch.tensor([2.0, 3.0, 4.0, 5.0]).view(1, 4, 1, 1)
    weight = torch.ones(1, 1, 1)
    assert iou_loss(target.clone(), target, weight).item() == pytest.approx(0.0, abs=1e-7)
    half = target.clone()
    half[0, 2] = 0.0  # width 6 -> 2: I = 2*8 = 16, U = 48
    assert iou_loss(half, target, weight).item() == pytest.approx(-np.log(17 / 49), rel=1e-6)
    assert iou_loss(half, target, torch.zeros(1, 1, 1)).item() == 0.0


def test_learning_rate_schedule():
    kw = dict(total=100, warmup=10, start=0.01, peak=0.03, final=1e-4)
    assert learning_rate(0, **kw) == pytest.approx(0.01)
    assert learning_rate(5, **kw) == pytest.approx(0.02)
    assert learning_rate(10, **kw) == pytest.approx(0.03)
    assert learning_rate(99, **kw) == pytest.approx(1e-4)
    mid = learning_rate(10 + 89 // 2, **kw)
    assert mid < 0.03 and np.log(0.03) - np.log(mid) == pytest.approx((np.log(0.03) - np.log(1e-4)) * (44 / 89))


def test_fair_sampler_uses_every_op_equally(tiny_space):
    sampler = PathSampler(tiny_space, "fair", seed=0)
    assert sampler.block == 12
    block = [next(sampler) for _ in range(12)]
    for choice in tiny_space.choices:
        counts = {v: sum(a[choice.label] == v for a in block) for v in choice.values}
        assert set(counts.values()) == {12 // len(choice.values)}, choice.label
    state = sampler.state_dict()
    ahead = [next(sampler) for _ in range(5)]
    sampler.load_state_dict(state)
    assert [next(sampler) for _ in range(5)] == ahead
    with pytest.raises(ValueError, match="uniform, fair"):
        PathSampler(tiny_space, "greedy")


def test_ramp_brings_skip_in_gradually(tiny_space):
    sampler = PathSampler(tiny_space, "uniform", seed=0, ramp_values=["skip"], ramp_iterations=300)
    towers = [c.label for c in tiny_space.choices if "skip" in c.values]
    draws = [next(sampler) for _ in range(600)]
    share = [np.mean([a[label] == "skip" for a in part for label in towers]) for part in (draws[:30], draws[300:])]
    assert share[0] < 0.05 and abs(share[1] - 1 / 3) < 0.05
    state = sampler.state_dict()
    again = PathSampler(tiny_space, "uniform", seed=5, ramp_values=["skip"], ramp_iterations=300)
    again.load_state_dict(state)
    assert next(again) == next(sampler)
    with pytest.raises(ValueError, match="uniform"):
        PathSampler(tiny_space, "fair", ramp_values=["skip"], ramp_iterations=10)


def test_frozen_backbone_is_left_out_of_the_graph(micro_config, tmp_path):
    cfg = load_experiment(micro_config, {"train": {"epochs": 2, "iters_per_epoch": 1}})  # frozen for iteration 0
    trainer = SupernetTrainer(cfg, tmp_path, progress=False)
    before = [p.detach().clone() for p in trainer.backbone_params]
    trainer.train()
    assert trainer.iteration == 2 and all(p.requires_grad for p in trainer.backbone_params)
    assert any(not torch.equal(p, b) for p, b in zip(trainer.backbone_params, before))  # trained in epoch 1
    frozen = SupernetTrainer(cfg, tmp_path / "frozen", max_iters=1, progress=False)
    kept = [p.detach().clone() for p in frozen.backbone_params]
    frozen.train()
    assert not any(p.requires_grad for p in frozen.backbone_params)
    assert all(torch.equal(p, k) for p, k in zip(frozen.backbone_params, kept))
    assert not {id(p) for p in frozen.backbone_params} & {id(p) for p in frozen.optimizer.state}


def test_backbone_before_train_from_stays_frozen(micro_config, tmp_path):
    cfg = load_experiment(micro_config, {"train": {"freeze_backbone_epochs": 0, "epochs": 1, "iters_per_epoch": 2,
                                                   "train_backbone_from": "layers.1"}})
    trainer = SupernetTrainer(cfg, tmp_path, progress=False)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    early = {n for n in before if n.startswith(("stem.", "layers.0."))}
    assert early and not early & changed
    assert not any(p.requires_grad for n, p in trainer.model.named_parameters() if n in early)
    assert any(n.startswith("layers.") for n in changed) and any(not n.startswith(("stem.", "layers.")) for n in changed)
    assert {id(p) for p in trainer.backbone_params} == {id(p) for n, p in trainer.model.named_parameters()
                                                        if n.startswith("layers.") and n not in early}
    bad = load_experiment(micro_config, {"train": {"train_backbone_from": "blocks.3"}})
    with pytest.raises(ConfigError, match=r"train_backbone_from.*'blocks.3'.*stem\.0, stem\.1, layers\.0"):
        SupernetTrainer(bad, tmp_path / "bad", progress=False)


def test_training_crops_may_differ_from_the_tracking_crop(micro_config, tmp_path):
    """train.search_size: the fully convolutional supernet trains on 64 crops, tracks (and is costed) at 96."""
    from lighttrack_nas.models import load_supernet
    from lighttrack_nas.train import tracking_loss

    cfg = load_experiment(micro_config, {"space_settings": {"search_size": 96},
                                         "train": {"search_size": 64, "epochs": 1, "iters_per_epoch": 2}})
    trainer = SupernetTrainer(cfg, tmp_path, progress=False)
    m, tc = trainer.model, cfg["train"]
    assert (m.search_size, m.score_size, trainer.search_size) == (96, 6, 64)
    batch = {k: torch.stack([trainer.dataset[i][k] for i in range(4)]) for k in ("template", "search", "search_box")}
    assert batch["search"].shape[-2:] == (64, 64)
    trainer.next_path()
    m.train()
    got = trainer.losses(batch)
    cls, reg = m(batch["template"], batch["search"])
    assert cls.shape[-1] == 64 // m.stride
    at_64, at_96 = (tracking_loss(cls, reg, batch["search_box"], size, m.stride, tc["label_radius_px"],
                                  tc["reg_loss_weight"])["loss"] for size in (64, 96))
    assert torch.allclose(got["loss"], at_64, atol=1e-6) and not torch.allclose(at_64, at_96, atol=1e-3)
    assert load_supernet(trainer.train()).search_size == 96
    for bad, message in ((70, "must be a positive multiple of the model's stride"), (0, "must be a positive multiple"),
                         ("64", "must be an integer or null, got '64'")):  # the type by the config, bounds by the model
        with pytest.raises(ConfigError, match=f"train.search_size {message}"):
            SupernetTrainer(load_experiment(micro_config, {"train": {"search_size": bad}}), tmp_path / "bad",
                            progress=False)


def test_off_path_parameters_get_no_update(micro_config, tmp_path):
    cfg = load_experiment(micro_config, {"train": {"freeze_backbone_epochs": 0, "epochs": 1, "iters_per_epoch": 1}})
    trainer = SupernetTrainer(cfg, tmp_path, progress=False)
    state = trainer.sampler.state_dict()
    arch = next(trainer.sampler)  # the path the single training iteration will take
    trainer.sampler.load_state_dict(state)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.model.set_arch(arch)
    on_path = {id(p) for p in path_parameters(trainer.model)}
    trainer.train()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    names_on_path = {n for n, p in trainer.model.named_parameters() if id(p) in on_path}
    assert changed and changed <= names_on_path
    untouched = [n for n, p in trainer.model.named_parameters() if id(p) not in on_path]
    assert untouched and not (set(untouched) & changed)
    ids_with_state = {id(p) for p in trainer.optimizer.state}
    assert not ids_with_state - on_path  # no momentum buffers off the path


def test_channels_last_trains_to_the_same_weights(micro_config, tmp_path):
    """The memory layout is a speed setting only: both layouts take the same training step. (One SGD
    step: over more steps, or with Adam's normalised first step, float-rounding differences between the
    layouts' kernels grow chaotically, 1e-5 after one step to 1e-2 after four with ReLU6.)"""
    states = {}
    for channels_last in (False, True):
        cfg = load_experiment(micro_config, {"train": {"channels_last": channels_last, "freeze_backbone_epochs": 0,
                                                       "optimizer": "sgd"}})
        trainer = SupernetTrainer(cfg, tmp_path / str(channels_last), max_iters=1, progress=False)
        conv = trainer.model.stem[0][0].weight
        assert conv.is_contiguous(memory_format=torch.channels_last) == channels_last
        trainer.train()
        states[channels_last] = trainer.model.state_dict()
    for name, value in states[False].items():
        assert torch.allclose(value.float(), states[True][name].float(), atol=1e-5), name


def test_bench_train_step_times_both_layouts(micro_config, tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, "benchmarks/train_step.py", "--config", str(micro_config), "--iters", "2",
                          "--warmup", "1", "--json", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    assert report["contiguous"]["s_per_iter"] > 0 and report["channels_last"]["s_per_iter"] > 0
    assert report["speedup"] == pytest.approx(report["contiguous"]["s_per_iter"] / report["channels_last"]["s_per_iter"])
    assert "channels-last speed-up" in run.stdout


def test_head_paths_average_the_losses_of_several_head_configurations(micro_config, tmp_path):
    from lighttrack_nas.train import tracking_loss

    cfg = load_experiment(micro_config, {"sampling": {"head_paths": 3}})
    trainer = SupernetTrainer(cfg, tmp_path, progress=False)
    batch = {k: torch.stack([trainer.dataset[i][k] for i in range(4)]) for k in ("template", "search", "search_box")}
    trainer.model.train()
    trainer.next_path()
    first, state = trainer.arch, trainer.sampler.state_dict()
    heads = [first] + [trainer.sampler.resample(first, trainer.model.head_labels) for _ in range(2)]
    trainer.sampler.load_state_dict(state)
    assert all(a[label] == first[label] for a in heads for label in first.space.labels
               if label not in trainer.model.head_labels)
    assert len({str(a) for a in heads}) == 3
    torch.manual_seed(0)
    got = trainer.losses(batch)
    expected = []
    for arch in heads:
        trainer.model.set_arch(arch)
        cls, reg = trainer.model(batch["template"], batch["search"])
        expected.append(tracking_loss(cls, reg, batch["search_box"], trainer.model.search_size, trainer.model.stride,
                                      cfg["train"]["label_radius_px"], cfg["train"]["reg_loss_weight"])["loss"])
    # BatchNorm in train mode: the backbone ran once per call in both, so statistics match
    assert torch.allclose(got["loss"], torch.stack(expected).mean(), atol=1e-5)
    with pytest.raises(Exception, match="head_paths"):
        load_experiment(micro_config, {"sampling": {"head_paths": 0}})


def test_head_teacher_trains_the_largest_head_and_distils_into_the_sampled_one(micro_config, tmp_path):
    import torch.nn.functional as F

    from lighttrack_nas.data.targets import build_targets
    from lighttrack_nas.train import tracking_loss
    from lighttrack_nas.train.loss import iou_loss

    cfg = load_experiment(micro_config, {"sampling": {"head_teacher": True, "distill": 0.5, "distill_reg": 0.3}})
    trainer = SupernetTrainer(cfg, tmp_path, progress=False)
    m, teacher_head = trainer.model, trainer.teacher_head
    assert teacher_head["cls_w"] == 256 and teacher_head["reg_w"] == 256
    assert all(teacher_head[f"{k}.{i}"] == "k5" for k in ("cls", "reg") for i in range(8))
    batch = {k: torch.stack([trainer.dataset[i][k] for i in range(4)]) for k in ("template", "search", "search_box")}
    m.train()
    while True:   # a sampled head other than the teacher's
        trainer.next_path()
        if trainer.arch["cls_w"] != 256:
            break
    arch = trainer.arch
    got = trainer.losses(batch)
    outputs, parts = [], []
    for a in (arch, m.space.validate({**arch, **teacher_head})):
        m.set_arch(a)
        cls, reg = m(batch["template"], batch["search"])
        outputs.append((cls, reg))
        parts.append(tracking_loss(cls, reg, batch["search_box"], m.search_size, m.stride,
                                   cfg["train"]["label_radius_px"], cfg["train"]["reg_loss_weight"])["loss"])
    (cls, reg), (teacher_cls, teacher_reg) = outputs
    distill = F.binary_cross_entropy_with_logits(cls, torch.sigmoid(teacher_cls))
    inside = build_targets(batch["search_box"], m.search_size, reg.shape[-1], m.stride)[2]
    assert inside.sum() > 0
    distill_reg = iou_loss(reg, teacher_reg, inside)   # the teacher's boxes at every cell inside the target
    assert torch.allclose(got["distill"], distill, atol=1e-5)
    assert torch.allclose(got["distill_reg"], distill_reg, atol=1e-5)
    assert torch.allclose(got["loss"], (parts[0] + parts[1]) / 2 + 0.5 * distill + 0.3 * distill_reg, atol=1e-5)
    got["loss"].backward()   # the teacher's tower learns from every path
    assert m.towers["cls"].candidates["256"][-1].conv.weight.grad is not None
    for key in ("distill", "distill_reg"):
        with pytest.raises(Exception, match="head_teacher"):
            load_experiment(micro_config, {"sampling": {key: 1.0}})


def test_nan_loss_stops_naming_the_iteration(micro_config, tmp_path, monkeypatch):
    import lighttrack_nas.train.trainer as trainer_module

    trainer = SupernetTrainer(load_experiment(micro_config), tmp_path, progress=False)
    monkeypatch.setattr(trainer_module, "model_loss",
                        lambda *a, **k: {"loss": torch.tensor(float("nan")), "cls": torch.tensor(0.0),
                                         "reg": torch.tensor(0.0)})
    with pytest.raises(TrainingError, match="loss became nan at iteration 0"):
        trainer.train()


def test_killed_run_resumes_to_identical_weights(micro_config, tmp_path):
    # both runs as fresh processes, so thread settings left by other tests cannot differ between them
    uninterrupted = subprocess.run(_train_cmd(micro_config, tmp_path / "ref"), cwd=ROOT, capture_output=True, text=True)
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    ref = _state(tmp_path / "ref" / "checkpoint.pt")
    assert ref["iteration"] == 12

    out = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(micro_config, out), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (out / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _state(out / "checkpoint.pt")["iteration"]
    assert killed_at < 12, "the run finished before it could be killed"
    done = subprocess.run(_train_cmd(micro_config, out, "--resume"), cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    resumed = _state(out / "checkpoint.pt")
    assert resumed["iteration"] == 12
    for name, value in ref["model"].items():
        assert (value.float() - resumed["model"][name].float()).abs().max() <= 1e-6, name
    records = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    assert records[-1]["iteration"] == 12 and (out / "loss.png").exists()
    assert all(r["samples_per_s"] > 0 and r["peak_rss_mb"] > 100 for r in records)  # torch alone takes more


def test_existing_checkpoint_needs_resume_flag(micro_config, tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    out = subprocess.run(_train_cmd(micro_config, tmp_path), cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and "pass --resume" in out.stderr


def test_corrupt_frames_are_skipped_and_counted(micro_config, tmp_path):
    cfg = load_experiment(micro_config)
    cfg["data"]["root"] = str(tmp_path / "data")
    trainer = SupernetTrainer(cfg, tmp_path / "run", max_iters=4, progress=False)
    frames = sorted((tmp_path / "data" / "train").glob("*/0000000[3-5].jpg"))  # 3 of 8 per sequence
    for frame in frames:
        frame.write_bytes(b"not a jpeg")
    trainer.train()
    assert trainer.skipped > 0 and trainer.iteration == 4


def test_two_process_torchrun(micro_config, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29517",
                          *_train_cmd(micro_config, tmp_path, "--max-iters", "4")[1:]],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    state = _state(tmp_path / "checkpoint.pt")
    assert state["iteration"] == 4
    record = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])
    assert record["iteration"] == 4 and np.isfinite(record["loss"])


def test_weight_average_is_checkpointed_used_and_resumed(micro_config, tmp_path):
    """``train.ema_decay``: the checkpoint's ``model`` is the moving average (first step copies, then
    decay * average + (1 - decay) * weights), the trained weights are ``training_model``, and a run
    stopped after 5 iterations and resumed ends exactly where an uninterrupted one does."""
    from lighttrack_nas.models import load_supernet

    decay = 0.75
    cfg = load_experiment(micro_config, {"train": {"ema_decay": decay}})
    trainer = SupernetTrainer(cfg, tmp_path / "ref", max_iters=1, progress=False)
    trainer.train()
    first = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.stop_at = 2
    trainer.train()
    state = _state(tmp_path / "ref" / "checkpoint.pt")
    assert state["iteration"] == 2 and int(state["ema_updates"]) == 2
    moved = 0
    for name, weight in trainer.model.named_parameters():
        expected = decay * first[name] + (1 - decay) * weight.detach()
        assert torch.allclose(state["model"][name], expected, atol=1e-6), name
        assert torch.equal(state["training_model"][name], weight.detach())
        moved += not torch.equal(first[name], weight.detach())
    assert moved, "nothing trained: the check above proves nothing"
    trainer.stop_at = 12
    trainer.train()
    reference = _state(tmp_path / "ref" / "checkpoint.pt")
    loaded = load_supernet(tmp_path / "ref" / "checkpoint.pt").state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in reference["model"].items())

    SupernetTrainer(cfg, tmp_path / "cut", max_iters=5, progress=False).train()
    resumed = SupernetTrainer(cfg, tmp_path / "cut", progress=False)
    assert resumed.resume() and resumed.iteration == 5
    resumed.train()
    final = _state(tmp_path / "cut" / "checkpoint.pt")
    for key in ("model", "training_model"):
        for name, value in reference[key].items():
            assert (value.float() - final[key][name].float()).abs().max() <= 1e-6, (key, name)
    with pytest.raises(Exception, match="ema_decay"):
        load_experiment(micro_config, {"train": {"ema_decay": 1.0}})
    plain = SupernetTrainer(load_experiment(micro_config), tmp_path / "cut", progress=False)
    assert plain.resume()  # a config without averaging resumes from the trained weights
    weights = plain.model.state_dict()
    assert all(torch.equal(weights[k], v) for k, v in final["training_model"].items())
    SupernetTrainer(load_experiment(micro_config), tmp_path / "plain", max_iters=1, progress=False).train()
    with pytest.raises(ValueError, match="written without train.ema_decay"):
        SupernetTrainer(cfg, tmp_path / "plain", progress=False).resume()
