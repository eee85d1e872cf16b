"""The pruning run behind ``tools/prune.py``: [sparsity training] -> prune to budget -> fine-tune -> report,
and its family-agnostic parts: :func:`prune_model` (the pruning of any family by ``prune.criterion``,
see :data:`FAMILY_CRITERIA`) and :func:`sparsity_trainer` (the criterion's sparsity training, if any).

Files in the output folder ``OUT``:

- ``sparsity/``: the sparsity training (``slimming``: L1 on BatchNorm scales; ``vit-slim``: L1 on the
  ViT-Slim soft masks and the BatchNorm scales), a Trainer folder;
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..config import DEFAULT_TRAIN, ConfigError, Field, check_keys, deep_merge
from ..cost.latency import network_latency
from ..deploy import inference_model
from ..io import save_torch, write_json
from ..machine import machine_info
from ..models.build import build_model, read_checkpoint
from ..train.baseline import BaselineTrainer, model_section
from .prune import BUDGET_KINDS, CRITERIA, DEFAULT_NORMALIZER, NORMALIZERS, MinWidths, PruneResult, check_budget, check_width, measure, prune_to_budget
from .vit_prune import (SCOPES, SlimTrainer, TransformerMinWidths, check_transformer_budget, slim_to_budget,
                        torch_prune_to_budget)

CHANNEL_FAMILIES = ("cnn", "lighttrack_net")  # pruned by prune.prune_to_budget (convolution channels)
FAMILY_CRITERIA: dict[str, tuple[str, ...]] = {"cnn": CRITERIA, "lighttrack_net": CRITERIA,
                                               "vit": ("torch-pruning", "vit-slim"), "hybrid": ("vit-slim",)}
DEFAULT_CRITERION = {"cnn": "slimming", "lighttrack_net": "slimming", "vit": "vit-slim", "hybrid": "vit-slim"}
SPARSITY_CRITERIA = ("slimming", "vit-slim")  # the criteria with a sparsity training
PRUNE_DEFAULTS: dict[str, Any] = {
    "criterion": None, "budget_kind": "macs", "norm": 1, "normalizer": None, "min_width": 1, "min_width_layers": {},
    "min_head_dim": 1, "min_mlp": 1, "min_embed": 1, "scope": "global", "layer_scope_below": 0.1,
    "sparsity": {"l1": 1e-5, "attn_l1": 1.5e-4, "mlp_l1": 7.5e-5, "embed_l1": 1.5e-4, "train": {}},
    "finetune": {"train": {}}, "latency": {"threads": 1, "min_run_time": 0.5},
}


@dataclass
class PruneSettings:
    """The ``prune:`` section of an experiment (defaults in :data:`PRUNE_DEFAULTS`) for the model's family."""

    criterion: str
    budget_kind: str
    norm: int
    min_widths: MinWidths
    l1: float
    sparsity_train: dict[str, Any]
    finetune_train: dict[str, Any]
    latency: dict[str, Any]
    family: str = "cnn"
    scope: str = "global"
    layer_scope_below: float = 0.0
    min_head_dim: int = 1
    min_mlp: int = 1
    min_embed: int = 1
    gate_l1: dict[str, float] = field(default_factory=dict)
    normalizer: str | None = None

    @classmethod
    def from_experiment(cls, cfg: Mapping[str, Any], criterion: str | None = None,
                        budget_kind: str | None = None) -> "PruneSettings":
        """Parse ``cfg['prune']`` for ``cfg['model']``'s family; ``criterion``/``budget_kind``
        (command line) override it. The default criterion is the family's :data:`DEFAULT_CRITERION`."""
        s = deep_merge(PRUNE_DEFAULTS, cfg.get("prune") or {})
        check_keys(s, set(PRUNE_DEFAULTS), "prune")
        check_keys(s["sparsity"], set(PRUNE_DEFAULTS["sparsity"]), "prune.sparsity")
        check_keys(s["finetune"], {"train"}, "prune.finetune")
        check_keys(s["latency"], {"threads", "min_run_time"}, "prune.latency")
        for phase in ("sparsity", "finetune"):
            check_keys(s[phase]["train"], set(DEFAULT_TRAIN), f"prune.{phase}.train")
        family = model_section(cfg)["family"]
        if family not in FAMILY_CRITERIA:
            raise ConfigError(f"model.family: {family!r} has no pruning criteria; prunable families: "
                              f"{list(FAMILY_CRITERIA)}")
        criterion = criterion or s["criterion"] or DEFAULT_CRITERION[family]
        budget_kind = budget_kind or s["budget_kind"]
        if criterion not in FAMILY_CRITERIA[family]:
            raise ConfigError(f"prune.criterion: {criterion!r} is not one of {list(FAMILY_CRITERIA[family])} "
                              f"for family {family}")
        if budget_kind not in BUDGET_KINDS:
            raise ConfigError(f"prune.budget_kind: {budget_kind!r} is not one of {list(BUDGET_KINDS)}")
        Field(choices=SCOPES).check(s["scope"], "prune.scope")
        if s["normalizer"] is not None:
            if criterion not in DEFAULT_NORMALIZER:
                raise ConfigError(f"prune.normalizer: applies to the criteria {list(DEFAULT_NORMALIZER)}, "
                                  f"not {criterion!r}; leave it null")
            Field(choices=NORMALIZERS).check(s["normalizer"], "prune.normalizer")
        Field(low=0, high=1).check(s["layer_scope_below"], "prune.layer_scope_below")
        l1 = {key: s["sparsity"][key] for key in ("l1", "attn_l1", "mlp_l1", "embed_l1")}
        for key, value in l1.items():
            Field(low=0).check(value, f"prune.sparsity.{key}")
        try:
            mins = {key: check_width(s[key], f"prune.{key}") for key in ("min_head_dim", "min_mlp", "min_embed")}
            min_widths = MinWidths.from_config(s["min_width"], s["min_width_layers"])
        except ValueError as err:
            raise ConfigError(str(err)) from None
        return cls(criterion, budget_kind, int(s["norm"]), min_widths, l1["l1"], dict(s["sparsity"]["train"]),
                   dict(s["finetune"]["train"]), dict(s["latency"]), family, s["scope"],
                   float(s["layer_scope_below"]), **mins,
                   gate_l1={kind: l1[f"{kind}_l1"] for kind in ("attn", "mlp", "embed")},
                   normalizer=s["normalizer"] or DEFAULT_NORMALIZER.get(criterion))

    @property
    def transformer_widths(self) -> TransformerMinWidths:
        """The minimum widths of a transformer family's pruning."""
        return TransformerMinWidths(self.min_head_dim, self.min_mlp, self.min_embed, self.min_widths)

    def scope_for(self, budget: float) -> str:
        """``layer`` below ``layer_scope_below`` (the reference's extreme budgets), else ``scope``."""
        return "layer" if budget < self.layer_scope_below else self.scope

    def sparsity_record(self, trainer: BaselineTrainer | None) -> dict[str, Any]:
        """What ``prune.json`` records of the sparsity training (zeros without one)."""
        if trainer is None:
            return {"l1": 0.0, "iterations": 0, "batch_size": 0}
        gates = {"gate_l1": dict(self.gate_l1)} if self.criterion == "vit-slim" else {}
        return {"l1": self.l1, **gates, "iterations": trainer.total, "batch_size": trainer.train_cfg["batch_size"]}


