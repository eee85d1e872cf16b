"""CompressTracker (Hong et al. 2024): a ViT tracker compressed to fewer layers by stage replacement.

The teacher's ``D`` layers are divided into ``N`` consecutive stages of ``D / N`` layers; student layer
``i`` replaces stage ``i`` and starts from the stage's last teacher layer, and the embeddings and the
head start from the teacher's (all of the student trains; the teacher is frozen). Training:

- **replacement training**: every stage runs, independently, the student layer with probability ``p``
  or else the frozen teacher layers of that stage (at least one stage runs the student; gradients flow
  through teacher stages to the student layers before them). ``p`` is ``schedule.start`` for the first
  ``schedule.warm`` of the run, rises linearly to 1, and is 1 for the last ``schedule.end``;
- **ground truth**: OSTrack's loss (focal 1 + GIoU 2 + L1 5) of the student's prediction;
- **prediction guidance**: GIoU (``guidance_giou``) + L1 (``guidance_l1``) between the box the student
  reads at its score peak and the teacher's at its own;
- **feature mimicking**: ``mimic_weight`` x the MSE between the output tokens of every stage that ran
  its student layer and the teacher's stage output (search and template tokens averaged).

:func:`compress_checkpoint` is the whole run of ``tools/compress.py``. Files in the output folder ``OUT``:
``checkpoint.pt`` (kind ``vit`` with the student's ``model_spec``: every tool loads it as a vit
checkpoint; the compress settings, teacher path and coin-flip RNG are in it too), ``log.jsonl``,
``tensorboard/``, ``loss.png`` (the Trainer's) and ``compress.json`` (written when the training ends).
"""
from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DEFAULT_TRAIN, ConfigError, Field, check_keys, check_section, deep_merge
from ..cost.count import count_tracking_model
from ..cost.latency import network_latency
from ..io import atomic_write
from ..machine import machine_info
from ..models.build import build_model, read_checkpoint
from ..models.transformer import ViTTracker
from ..train.loss import box_losses, ltrb_boxes, model_loss
from ..train.trainer import Trainer
from .pipeline import _phase, load_network

METHOD = "compresstracker"
COMPRESS_DEFAULTS: dict[str, Any] = {
    "layers": 4, "replacement": True, "guidance": True, "mimic": True,
    "schedule": {"start": 0.5, "warm": 0.1, "end": 0.1},
    "guidance_giou": 2.0, "guidance_l1": 5.0, "mimic_weight": 0.2,
    "latency": {"threads": 1, "min_run_time": 0.5}, "train": {},
}
COMPRESS_FIELDS: dict[str, Field] = {
    "layers": Field(int, low=1, note="(student layers)"), "replacement": Field(bool), "guidance": Field(bool),
    "mimic": Field(bool), "schedule": Field(dict), "guidance_giou": Field(low=0), "guidance_l1": Field(low=0),
    "mimic_weight": Field(low=0), "latency": Field(dict), "train": Field(dict),
}
LATENCY_FIELDS = {"threads": Field(int, low=1), "min_run_time": Field(low=0, low_open=True)}


@dataclass(frozen=True)
class CompressSettings:
    """The ``compress:`` section of an experiment (defaults in :data:`COMPRESS_DEFAULTS`)."""

    layers: int
    replacement: bool
    guidance: bool
    mimic: bool
    schedule: dict[str, float]
    guidance_giou: float
    guidance_l1: float
    mimic_weight: float
    latency: dict[str, Any]
    train: dict[str, Any]

    @classmethod
    def from_experiment(cls, cfg: Mapping[str, Any], layers: int | None = None) -> "CompressSettings":
        """Parse ``cfg['compress']``; ``layers`` (command line) overrides it. Errors name the field."""
        s = deep_merge(COMPRESS_DEFAULTS, cfg.get("compress") or {})
        s["layers"] = s["layers"] if layers is None else layers
        check_section(s, COMPRESS_FIELDS, "compress")
        check_section(s["schedule"], {k: Field(low=0, high=1) for k in COMPRESS_DEFAULTS["schedule"]},
                      "compress.schedule")
        check_section(s["latency"], LATENCY_FIELDS, "compress.latency")
        check_keys(s["train"], set(DEFAULT_TRAIN), "compress.train")
        schedule = {k: float(v) for k, v in s["schedule"].items()}
        if schedule["warm"] + schedule["end"] > 1:
            raise ConfigError(f"compress.schedule: warm + end must be at most 1 (fractions of the run), got "
                              f"{schedule['warm']} + {schedule['end']}")
        return cls(int(s["layers"]), s["replacement"], s["guidance"], s["mimic"], schedule, float(s["guidance_giou"]),
                   float(s["guidance_l1"]), float(s["mimic_weight"]), dict(s["latency"]), dict(s["train"]))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)




