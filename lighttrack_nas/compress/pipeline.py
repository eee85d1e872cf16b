"""The pruning run behind ``tools/prune.py``: [sparsity training] -> prune to budget -> fine-tune -> report.

Files in the output folder ``OUT``:

- ``sparsity/``: the sparsity training (``slimming`` only; L1 on BatchNorm scales), a Trainer folder;
- ``pruned.pt``: the pruned network before fine-tuning (its widths and weights, and the request);
- ``checkpoint.pt``, ``log.jsonl``, ``tensorboard/``, ``loss.png``: the fine-tuning (a Trainer
  folder); ``checkpoint.pt`` is the pruned tracker (kind = the family, e.g. ``cnn``, with its
  ``model_spec``) that ``tools/test.py`` and the latency tools load;
- ``prune.json``: budget, criterion, dense vs pruned MACs/params/latency, achieved ratios and the
  iterations x batch of both trainings.

Every phase resumes: a finished phase is not redone, an interrupted training continues from its checkpoint.
"""
from __future__ import annotations

import copy
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError, check_keys, deep_merge
from ..cost.latency import network_latency
from ..deploy import inference_model
from ..evaluate.results import atomic_write
from ..machine import machine_info
from ..models.build import build_model, read_checkpoint
from ..models.lighttrack import TrackingNet
from ..train.baseline import BaselineTrainer
from ..train.trainer import DEFAULT_TRAIN
from .prune import BUDGET_KINDS, CRITERIA, MinWidths, check_budget, measure, prune_to_budget

PRUNE_DEFAULTS: dict[str, Any] = {
    "criterion": "slimming", "budget_kind": "macs", "norm": 1, "min_width": 1, "min_width_layers": {},
    "sparsity": {"l1": 1e-5, "train": {}}, "finetune": {"train": {}},
    "latency": {"threads": 1, "min_run_time": 0.5},
}


@dataclass
class PruneSettings:
    """The ``prune:`` section of an experiment (defaults in :data:`PRUNE_DEFAULTS`)."""

    criterion: str
    budget_kind: str
    norm: int
    min_widths: MinWidths
    l1: float
    sparsity_train: dict[str, Any]
    finetune_train: dict[str, Any]
    latency: dict[str, Any]

    @classmethod
    def from_experiment(cls, cfg: Mapping[str, Any], criterion: str | None = None,
                        budget_kind: str | None = None) -> "PruneSettings":
        """Parse ``cfg['prune']``; ``criterion``/``budget_kind`` (command line) override it."""
        s = deep_merge(PRUNE_DEFAULTS, cfg.get("prune") or {})
        check_keys(s, set(PRUNE_DEFAULTS), "prune")
        check_keys(s["sparsity"], {"l1", "train"}, "prune.sparsity")
        check_keys(s["finetune"], {"train"}, "prune.finetune")
        check_keys(s["latency"], {"threads", "min_run_time"}, "prune.latency")
        for phase in ("sparsity", "finetune"):
            check_keys(s[phase]["train"], set(DEFAULT_TRAIN), f"prune.{phase}.train")
        criterion, budget_kind = criterion or s["criterion"], budget_kind or s["budget_kind"]
        if criterion not in CRITERIA:
            raise ConfigError(f"prune.criterion: {criterion!r} is not one of {list(CRITERIA)}")
        if budget_kind not in BUDGET_KINDS:
            raise ConfigError(f"prune.budget_kind: {budget_kind!r} is not one of {list(BUDGET_KINDS)}")
        l1 = s["sparsity"]["l1"]
        if isinstance(l1, bool) or not isinstance(l1, (int, float)) or l1 < 0:
            raise ConfigError(f"prune.sparsity.l1: expected a number >= 0, got {l1!r}")
        return cls(criterion, budget_kind, int(s["norm"]), MinWidths.from_config(s["min_width"], s["min_width_layers"]),
                   float(l1), dict(s["sparsity"]["train"]), dict(s["finetune"]["train"]), dict(s["latency"]))


def load_network(checkpoint: str | Path) -> TrackingNet:
    """The stand-alone network of a checkpoint holding a ``model_spec`` (e.g. from tools/train_baseline.py)."""
    data = read_checkpoint(checkpoint)
    if "model_spec" not in data:
        raise ValueError(f"{checkpoint}: a {data.get('kind', 'supernet')!r} checkpoint has no model_spec; "
                         f"prune a stand-alone network's checkpoint (tools/train_baseline.py)")
    model = build_model(data["model_spec"])
    model.load_state_dict(data["model"])
    return model


