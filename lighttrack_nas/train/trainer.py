"""Training of tracking networks: resumable, data-parallel, logged.

:class:`Trainer` trains any tracking network (``template_size``, ``search_size``, ``stride``,
``forward(z, x) -> (cls, reg)``, ``backbone_parameters()``) on the experiment's data with
LightTrack's loss and schedule; :class:`SupernetTrainer` is single-path one-shot training of the
weight-sharing supernet and :class:`SubnetTrainer` trains one architecture stand-alone.

For the supernet, one architecture is sampled per iteration (the same on every rank: the sampler is seeded
identically), the batch runs through that path only, and SGD updates only parameters that received
gradients, so ops off the path get no momentum and no weight decay. With ``train.ema_decay`` an
exponential moving average of the weights (``torch.optim.swa_utils.AveragedModel``) is kept beside
them and is what the checkpoint's ``model`` holds (what every consumer loads); the trained weights go
to ``training_model``. Checkpoints hold the model, optimiser, sampler and RNG states and the iteration;
they are written atomically, and a run killed at any moment resumes from the last one to the same
weights as an uninterrupted run.
"""
from __future__ import annotations

import json
import logging
import os
import resource
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..config import RESUME_FREE, ConfigError, StopError, config_differences
from ..data.pairs import PairDataset
from ..data.targets import build_targets
from ..cost import CostTable
from ..io import locked, new_figure, save_figure, save_torch
from ..models.build import build_supernet, read_checkpoint
from ..models.tracking import Predictor
from ..models.pretrained import init_backbone
from ..space.space import Architecture, experiment_space, largest_architecture
from .loss import iou_loss, model_loss, tracking_loss
from .sampling import PathSampler, learning_rate

log = logging.getLogger(__name__)

class TrainingError(StopError):
    """Training cannot go on (e.g. the loss became NaN); the message names the iteration."""


class _Batches:
    """Index lists for iterations ``start..total``: rank ``r`` of ``W`` takes a disjoint slice."""

    def __init__(self, start: int, total: int, batch: int, rank: int, world: int):
        self.start, self.total, self.batch, self.rank, self.world = start, total, batch, rank, world

    def __iter__(self) -> Iterator[list[int]]:
        for it in range(self.start, self.total):
            base = (it * self.world + self.rank) * self.batch
            yield list(range(base, base + self.batch))

    def __len__(self) -> int:
        return self.total - self.start