def _family(model: nn.Module, settings: PruneSettings) -> str:
    """The family of ``model``, which must be the one ``settings`` were parsed for."""
    family = model.spec()["family"]
    if family != settings.family:
        raise ValueError(f"prune settings for family {settings.family} cannot prune a {family} network")
    return family


def check_model_budget(model: nn.Module, budget: float, kind: str,
                       settings: PruneSettings) -> tuple[dict[str, int], dict[str, int]]:
    """(dense cost, smallest achievable cost) of a network of any family; raises BudgetError when
    ``budget`` cannot be met with the settings' minimum widths."""
    if _family(model, settings) in CHANNEL_FAMILIES:
        return check_budget(model, budget, kind, settings.min_widths)
    return check_transformer_budget(model, budget, kind, settings.transformer_widths)


def prune_model(model: nn.Module, budget: float, kind: str, settings: PruneSettings,
                progress: bool = True) -> PruneResult:
    """Prune ``model`` (any family) in place to at most ``budget`` x its dense ``kind`` (macs or
    params) by ``settings.criterion``: ``cnn`` and ``lighttrack_net`` -> :func:`~.prune.prune_to_budget`; ``vit-slim`` ->
    :func:`~.vit_prune.slim_to_budget` (scope by :meth:`PruneSettings.scope_for`); ``torch-pruning``
    -> :func:`~.vit_prune.torch_prune_to_budget`."""
    if _family(model, settings) in CHANNEL_FAMILIES:
        return prune_to_budget(model, budget, kind, settings.criterion, settings.min_widths, settings.norm, progress,
                               settings.normalizer)
    if settings.criterion == "torch-pruning":
        return torch_prune_to_budget(model, budget, kind, settings.transformer_widths, settings.norm, progress,
                                     settings.normalizer)
    return slim_to_budget(model, budget, kind, settings.transformer_widths, settings.scope_for(budget), progress)