def _phase(cfg: Mapping[str, Any], train: Mapping[str, Any]) -> dict[str, Any]:
    """The experiment with ``train`` merged over its ``train`` section."""
    return {**copy.deepcopy(dict(cfg)), "train": deep_merge(cfg["train"], train)}


def _save(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, buffer.getvalue())


def _latency_ms(model: TrackingNet, latency: Mapping[str, Any]) -> float:
    """Median per-frame network time of the deployed (fused) form."""
    return network_latency(inference_model(model), int(latency["threads"]), float(latency["min_run_time"])).ms


def prune_checkpoint(cfg: Mapping[str, Any], checkpoint: str | Path, out: str | Path, budget: float,
                     budget_kind: str | None = None, criterion: str | None = None, resume: bool = False,
                     progress: bool = True) -> dict[str, Any]:
    """Prune the network of ``checkpoint`` to ``budget`` x its dense MACs (or params), fine-tune it,
    and write the files listed in the module docstring; returns the ``prune.json`` record."""
    settings = PruneSettings.from_experiment(cfg, criterion, budget_kind)
    out, kind = Path(out), settings.budget_kind
    pruned_path = out / "pruned.pt"
    request = {"budget": float(budget), "budget_kind": kind, "criterion": settings.criterion}
    if not resume and (pruned_path.exists() or (out / "sparsity" / "checkpoint.pt").exists()):
        raise ValueError(f"{out} holds a pruning run: pass --resume to continue it, or choose another --out")
    dense = load_network(checkpoint)
    sparsity: dict[str, Any] = {"l1": 0.0, "iterations": 0, "batch_size": 0}
    if resume and pruned_path.exists():
        state = read_checkpoint(pruned_path)
        if state["prune"]["request"] != request:
            raise ValueError(f"{pruned_path} was pruned for {state['prune']['request']}, not {request}: "
                             f"choose another --out")
        spec, weights = state["model_spec"], state["model"]
        steps, sparsity = state["prune"]["steps"], state["prune"]["sparsity"]
    else:
        check_budget(dense, budget, kind, settings.min_widths)  # fail before any training
        model = copy.deepcopy(dense)
        if settings.criterion == "slimming":
            trainer = BaselineTrainer(_phase(cfg, settings.sparsity_train), out / "sparsity", dense.spec(),
                                      dense.state_dict(), bn_l1=settings.l1, progress=progress)
            if resume:
                trainer.resume()
            trainer.train()
            model = trainer.model.cpu()
            sparsity = {"l1": settings.l1, "iterations": trainer.total, "batch_size": trainer.train_cfg["batch_size"]}
        result = prune_to_budget(model.eval(), budget, kind, settings.criterion, settings.min_widths, settings.norm,
                                 progress)
        spec, weights, steps = model.spec(), model.state_dict(), result.steps
        out.mkdir(parents=True, exist_ok=True)
        _save(pruned_path, {"kind": spec["family"], "model_spec": spec, "model": weights,
                            "prune": {"request": request, "steps": steps, "sparsity": sparsity,
                                      "checkpoint": str(checkpoint)}})
    finetune = BaselineTrainer(_phase(cfg, settings.finetune_train), out, spec, weights, progress=progress)
    if resume:
        finetune.resume()
    finetune.train()
    pruned = finetune.model.cpu().eval()
    dense_cost, pruned_cost = measure(dense), measure(pruned)
    report = {
        **request, "checkpoint": str(finetune.checkpoint_path), "dense_checkpoint": str(checkpoint),
        "achieved": {k: pruned_cost[k] / dense_cost[k] for k in BUDGET_KINDS},
        **{name: {**cost, "latency_ms": _latency_ms(net, settings.latency), "widths": net.spec()["widths"]}
           for name, net, cost in (("dense", dense, dense_cost), ("pruned", pruned, pruned_cost))},
        "pruning_steps": steps, "sparsity": sparsity,
        "finetune": {"iterations": finetune.total, "batch_size": finetune.train_cfg["batch_size"]},
        "latency": {**settings.latency, "form": "fused torch, per frame (template cached)", "machine": machine_info()},
    }
    atomic_write(out / "prune.json", json.dumps(report, indent=2))
    return report