def peak_rss_mb() -> float:
    """Peak resident memory of this process (MiB; data-loader workers not included)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def split_backbone(model: torch.nn.Module, train_from: str | None) -> tuple[list[torch.nn.Parameter],
                                                                        list[torch.nn.Parameter]]:
    """(always frozen, trainable) backbone parameters. With ``train_from`` (a module path, e.g. ``layers.6``)
    the backbone parameters before the first one inside that module stay frozen for the whole run."""
    ids = {id(p) for p in model.backbone_parameters()}
    named = [(n, p) for n, p in model.named_parameters() if id(p) in ids]
    if train_from is None:
        return [], [p for _, p in named]
    start = next((i for i, (n, _) in enumerate(named) if n == train_from or n.startswith(train_from + ".")), None)
    if start is None:
        modules = list(dict.fromkeys(".".join(n.split(".")[:2]) for n, _ in named))
        raise ConfigError(f"train.train_backbone_from: no backbone parameter lies in {train_from!r}; "
                          f"the backbone's modules in order: {', '.join(modules)}")
    return [p for _, p in named[:start]], [p for _, p in named[start:]]


def training_search_size(model: torch.nn.Module, size: Any) -> int:
    """The side of the training search crops: ``train.search_size``, or the model's own search size (the
    crop it tracks at, which its costs count) when that is None. A fully convolutional model may train on
    crops of another size than it tracks at; a model whose positional embeddings fix the size may not."""
    if size is None:
        return int(model.search_size)
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0 or size % model.stride:
        raise ConfigError(f"train.search_size must be a positive multiple of the model's stride {model.stride} "
                          f"(or null: the model's search_size {model.search_size}), got {size!r}")
    if size != model.search_size and not model.fully_convolutional:
        raise ConfigError(f"train.search_size {size}: {type(model).__name__} tracks at search_size "
                          f"{model.search_size} and is not fully convolutional (its positional embeddings fix "
                          f"the size); set train.search_size to null or {model.search_size}")
    return size


def training_memory_format(model: torch.nn.Module, channels_last: bool) -> torch.memory_format:
    """Channels-last when asked for and every spatial (k > 1) feature convolution has channel counts that
    are multiples of 8 (an RGB input and the 1- and 4-map predictors excepted).

    Channels-last makes oneDNN's depthwise-convolution backward 3-4x faster on CPU (docs/benchmarks.md),
    but on the odd channel counts of pruned networks (e.g. 15 -> 11) its convolution backward aborts the
    process ("double free or corruption", torch 2.13 CPU): those networks train in contiguous layout."""
    if not channels_last:
        return torch.contiguous_format
    predictors = {id(m.conv) for m in model.modules() if isinstance(m, Predictor)}
    odd = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and max(m.kernel_size) > 1
           and id(m) not in predictors and (m.out_channels % 8 or (m.in_channels % 8 and m.in_channels != 3))]
    if odd:
        log.info("contiguous layout: %d convolutions have channel counts that are not multiples of 8 (e.g. %s)",
                 len(odd), odd[0])
        return torch.contiguous_format
    return torch.channels_last


class Trainer:
    """Trains the network built by :meth:`build_model` on an experiment config into ``out_dir``."""

    kind = "model"

    def __init__(self, cfg: dict[str, Any], out_dir: str | Path, max_iters: int | None = None, progress: bool = True):
        from ..data.sources import load_split

        self.cfg, self.out = cfg, Path(out_dir)
        self.train_cfg = tc = cfg["train"]
        self.seed = int(cfg.get("seed", 0))
        self.rank, self.world = _init_distributed()
        self.device = _device(cfg.get("device", "auto"), self.rank)
        if tc["threads"]:
            torch.set_num_threads(int(tc["threads"]))
        torch.manual_seed(self.seed)
        model = self.build_model()
        self.search_size = training_search_size(model, tc["search_size"])
        self.memory_format = training_memory_format(model, tc["channels_last"])
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.total = tc["epochs"] * tc["iters_per_epoch"]
        self.stop_at = min(self.total, max_iters) if max_iters else self.total
        self.accumulate = int(cfg["sampling"].get("accumulate", 1))
        frozen, self.backbone_params = split_backbone(self.model, tc["train_backbone_from"])
        for p in frozen:
            p.requires_grad_(False)
        backbone_ids = {id(p) for p in frozen + self.backbone_params}
        head = [p for p in self.model.parameters() if id(p) not in backbone_ids]
        groups = [{"params": self.backbone_params, "lr_mult": tc["backbone_lr_mult"]}, {"params": head, "lr_mult": 1.0}]
        if tc["optimizer"] == "adamw":
            self.optimizer = torch.optim.AdamW(groups, lr=tc["lr"]["start"], weight_decay=tc["weight_decay"])
        else:
            self.optimizer = torch.optim.SGD(groups, lr=tc["lr"]["start"], momentum=tc["momentum"],
                                             weight_decay=tc["weight_decay"])
        sequences = load_split(cfg["data"], "train")
        m = self.model
        self.dataset = PairDataset(sequences, m.template_size, self.search_size,
                                   samples_per_epoch=self.total * tc["batch_size"] * self.world,
                                   max_gap=cfg["data"].get("max_gap", 100), seed=self.seed,
                                   augmentation=cfg["data"].get("augmentation", {}))
        self.ema = None
        if tc["ema_decay"]:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(tc["ema_decay"]), use_buffers=False)
        self.iteration, self.skipped = 0, 0
        self.progress = progress and self.rank == 0
        self.out.mkdir(parents=True, exist_ok=True)

    def build_model(self) -> torch.nn.Module:
        """The network to train (called once, after seeding)."""
        raise NotImplementedError

    def next_path(self) -> str:
        """Prepare the model for the next iteration; returns what it trains (named in errors)."""
        return self.kind

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The loss parts of one batch (``template``, ``search``, ``search_box``) on the current path."""
        cls, reg = self.model(batch["template"], batch["search"])
        return model_loss(self.model, cls, reg, batch["search_box"], self.train_cfg, self.search_size)

    def extra_state(self) -> dict[str, Any]:
        """What a subclass adds to the checkpoint."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`extra_state` from a checkpoint."""

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint: ``model`` holds the weights to use (the moving average when there is one)."""
        state = {"kind": self.kind, "config": _plain(self.cfg), "model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "iteration": self.iteration, "skipped": self.skipped,
                 "torch_rng": torch.get_rng_state(), **self.extra_state()}
        if self.ema is not None:
            state["training_model"] = state["model"]
            state["model"] = self.ema.module.state_dict()
            state["ema_updates"] = self.ema.n_averaged
        return state

    def save(self) -> None:
        """Write the checkpoint atomically (unique temporary file, fsync, rename); rank 0 only."""
        if self.rank == 0:
            save_torch(self.checkpoint_path, self.state_dict())

    def resume(self) -> bool:
        """Load the last checkpoint if there is one; returns whether it did."""
        if not self.checkpoint_path.exists():
            return False
        state = read_checkpoint(self.checkpoint_path)
        if state.get("kind", self.kind) != self.kind:
            raise ConfigError(f"{self.checkpoint_path}: a {state['kind']} checkpoint cannot resume {self.kind} "
                              "training; choose another --out")
        changed = config_differences(state.get("config", {}), _plain(self.cfg), RESUME_FREE)
        if changed:
            raise ConfigError(f"{self.checkpoint_path} was trained with other settings ({'; '.join(changed[:5])}"
                              f"{f'; {len(changed) - 5} more' if len(changed) > 5 else ''}); resume with the "
                              "config it started with, or choose another --out")
        if self.ema is not None and "training_model" not in state:
            raise ValueError(f"{self.checkpoint_path}: written without train.ema_decay; resume it with the same "
                             "config (ema_decay 0) or start a new run")
        try:
            if self.ema is not None:
                self.ema.module.load_state_dict(state["model"])
            self.model.load_state_dict(state.get("training_model", state["model"]))
        except RuntimeError as err:
            reason = str(err).strip().splitlines()
            raise ConfigError(f"{self.checkpoint_path}: its weights do not fit this {self.kind} (another space or "
                              f"space_settings?): {reason[1].strip() if len(reason) > 1 else reason[0]}") from None
        if self.ema is not None:
            self.ema.n_averaged.copy_(state["ema_updates"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.load_extra_state(state)
        self.iteration, self.skipped = int(state["iteration"]), int(state["skipped"])
        torch.set_rng_state(state["torch_rng"])
        return True

    def pretrained(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` with its backbone initialised as ``train.pretrained_backbone`` says (if it says)."""
        source = self.train_cfg["pretrained_backbone"]
        if source:
            init_backbone(model, source)
            log.info("initialised the %s backbone from %s", self.kind, source)
        return model

    # ------------------------------------------------------------------ training
    def _set_lr(self, iteration: int) -> float:
        tc, ipe = self.train_cfg, self.train_cfg["iters_per_epoch"]
        lr = learning_rate(iteration, self.total, tc["lr"]["warmup_epochs"] * ipe, tc["lr"]["start"],
                           tc["lr"]["peak"], tc["lr"]["final"])
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_mult"]
        return lr

    def _step(self) -> None:
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.world > 1:
            flat = torch.cat([p.grad.reshape(-1) for p in params])
            dist.all_reduce(flat)
            flat /= self.world
            offset = 0
            for p in params:
                p.grad.copy_(flat[offset: offset + p.numel()].view_as(p.grad))
                offset += p.numel()
        if self.train_cfg["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(params, self.train_cfg["grad_clip"])
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def iterate(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], float]:
        """One training iteration on ``batch``: next path, learning rate, loss, backward, and the
        optimiser step once ``accumulate`` iterations have gathered gradients; returns (losses, lr)."""
        it = self.iteration
        path = self.next_path()
        lr = self._set_lr(it)
        # a frozen backbone is left out of the graph: no backward through it at all
        trainable = it >= self.train_cfg["freeze_backbone_epochs"] * self.train_cfg["iters_per_epoch"]
        if self.backbone_params and self.backbone_params[0].requires_grad != trainable:
            for p in self.backbone_params:
                p.requires_grad_(trainable)
        losses = self.losses({k: v.to(self.device, memory_format=self.memory_format) if v.ndim == 4
                              else v.to(self.device) for k, v in batch.items()
                              if k in ("template", "search", "search_box")})
        if not torch.isfinite(losses["loss"]):
            raise TrainingError(f"loss became {losses['loss'].item()} at iteration {it} "
                                f"({path}); last checkpoint: {self.checkpoint_path}")
        (losses["loss"] / self.accumulate).backward()
        self.iteration = it + 1
        if self.iteration % self.accumulate == 0:
            self._step()
        return losses, lr

    def train(self) -> Path:
        """Run from the current iteration to the end (or ``max_iters``); returns the checkpoint. The
        output folder is locked meanwhile: a second run into it stops with a named BusyError."""
        with locked(self.out / ".lock", what=f"{self.out} (training)") if self.rank == 0 else nullcontext():
            return self._run()

    def _run(self) -> Path:
        tc = self.train_cfg
        loader = DataLoader(self.dataset, batch_sampler=_Batches(self.iteration, self.stop_at, tc["batch_size"],
                                                                 self.rank, self.world),
                            num_workers=int(self.cfg["data"].get("workers", 0)), persistent_workers=False)
        writer = _tensorboard(self.out) if self.rank == 0 else None
        bar = tqdm(total=self.stop_at, initial=self.iteration, disable=not self.progress, desc=self.kind,
                   dynamic_ncols=True)
        self.model.train()
        window: list[dict[str, float]] = []
        tick = time.perf_counter()
        with open(self.out / "log.jsonl", "a") as log_file:
            for batch in loader:
                losses, lr = self.iterate(batch)
                self.skipped += int(batch.get("skipped", torch.zeros(1)).sum())
                window.append({k: v.item() for k, v in losses.items()})
                bar.update(1)
                if self.iteration % tc["log_every"] == 0 or self.iteration == self.stop_at:
                    elapsed, tick = time.perf_counter() - tick, time.perf_counter()
                    record = {"iteration": self.iteration, "lr": lr, "skipped": self.skipped,
                              **{k: float(np.mean([w[k] for w in window])) for k in window[0]},
                              "samples_per_s": len(window) * tc["batch_size"] * self.world / elapsed,
                              "peak_rss_mb": peak_rss_mb()}
                    window = []
                    if self.rank == 0:
                        log_file.write(json.dumps(record) + "\n")
                        log_file.flush()
                        for k, v in record.items():
                            if k != "iteration":
                                writer.add_scalar(f"train/{k}", v, self.iteration)
                    bar.set_postfix(loss=f"{record['loss']:.3f}", cls=f"{record['cls']:.3f}",
                                    reg=f"{record['reg']:.3f}", lr=f"{lr:.4f}")
                if self.iteration % self.accumulate == 0 and (
                        self.iteration % tc["checkpoint_every"] == 0 or self.iteration == self.stop_at):
                    self.save()
        bar.close()
        if writer is not None:
            writer.close()
        if self.rank == 0 and self.iteration == self.total:
            plot_loss_curve(self.out / "log.jsonl", self.out / "loss.png")
        return self.checkpoint_path