def sparsity_trainer(cfg: Mapping[str, Any], settings: PruneSettings, dense: nn.Module, out_dir: str | Path,
                     progress: bool = True) -> BaselineTrainer | None:
    """The (not yet started) sparsity training of ``settings.criterion`` from the ``dense`` network
    into ``out_dir``, with ``prune.sparsity.train`` merged over ``cfg``'s ``train``; None when the
    criterion has none. ``slimming``: L1 on the BatchNorm scales; ``vit-slim``: the network with its
    ViT-Slim soft masks (ones), L1 on them and on the BatchNorm scales."""
    _family(dense, settings)
    if settings.criterion not in SPARSITY_CRITERIA:
        return None
    phase = _phase(cfg, settings.sparsity_train)
    if settings.criterion == "slimming":
        return BaselineTrainer(phase, out_dir, dense.spec(), dense.state_dict(), bn_l1=settings.l1, progress=progress)
    gated = copy.deepcopy(dense)
    gated.enable_gates()
    return SlimTrainer(phase, out_dir, gated.spec(), gated.state_dict(), settings.l1, settings.gate_l1, progress)


def network_widths(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The width entries of a ``model_spec``: ``widths`` (cnn), the architecture and the layers pruned
    from it (lighttrack_net), embedding, layers and towers (vit), CNN widths, embedding, encoder and
    decoder (hybrid)."""
    if spec["family"] == "cnn":
        return dict(spec["widths"])
    if spec["family"] == "lighttrack_net":
        return {"arch": spec["arch"], "channels": dict(spec["channels"])}
    keys = ("embed_dim", "layers", "cls_tower", "reg_tower") if spec["family"] == "vit" else (
        "widths", "embed_dim", "encoder", "decoder")
    return {k: spec[k] for k in keys}


def load_network(checkpoint: str | Path) -> nn.Module:
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


def _latency_ms(model: nn.Module, latency: Mapping[str, Any]) -> float:
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
    request = {"budget": float(budget), "budget_kind": kind, "criterion": settings.criterion,
               "normalizer": settings.normalizer}
    if not resume and (pruned_path.exists() or (out / "sparsity" / "checkpoint.pt").exists()):
        raise ValueError(f"{out} holds a pruning run: pass --resume to continue it, or choose another --out")
    dense = load_network(checkpoint)
    sparsity: dict[str, Any]
    if resume and pruned_path.exists():
        state = read_checkpoint(pruned_path)
        if state["prune"]["request"] != request:
            raise ValueError(f"{pruned_path} was pruned for {state['prune']['request']}, not {request}: "
                             f"choose another --out")
        spec, weights = state["model_spec"], state["model"]
        steps, sparsity = state["prune"]["steps"], state["prune"]["sparsity"]
    else:
        check_model_budget(dense, budget, kind, settings)  # fail before any training
        model = copy.deepcopy(dense)
        trainer = sparsity_trainer(cfg, settings, dense, out / "sparsity", progress)
        if trainer is not None:
            if resume:
                trainer.resume()
            trainer.train()
            model = trainer.model.cpu()
        sparsity = settings.sparsity_record(trainer)
        result = prune_model(model.eval(), budget, kind, settings, progress)
        spec, weights, steps = model.spec(), model.state_dict(), result.steps
        out.mkdir(parents=True, exist_ok=True)
        save_torch(pruned_path, {"kind": spec["family"], "model_spec": spec, "model": weights,
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
        **{name: {**cost, "latency_ms": _latency_ms(net, settings.latency), "widths": network_widths(net.spec())}
           for name, net, cost in (("dense", dense, dense_cost), ("pruned", pruned, pruned_cost))},
        "pruning_steps": steps, "sparsity": sparsity,
        "finetune": {"iterations": finetune.total, "batch_size": finetune.train_cfg["batch_size"]},
        "latency": {**settings.latency, "form": "fused torch, per frame (template cached)", "machine": machine_info()},
    }
    write_json(out / "prune.json", report)
    return report