def stage_division(teacher_depth: int, layers: int) -> list[list[int]]:
    """The teacher layer indices of each of ``layers`` consecutive, equal stages; ``layers`` must divide
    ``teacher_depth`` (the error lists the divisors)."""
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1 or teacher_depth % layers:
        divisors = [n for n in range(1, teacher_depth + 1) if teacher_depth % n == 0]
        raise ValueError(f"compress.layers (--layers): {layers!r} does not divide the teacher's {teacher_depth} "
                         f"layers into equal stages; choose one of {divisors}")
    size = teacher_depth // layers
    return [list(range(i * size, (i + 1) * size)) for i in range(layers)]


def student_from_teacher(teacher: ViTTracker, layers: int) -> ViTTracker:
    """A ``layers``-layer student of the teacher's widths: layer ``i`` is a copy of the last teacher layer
    of stage ``i``, every other module (embeddings, final norm, head) a copy of the teacher's."""
    stages = stage_division(len(teacher.blocks), layers)
    spec = teacher.spec()
    student = build_model({**spec, "layers": [spec["layers"][stage[-1]] for stage in stages]})
    state = {k: v for k, v in teacher.state_dict().items() if not k.startswith("blocks.")}
    for i, stage in enumerate(stages):
        state.update({f"blocks.{i}.{k}": v for k, v in teacher.blocks[stage[-1]].state_dict().items()})
    student.load_state_dict(copy.deepcopy(state))
    return student


def replacement_probability(iteration: int, total: int, schedule: Mapping[str, float]) -> float:
    """Probability that a stage runs its student layer at ``iteration`` of ``total``: ``start`` during the
    first ``warm`` fraction, then linear to 1 at the start of the last ``end`` fraction, then 1."""
    t = iteration / max(1, total)
    start, warm, end = schedule["start"], schedule["warm"], schedule["end"]
    if t < warm:
        return float(start)
    if t >= 1 - end:
        return 1.0
    return min(1.0, start + (1 - start) * (t - warm) / (1 - warm - end))


def sample_stages(p: float, stages: int, generator: torch.Generator) -> list[bool]:
    """Per stage, whether it runs the student layer (independently with probability ``p``); when no stage
    does, one drawn uniformly does."""
    use = (torch.rand(stages, generator=generator) < p).tolist()
    if not any(use):
        use[int(torch.randint(stages, (1,), generator=generator))] = True
    return use