class SupernetTrainer(Trainer):
    """Single-path one-shot training of the experiment's supernet (one sampled path per iteration).

    ``sampling.head_paths: K`` (K > 1) runs the backbone and neck of the sampled path once and the
    head towers of K sampled head configurations on the same features, averaging their losses: the
    cheap towers get K path samples per iteration."""

    kind = "supernet"

    def build_model(self) -> torch.nn.Module:
        self.space = experiment_space(self.cfg)
        ramp = self.cfg["sampling"].get("ramp") or {}
        self.sampler = PathSampler(self.space, self.cfg["sampling"].get("strategy", "uniform"), self.seed,
                                   ramp.get("values", ()), int(ramp.get("iterations", 0)))
        self.head_paths = int(self.cfg["sampling"].get("head_paths", 1))
        supernet = self.pretrained(build_supernet(self.space))
        self.teacher_head = None
        self.distill = float(self.cfg["sampling"].get("distill", 0.0))
        self.distill_reg = float(self.cfg["sampling"].get("distill_reg", 0.0))
        if self.cfg["sampling"].get("head_teacher"):
            largest = largest_architecture(self.space, CostTable(supernet).macs)
            self.teacher_head = {label: largest[label] for label in supernet.head_labels}
        return supernet

    def next_path(self) -> str:
        self.arch = next(self.sampler)
        self.model.set_arch(self.arch)
        return f"architecture {self.arch}"

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.head_paths == 1 and self.teacher_head is None:
            return super().losses(batch)
        m, tc = self.model, self.train_cfg
        features = m.correlate(m.template_features(batch["template"]), batch["search"])
        heads = [self.arch] + [self.sampler.resample(self.arch, m.head_labels) for _ in range(self.head_paths - 1)]

        def head_loss(arch: Architecture) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
            m.set_arch(arch)
            cls, reg = m.predict(features)
            return tracking_loss(cls, reg, batch["search_box"], self.search_size, m.stride, tc["label_radius_px"],
                                 tc["reg_loss_weight"]), (cls, reg)

        parts, maps = zip(*(head_loss(arch) for arch in heads))
        if self.teacher_head is None:
            return {k: torch.stack([p[k] for p in parts]).mean() for k in parts[0]}
        teacher, (teacher_cls, teacher_reg) = head_loss(self.space.validate({**self.arch, **self.teacher_head}))
        target = torch.sigmoid(teacher_cls.detach())
        distill = torch.stack([F.binary_cross_entropy_with_logits(cls, target) for cls, _ in maps]).mean()
        out = {k: torch.stack([p[k] for p in (*parts, teacher)]).mean() for k in teacher}
        out["loss"] = out["loss"] + self.distill * distill
        out["distill"] = distill
        if self.distill_reg:
            # the teacher's boxes at every cell inside the target box: denser than the label's positive cells
            inside = build_targets(batch["search_box"], self.search_size, teacher_reg.shape[-1], m.stride)[2]
            box_distill = torch.stack([iou_loss(reg, teacher_reg.detach(), inside) for _, reg in maps]).mean()
            out["loss"] = out["loss"] + self.distill_reg * box_distill
            out["distill_reg"] = box_distill
        return out

    def extra_state(self) -> dict[str, Any]:
        return {"space": self.space.to_dict(), "sampler": self.sampler.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])


