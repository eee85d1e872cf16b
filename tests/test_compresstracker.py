"""CompressTracker: stage division and initialisation, the replacement schedule and forward, the loss
switches, a frozen teacher, the end-to-end run (tool, report, loadable student), resume and refusals."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lighttrack_nas.compress.compresstracker import (CompressSettings, CompressTrainer, compress_checkpoint, peak_boxes,
                                                     replacement_probability, run_stages, sample_stages,
                                                     stage_division, student_from_teacher)
from lighttrack_nas.config import ConfigError
from lighttrack_nas.models import ViTTracker, build_model, load_tracking_model, read_checkpoint
from lighttrack_nas.train.baseline import BaselineTrainer
from lighttrack_nas.train.loss import giou, ostrack_loss
from lighttrack_nas.config import load_experiment

ROOT = Path(__file__).resolve().parents[1]
DEPTH = 6
MICRO_VIT = {"family": "vit", "template_size": 32, "search_size": 64, "patch": 16, "embed_dim": 16, "depth": DEPTH,
             "heads": 2, "mlp_ratio": 2, "cls_tower": [8], "reg_tower": [8]}


@pytest.fixture(scope="module")
def vit_config(micro_config, tmp_path_factory):
    """The micro experiment with a 6-layer micro ViT, 4 iterations of batch 2, a compress section."""
    cfg = yaml.safe_load(Path(micro_config).read_text())
    cfg["model"] = MICRO_VIT
    cfg["train"].update({"epochs": 1, "iters_per_epoch": 4, "batch_size": 2, "freeze_backbone_epochs": 0,
                         "checkpoint_every": 1, "log_every": 1, "optimizer": "adamw",
                         "lr": {"start": 1e-3, "peak": 1e-3, "final": 1e-4, "warmup_epochs": 0}})
    cfg["compress"] = {"layers": 2, "latency": {"threads": 1, "min_run_time": 0.01}}
    path = tmp_path_factory.mktemp("vit") / "compress_micro.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def teacher_checkpoint(vit_config, tmp_path_factory):
    """A micro ViT trained for one iteration by BaselineTrainer (kind vit, with its model_spec)."""
    trainer = BaselineTrainer(load_experiment(vit_config), tmp_path_factory.mktemp("teacher"), max_iters=1,
                              progress=False)
    return trainer.train()


def _cfg(vit_config, **compress):
    cfg = load_experiment(vit_config)
    cfg["compress"] = {**cfg["compress"], **compress}
    return cfg


def _teacher(seed: int = 0) -> ViTTracker:
    torch.manual_seed(seed)
    return build_model(MICRO_VIT)


def _inputs(batch: int = 2):
    g = torch.Generator().manual_seed(1)
    return torch.randn(batch, 3, 32, 32, generator=g), torch.randn(batch, 3, 64, 64, generator=g)


def _batch(trainer):
    data = next(iter(torch.utils.data.DataLoader(trainer.dataset, batch_size=2)))
    return {k: data[k] for k in ("template", "search", "search_box")}


def test_stage_division_and_its_errors():
    assert stage_division(12, 4) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    assert stage_division(12, 2) == [list(range(6)), list(range(6, 12))]
    assert stage_division(12, 12) == [[i] for i in range(12)]
    for bad in (5, 8, 0):
        with pytest.raises(ValueError, match=r"compress.layers .* choose one of \[1, 2, 3, 4, 6, 12\]"):
            stage_division(12, bad)


@pytest.mark.parametrize("layers", [2, 3])
def test_student_starts_from_the_last_teacher_layer_of_each_stage(layers):
    teacher = _teacher()
    student = student_from_teacher(teacher, layers)
    assert isinstance(student, ViTTracker) and len(student.blocks) == layers
    assert student.spec() == {**teacher.spec(), "layers": teacher.spec()["layers"][:layers]}
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for name, value in s_state.items():
        if name.startswith("blocks."):
            i, rest = name.split(".", 2)[1:]
            source = f"blocks.{(int(i) + 1) * DEPTH // layers - 1}.{rest}"
        else:
            source = name  # embeddings, positions, final norm, head (BatchNorm statistics too)
        assert torch.equal(value, t_state[source]), name
        assert value.data_ptr() != t_state[source].data_ptr(), f"{name} shares memory with the teacher"
    assert set(s_state) == {k for k in t_state if not k.startswith("blocks.") or int(k.split(".")[1]) < layers}


def test_replacement_probability_schedule():
    default = {"start": 0.5, "warm": 0.1, "end": 0.1}
    p = lambda it, schedule=default: replacement_probability(it, 100, schedule)  # noqa: E731
    assert [p(0), p(9), p(10)] == [0.5, 0.5, 0.5]                    # first 10 %: start
    assert p(50) == pytest.approx(0.75) and 0.99 < p(89) < 1.0       # linear ramp to 1
    assert [p(90), p(99)] == [1.0, 1.0]                              # last 10 %: 1
    assert p(50, {"start": 0.2, "warm": 0.0, "end": 0.0}) == pytest.approx(0.6)
    step = {"start": 0.0, "warm": 0.5, "end": 0.5}                   # no ramp: a step at half the run
    assert [p(49, step), p(50, step)] == [0.0, 1.0]


def test_stage_coins():
    g = torch.Generator().manual_seed(0)
    assert all(sample_stages(1.0, 4, g) == [True] * 4 for _ in range(20))
    forced = [sample_stages(0.0, 4, g) for _ in range(200)]
    assert all(sum(use) == 1 for use in forced)                      # p = 0: exactly the forced stage
    assert {use.index(True) for use in forced} == {0, 1, 2, 3}       # drawn uniformly
    a, b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert [sample_stages(0.5, 3, a) for _ in range(10)] == [sample_stages(0.5, 3, b) for _ in range(10)]


def test_staged_forward_matches_the_plain_networks():
    teacher = _teacher().eval()
    student = student_from_teacher(teacher, 3).eval()
    z, x = _inputs()
    with torch.no_grad():
        cls, reg, outputs = run_stages(student, [[b] for b in student.blocks], z, x)
        ref = student(z, x)
        assert torch.equal(cls, ref[0]) and torch.equal(reg, ref[1]) and len(outputs) == 3
        t_stages = [[teacher.blocks[j] for j in s] for s in stage_division(DEPTH, 3)]
        t_cls, t_reg, t_outputs = run_stages(teacher, t_stages, z, x)
        assert torch.equal(t_cls, teacher(z, x)[0]) and torch.equal(t_reg, teacher(z, x)[1])
        # teacher stages then a student layer: the embeddings are the teacher's, student layer 2 is teacher layer 5
        mixed = run_stages(student, [t_stages[0], t_stages[1], [student.blocks[2]]], z, x)[2]
        assert torch.equal(mixed[0], t_outputs[0]) and torch.equal(mixed[1], t_outputs[1])
        assert torch.equal(mixed[2], teacher.blocks[5](t_outputs[1]))


def test_p_zero_runs_teacher_stages_and_their_gradients_reach_the_student(vit_config, teacher_checkpoint, tmp_path):
    cfg = _cfg(vit_config, layers=3, schedule={"start": 0.0, "warm": 1.0, "end": 0.0})  # p = 0 throughout
    trainer = CompressTrainer(cfg, tmp_path, teacher_checkpoint, CompressSettings.from_experiment(cfg), progress=False)
    trainer.next_path()
    assert trainer.p == 0.0 and sum(trainer.use_student) == 1
    forced = trainer.use_student.index(True)
    batch = _batch(trainer)
    parts = trainer.losses(batch)
    stages = [[trainer.model.blocks[i]] if i == forced else trainer.teacher_stages[i] for i in range(3)]
    cls, reg, _ = run_stages(trainer.model, stages, batch["template"], batch["search"])
    assert parts["p"].item() == 0.0
    gt = ostrack_loss(cls, reg, batch["search_box"], trainer.model.search_size, trainer.model.stride)
    assert [parts[k].item() for k in ("cls", "reg")] == pytest.approx([gt[k].item() for k in ("cls", "reg")])
    parts["loss"].backward()
    grads = {n: p.grad for n, p in trainer.model.named_parameters()}
    assert grads["patch_embed.weight"].abs().sum() > 0               # reached through the teacher stages
    for i in range(3):
        used = grads[f"blocks.{i}.mlp.fc1.weight"] is not None
        assert used == (i == forced), i                                  # only the forced student layer ran
    assert grads[f"blocks.{forced}.mlp.fc1.weight"].abs().sum() > 0     # (before teacher stages unless it is last)
    assert all(p.grad is None and not p.requires_grad for p in trainer.teacher.parameters())


def test_loss_switches_and_an_identical_student(vit_config, teacher_checkpoint, tmp_path):
    keys = {}
    for name, switches in {"all": {}, "no_guidance": {"guidance": False}, "no_mimic": {"mimic": False},
                           "plain": {"replacement": False, "guidance": False, "mimic": False}}.items():
        cfg = _cfg(vit_config, **switches)
        trainer = CompressTrainer(cfg, tmp_path / name, teacher_checkpoint, CompressSettings.from_experiment(cfg),
                                  progress=False)
        trainer.next_path()
        parts = trainer.losses(_batch(trainer))
        keys[name] = set(parts)
        extra = sum(parts[k] for k in ("guidance", "mimic") if k in parts)
        assert parts["loss"].item() == pytest.approx((parts["cls"] + parts["reg"] + extra).item(), rel=1e-6)
        if name == "all":
            assert parts["guidance"] > 0 and parts["mimic"] > 0
        if name == "plain":
            assert trainer.use_student == [True, True]
    base = {"loss", "cls", "reg", "giou", "l1"}
    assert keys == {"all": base | {"guidance", "mimic", "p"}, "no_guidance": base | {"mimic", "p"},
                    "no_mimic": base | {"guidance", "p"}, "plain": base}
    cfg = _cfg(vit_config, layers=DEPTH, replacement=False)  # the student is the teacher: nothing to mimic
    trainer = CompressTrainer(cfg, tmp_path / "same", teacher_checkpoint, CompressSettings.from_experiment(cfg),
                              progress=False)
    trainer.next_path()
    trainer.model.eval()  # the towers' BatchNorm as the teacher's
    batch = _batch(trainer)
    parts = trainer.losses(batch)
    with torch.no_grad():
        boxes = peak_boxes(*trainer.teacher(batch["template"], batch["search"]), 64, 16)
    # L1 0; GIoU of a box with itself (1 - GIoU is 1 for a degenerate box)
    assert parts["mimic"].item() == pytest.approx(0.0, abs=1e-9)
    assert parts["guidance"].item() == pytest.approx(2 * (1 - giou(boxes, boxes)).mean().item(), abs=1e-6)


def test_settings_errors_name_the_field(vit_config):
    cfg = load_experiment(vit_config)
    for section, match in (({"mimic": "yes"}, r"compress.mimic must be a bool, got 'yes'"),
                           ({"layers": 0}, r"compress.layers must be an integer >= 1 \(student layers\)"),
                           ({"schedule": {"start": 1.5}}, r"compress.schedule.start must be a number in \[0, 1\]"),
                           ({"schedule": {"warm": 0.6, "end": 0.5}}, r"compress.schedule: warm \+ end"),
                           ({"mimic_weight": -1}, r"compress.mimic_weight must be a number >= 0"),
                           ({"bogus": 1}, r"compress: unknown key\(s\) \['bogus'\]"),
                           ({"train": {"epochz": 1}}, r"compress.train: unknown key")):
        with pytest.raises(ConfigError, match=match):
            CompressSettings.from_experiment({**cfg, "compress": section})


def test_teacher_is_frozen_while_the_student_trains(vit_config, teacher_checkpoint, tmp_path):
    cfg = _cfg(vit_config)
    trainer = CompressTrainer(cfg, tmp_path, teacher_checkpoint, CompressSettings.from_experiment(cfg), max_iters=2,
                              progress=False)
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    stored = read_checkpoint(teacher_checkpoint)["model"]
    assert all(torch.equal(v, stored[k]) for k, v in trainer.teacher.state_dict().items())
    assert all(p.grad is None for p in trainer.teacher.parameters()) and not trainer.teacher.training
    assert any(not torch.equal(v, start[k]) for k, v in trainer.model.state_dict().items())


def test_tool_end_to_end_report_loadable_student_and_refusals(vit_config, teacher_checkpoint, tmp_path):
    out = tmp_path / "ct"
    cmd = [sys.executable, str(ROOT / "tools" / "compress.py"), "--method", "compresstracker", "--teacher",
           str(teacher_checkpoint), "--layers", "3", "--out", str(out), "--config", str(vit_config), "--no-progress"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "compress.json").read_text())
    assert report["method"] == "compresstracker" and report["layers"] == 3 and report["teacher_layers"] == DEPTH
    assert report["stages"] == [[0, 1], [2, 3], [4, 5]] and report["student_init"] == [1, 3, 5]
    assert report["replacement"] and report["guidance"] and report["mimic"]
    assert report["training"] == {"iterations": 4, "batch_size": 2, "done": 4}
    assert 0 < report["student"]["macs"] < report["teacher"]["macs"] and report["student"]["latency_ms"] > 0
    assert report["ratio"]["macs"] == pytest.approx(report["student"]["macs"] / report["teacher"]["macs"])
    data = read_checkpoint(out / "checkpoint.pt")
    assert data["kind"] == "vit" and len(data["model_spec"]["layers"]) == 3 and data["iteration"] == 4
    assert data["teacher"] == str(teacher_checkpoint) and data["compress"]["layers"] == 3
    model = load_tracking_model(out / "checkpoint.pt", None)
    z, x = _inputs(1)
    with torch.no_grad():
        model.template(z)
        cls, reg = model.track(x)
    assert isinstance(model, ViTTracker) and cls.shape == (1, 1, 4, 4) and reg.shape == (1, 4, 4, 4)
    log = (out / "log.jsonl").read_text()
    assert [json.loads(line)["iteration"] for line in log.splitlines()] == [1, 2, 3, 4] and (out / "loss.png").exists()

    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 2 and "--resume" in again.stderr
    cfg = load_experiment(vit_config)
    assert compress_checkpoint(cfg, teacher_checkpoint, out, 3, resume=True, progress=False) == report
    assert (out / "log.jsonl").read_text() == log                       # finished: not redone
    with pytest.raises(ValueError, match=r"other settings \(layers differ\)"):
        compress_checkpoint(cfg, teacher_checkpoint, out, 2, resume=True, progress=False)
    with pytest.raises(ValueError, match=r"other settings \(mimic differ\)"):
        compress_checkpoint(_cfg(vit_config, mimic=False), teacher_checkpoint, out, 3, resume=True, progress=False)


def test_cli_rejects_a_layer_count_that_does_not_divide_the_teacher(vit_config, teacher_checkpoint, tmp_path):
    cmd = [sys.executable, str(ROOT / "tools" / "compress.py"), "--method", "compresstracker", "--teacher",
           str(teacher_checkpoint), "--layers", "4", "--out", str(tmp_path), "--config", str(vit_config)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "4 does not divide the teacher's 6 layers" in proc.stderr
    assert "choose one of [1, 2, 3, 6]" in proc.stderr and not (tmp_path / "checkpoint.pt").exists()


def test_resumed_run_matches_an_uninterrupted_one(vit_config, teacher_checkpoint, tmp_path):
    cfg = _cfg(vit_config, layers=3, schedule={"start": 0.5, "warm": 1.0, "end": 0.0})  # p = 0.5: the coins matter
    full = compress_checkpoint(cfg, teacher_checkpoint, tmp_path / "full", progress=False)
    partial = compress_checkpoint(cfg, teacher_checkpoint, tmp_path / "cut", progress=False, max_iters=2)
    assert partial["training"]["done"] == 2 and not (tmp_path / "cut" / "compress.json").exists()
    compress_checkpoint(cfg, teacher_checkpoint, tmp_path / "cut", resume=True, progress=False)
    ref, resumed = (read_checkpoint(tmp_path / name / "checkpoint.pt") for name in ("full", "cut"))
    assert full["training"]["done"] == resumed["iteration"] == 4
    assert torch.equal(ref["coin_rng"], resumed["coin_rng"])
    for name, value in ref["model"].items():
        assert (value.float() - resumed["model"][name].float()).abs().max() <= 1e-6, name