def run_stages(model: ViTTracker, stages: Sequence[Sequence[nn.Module]], z: torch.Tensor,
               x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """``model``'s embeddings, each stage's layers in turn, then ``model``'s head: classification
    logits, l,t,r,b distances and the output tokens of every stage."""
    tokens = model.encode(model.template_features(z), x)
    outputs = []
    for layers in stages:
        for layer in layers:
            tokens = layer(tokens)
        outputs.append(tokens)
    cls, reg = model.decode(tokens)
    return cls, reg, outputs


def peak_boxes(cls: torch.Tensor, reg: torch.Tensor, search_size: int, stride: int) -> torch.Tensor:
    """The x1,y1,x2,y2 box ``(B, 4)`` at each score map's peak (the box the tracker reads)."""
    boxes = ltrb_boxes(reg, search_size, stride).flatten(1, 2)
    return boxes[torch.arange(boxes.shape[0], device=boxes.device), cls.flatten(1).argmax(dim=1)]


def run_request(cfg: Mapping[str, Any], settings: CompressSettings, teacher_checkpoint: str | Path) -> dict[str, Any]:
    """What identifies a compression run (a resumed run must match it): method, settings, effective
    train section, seed and teacher."""
    return {"method": METHOD, **settings.to_dict(), "train": deep_merge(cfg["train"], settings.train),
            "seed": int(cfg.get("seed", 0)), "teacher": str(Path(teacher_checkpoint).resolve())}


def load_teacher(checkpoint: str | Path) -> ViTTracker:
    """The ViT of ``checkpoint`` (any checkpoint holding a ``vit`` ``model_spec``)."""
    teacher = load_network(checkpoint)
    if not isinstance(teacher, ViTTracker):
        raise ValueError(f"--teacher {checkpoint}: CompressTracker compresses a 'vit' network, this checkpoint "
                         f"holds a {teacher.spec()['family']!r} one")
    if teacher.spec().get("gates"):
        raise ValueError(f"--teacher {checkpoint}: holds ViT-Slim soft masks (a sparsity-training checkpoint); "
                         f"compress a dense or pruned network")
    return teacher


class CompressTrainer(Trainer):
    """Trains the ``settings.layers``-layer student of the teacher in ``teacher_checkpoint`` with
    replacement training, prediction guidance and feature mimicking (see the module docstring); the
    experiment's ``train`` section with ``settings.train`` merged over it."""

    kind = "vit"

    def __init__(self, cfg: dict[str, Any], out_dir: str | Path, teacher_checkpoint: str | Path,
                 settings: CompressSettings, max_iters: int | None = None, progress: bool = True):
        self.settings, self.teacher_checkpoint = settings, Path(teacher_checkpoint)
        self.request = run_request(cfg, settings, teacher_checkpoint)
        super().__init__(_phase(cfg, settings.train), out_dir, max_iters, progress)
        self.teacher.to(self.device).eval().requires_grad_(False)
        self.teacher_stages = [[self.teacher.blocks[j] for j in stage] for stage in self.stages]
        self.coins = torch.Generator().manual_seed(self.seed)
        self.p, self.use_student = 1.0, [True] * len(self.stages)

    def build_model(self) -> nn.Module:
        self.teacher = load_teacher(self.teacher_checkpoint)
        self.stages = stage_division(len(self.teacher.blocks), self.settings.layers)
        return student_from_teacher(self.teacher, self.settings.layers)

    def next_path(self) -> str:
        if self.settings.replacement:
            self.p = replacement_probability(self.iteration, self.total, self.settings.schedule)
            self.use_student = sample_stages(self.p, len(self.stages), self.coins)
        return f"student layers in stages {[i for i, s in enumerate(self.use_student) if s]} (p = {self.p:.3f})"

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        s, m, z, x = self.settings, self.model, batch["template"], batch["search"]
        stages = [[m.blocks[i]] if student else teacher
                  for i, (student, teacher) in enumerate(zip(self.use_student, self.teacher_stages))]
        cls, reg, outputs = run_stages(m, stages, z, x)
        parts = model_loss(m, cls, reg, batch["search_box"], self.train_cfg, self.search_size)
        if s.guidance or s.mimic:
            with torch.no_grad():
                t_cls, t_reg, t_outputs = run_stages(self.teacher, self.teacher_stages, z, x)
        if s.guidance:
            guide = box_losses(peak_boxes(cls, reg, self.search_size, m.stride),
                               peak_boxes(t_cls, t_reg, self.search_size, m.stride),
                               torch.ones(cls.shape[0], device=cls.device), self.search_size)
            parts["guidance"] = s.guidance_giou * guide["giou"] + s.guidance_l1 * guide["l1"]
        if s.mimic:
            n = m.score_size ** 2
            terms = [(F.mse_loss(o[:, -n:], t[:, -n:]) + F.mse_loss(o[:, :-n], t[:, :-n])) / 2
                     for o, t, student in zip(outputs, t_outputs, self.use_student) if student]
            parts["mimic"] = s.mimic_weight * torch.stack(terms).mean()
        parts["loss"] = parts["loss"] + sum(parts[k] for k in ("guidance", "mimic") if k in parts)
        if s.replacement:
            parts["p"] = torch.tensor(self.p)
        return parts

    def extra_state(self) -> dict[str, Any]:
        return {"model_spec": self.model.spec(), "compress": self.request, "teacher": str(self.teacher_checkpoint),
                "stages": self.stages, "coin_rng": self.coins.get_state()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.coins.set_state(state["coin_rng"])


def _measure(model: ViTTracker, latency: Mapping[str, Any]) -> dict[str, Any]:
    cost = count_tracking_model(model)
    ms = network_latency(model, int(latency["threads"]), float(latency["min_run_time"])).ms
    return {"layers": len(model.blocks), "macs": cost.macs, "params": cost.params,
            "template_macs": cost.template_macs, "latency_ms": ms}


def compress_checkpoint(cfg: Mapping[str, Any], teacher_checkpoint: str | Path, out: str | Path,
                        layers: int | None = None, resume: bool = False, progress: bool = True,
                        max_iters: int | None = None) -> dict[str, Any]:
    """Compress the ViT of ``teacher_checkpoint`` to ``layers`` (default: ``compress.layers``) with
    CompressTracker into ``out`` (files in the module docstring); returns the ``compress.json`` record.

    A finished run (its ``compress.json`` is there) is returned as is with ``resume``; an interrupted one
    continues from its checkpoint; a run in ``out`` made with other settings is refused. ``max_iters``
    stops early (the schedule still spans the whole run); ``compress.json`` is written at the end only."""
    settings = CompressSettings.from_experiment(cfg, layers)
    out, request = Path(out), run_request(cfg, settings, teacher_checkpoint)
    teacher = load_teacher(teacher_checkpoint)
    stages = stage_division(len(teacher.blocks), settings.layers)  # fail before any training
    checkpoint, report_path = out / "checkpoint.pt", out / "compress.json"
    if checkpoint.exists():
        if not resume:
            raise ValueError(f"{out} holds a compression run: pass --resume to continue it, or choose another --out")
        stored = read_checkpoint(checkpoint).get("compress")
        if stored is None:
            raise ValueError(f"{checkpoint} is not a compression run: choose another --out")
        if stored != request:
            changed = sorted(k for k in request.keys() | stored.keys() if stored.get(k) != request.get(k))
            raise ValueError(f"{checkpoint} was compressed with other settings ({', '.join(changed)} differ): "
                             f"choose another --out")
        if report_path.exists():
            return json.loads(report_path.read_text())
    trainer = CompressTrainer(dict(cfg), out, teacher_checkpoint, settings, max_iters, progress)
    if resume:
        trainer.resume()
    trainer.train()
    student = copy.deepcopy(trainer.model).cpu().eval()
    costs = {"teacher": _measure(teacher.eval(), settings.latency), "student": _measure(student, settings.latency)}
    t, st = costs["teacher"], costs["student"]
    report = {
        "method": METHOD, "checkpoint": str(trainer.checkpoint_path), "teacher_checkpoint": str(teacher_checkpoint),
        "layers": settings.layers, "teacher_layers": len(teacher.blocks), "stages": stages,
        "student_init": [stage[-1] for stage in stages],
        **{k: getattr(settings, k) for k in ("replacement", "guidance", "mimic", "schedule")},
        "weights": {"guidance_giou": settings.guidance_giou, "guidance_l1": settings.guidance_l1,
                    "mimic": settings.mimic_weight},
        **costs, "ratio": {"macs": st["macs"] / t["macs"], "params": st["params"] / t["params"],
                           "speedup": t["latency_ms"] / st["latency_ms"]},
        "training": {"iterations": trainer.total, "batch_size": trainer.train_cfg["batch_size"],
                     "done": trainer.iteration},
        "latency": {**settings.latency, "form": "torch, per frame (template cached)", "machine": machine_info()},
    }
    if trainer.iteration == trainer.total:
        atomic_write(report_path, json.dumps(report, indent=2))
    return report