class SubnetTrainer(Trainer):
    """Stand-alone training of one architecture of the experiment's space, from scratch or from
    the weights it inherits from a trained supernet (``init_supernet``)."""

    kind = "subnet"

    def __init__(self, cfg: dict[str, Any], out_dir: str | Path, arch: str, init_supernet: str | Path | None = None,
                 max_iters: int | None = None, progress: bool = True):
        self.arch_text, self.init_supernet = arch, init_supernet
        super().__init__(cfg, out_dir, max_iters, progress)

    def build_model(self) -> torch.nn.Module:
        from ..models.build import load_supernet

        if self.init_supernet is not None:
            supernet = load_supernet(self.init_supernet)
            self.space = supernet.space
            self.arch = self.space.decode(self.arch_text)
            return supernet.extract(self.arch)
        self.space = experiment_space(self.cfg)
        self.arch = self.space.decode(self.arch_text)
        return self.pretrained(build_supernet(self.space)).extract(self.arch)

    def next_path(self) -> str:
        return f"subnet {self.arch}"

    def extra_state(self) -> dict[str, Any]:
        return {"space": self.space.to_dict(), "arch": str(self.arch),
                "init": str(self.init_supernet) if self.init_supernet else "scratch"}


def plot_loss_curve(log_path: Path, png: Path) -> None:
    """Loss parts against iteration from a training log."""
    records = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    if not records:
        return
    fig = new_figure(figsize=(7, 4))
    ax = fig.subplots()
    its = [r["iteration"] for r in records]
    for key in ("loss", "cls", "reg"):
        ax.plot(its, [r[key] for r in records], label=key)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title(f"training ({Path(log_path).parent.name})")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, png)


def _init_distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if world > 1 else (0, 1)


def _device(name: str, rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", rank % max(1, torch.cuda.device_count()))
    return torch.device(name)


def _tensorboard(out: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out / "tensorboard"))


def _plain(value: Any) -> Any:
    """Config values as plain containers (checkpoints load with weights_only=True)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)

