"""The comparison's stages: every tracker of every family built (or found) in ``OUT`` and tracked.

Layout of ``OUT`` (every stage is skipped when its output exists; trainings resume from their
checkpoints, searches from ``state.json``, so an interrupted run continues where it stopped):

- ``configs/``: the resolved per-family experiment configs (:mod:`.settings`);
- ``supernet/seed{S}/``: the supernet of seed ``S`` (the config's supernet training with ``seed: S``,
  ``workflows.stages.stage_train``): a NAS seed trains its own supernet, unless one is given (then
  every seed shares it);
- ``nas/seed{S}/search_{B}/``: the search at MACs budget ``B`` (``best.json``, ...);
- ``nas/seed{S}/retrain_{B}/``: its subnet retrained stand-alone (``eval.json`` of ``retrain``);
- ``{F}/seed{S}/dense/``: the dense tracker of pruned family ``F`` (``cnn``, ``vit``, ``hybrid``, ...):
  trained, or for a family with ``dense: supernet`` the supernet's subnet extracted (``checkpoint.pt``);
- ``{F}/seed{S}/{C}/sparsity/``: the sparsity training of criterion ``C`` (e.g. ``slimming``,
  ``vit-slim``; none for criteria without one), shared by every pruning of the criterion and seed;
- ``{F}/seed{S}/{C}/prune_{B}/``: pruned to the MACs of the NAS subnet of budget ``B`` (``match.json``,
  ``prune.json``), or ``unmatched.json`` with the reason when that budget cannot be pruned to;
- ``{F}/seed{S}/{C}/prune_x{X}/``: pruned to the extreme fraction ``X`` of the dense MACs;
- ``{T}/seed{S}/compresstracker/{V}/``: CompressTracker variant ``V`` (``ct4``, ``ct4-plain``, ...)
  of the teacher family ``T``'s dense tracker (``compress.json``);
- in every tracker's folder: ``test/`` (result files on the test split) and ``test.json`` (its
  row: metrics, MACs, params, measured latency, training budget);
- ``stages.json``: per stage, the seconds of the run that did it and whether the last run skipped it.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ...compress import BudgetError, PruneSettings, compress_checkpoint, prune_checkpoint, prune_model, sparsity_trainer
from ...compress.pipeline import load_network
from ...config import load_experiment
from ...cost.latency import network_latency
from ...data.sequence import Sequence
from ...data.sources import load_split
from ...evaluate import evaluate_checkpoint
from ...io import atomic_write, locked, save_torch
from ...models.build import load_space, read_checkpoint
from ...tracker import TrackerConfig, tracker_settings
from ...train.baseline import BaselineTrainer
from ..retrain import retrain
from ..stages import stage_data, stage_search, stage_train
from .settings import Experiment, PrunedFamily

log = logging.getLogger(__name__)
TEST_FILE = "test.json"


class StageLog:
    """Runs named stages, skipping finished ones, and records them in ``path`` (``stages.json``):
    ``{name: {"seconds": of the run that did it, "last": "ran" | "skipped"}}``. Each update re-reads
    the file under a lock and changes only its own stage, so runs of different seeds (or families)
    may share one ``OUT``."""

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[str, dict[str, Any]] = self._read()

    def run(self, name: str, done: bool, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` unless ``done``; returns its result (None when skipped)."""
        if done:
            self._update(name, last="skipped")
            return None
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        self._update(name, seconds=round(time.perf_counter() - start, 1), last="ran")
        return result

    def _read(self) -> dict[str, dict[str, Any]]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def _update(self, name: str, **fields: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with locked(self.path.with_suffix(".lock"), wait=True):
            self.records = self._read()
            self.records.setdefault(name, {"seconds": None}).update(fields)
            atomic_write(self.path, json.dumps(self.records, indent=1))


def finished(checkpoint: Path, cfg: dict[str, Any]) -> bool:
    """Whether ``checkpoint`` holds a training that ran all of ``cfg``'s iterations."""
    if not checkpoint.exists():
        return False
    return int(read_checkpoint(checkpoint)["iteration"]) >= cfg["train"]["epochs"] * cfg["train"]["iters_per_epoch"]


def train_baseline(trainer: BaselineTrainer) -> Path:
    """Run (or resume) a baseline trainer to its end; returns its checkpoint."""
    if trainer.resume():
        log.info("resuming %s at iteration %d", trainer.checkpoint_path, trainer.iteration)
    if trainer.iteration < trainer.total:
        trainer.train()
    return trainer.checkpoint_path


def _batch(cfg: dict[str, Any]) -> int:
    return int(cfg["train"]["batch_size"])


def _phase_budget(name: str, iterations: int, batch: int, shared: str | None = None,
                  imagenet: bool | None = None) -> dict[str, Any]:
    """One training phase of a tracker: iterations x batch, what shares it (None: its own), and whether
    the weights it trains descend from ImageNet ones (None: not known)."""
    return {"phase": name, "iterations": int(iterations), "batch": int(batch), "samples": int(iterations) * int(batch),
            "shared": shared, "imagenet": imagenet}


def _imagenet(cfg: dict[str, Any]) -> bool:
    """Whether a config's network starts from ImageNet weights (its ``train.pretrained_backbone``)."""
    return cfg["train"].get("pretrained_backbone") is not None


class Evaluator:
    """Tracks checkpoints on the test split and measures their cost; writes ``test/`` and ``test.json``."""

    def __init__(self, exp: Experiment):
        self.exp = exp
        self.sequences: list[Sequence] = load_split(exp.nas["data"], exp.settings.split)
        self.tracker = TrackerConfig.from_dict(tracker_settings(exp.nas))
        self.tuned: dict[tuple[str, int], TrackerConfig] = {}
        digest = hashlib.sha256()
        for seq in self.sequences:  # names and ground truth: a regenerated split is another split
            digest.update(seq.name.encode())
            digest.update(np.ascontiguousarray(seq.boxes).tobytes())
        self.split_id = digest.hexdigest()[:16]

    def done(self, folder: Path) -> bool:
        """Whether ``folder/test.json`` holds an evaluation on today's split with the tracker settings its
        family runs with now (one made on another version of the split, e.g. before the frozen test
        split, or before its family's tuning, is done again)."""
        path = folder / TEST_FILE
        if not path.exists():
            return False
        result = json.loads(path.read_text())
        return result.get("split_id") == self.split_id and result.get("tracker") == self.tracker_of(result).to_dict()

    def tune(self, stages: StageLog, out: Path, family: str, seed: int, checkpoint: Path) -> None:
        """With ``compare.tune.trials`` > 0: the tracker hyper-parameters of ``family`` at ``seed``,
        tuned (Ray Tune) on the first ``compare.tune.sequences`` val sequences with ``checkpoint`` (the
        family's first tracker: its dense network, or the NAS subnet of the first budget) into
        ``out/tune/{family}/seed{seed}/``; every tracker of the family and seed is then tracked with
        them. The test split is never used."""
        s = self.exp.settings
        if s.tune_trials == 0 or (family, seed) in self.tuned:
            return
        folder = out / "tune" / family / f"seed{seed}"

        def run() -> None:
            from ...models import load_tracking_model
            from ...search.tuning import tune_tracker, write_tuning

            sequences = load_split(self.exp.nas["data"], "val")[: s.tune_sequences]
            model = load_tracking_model(checkpoint, None)
            result = tune_tracker(model, sequences, self.tracker, s.tune_trials, folder, workers=s.tune_workers,
                                  seed=seed)
            write_tuning(result, folder, {"split": "val", "sequences": len(sequences), "family": family, "seed": seed,
                                          "model": str(checkpoint), "arch": getattr(model, "arch", family),
                                          "trials_requested": s.tune_trials, "sequences_requested": s.tune_sequences})

        done = (folder / "tracker.yaml").exists()
        if done:
            record = json.loads((folder / "tune.json").read_text())
            asked = {"trials_requested": s.tune_trials, "sequences_requested": s.tune_sequences}
            if {k: record.get(k) for k in asked} != asked:
                raise ValueError(f"{folder}: tuned with {({k: record.get(k) for k in asked})}, not compare.tune's "
                                 f"{asked}; remove {folder} to tune again")
        stages.run(f"seed{seed}/tune/{family}", done, run)
        self.tuned[(family, seed)] = TrackerConfig.from_yaml(folder / "tracker.yaml")

    def tracker_of(self, row: dict[str, Any]) -> TrackerConfig:
        """The tracker settings a row's tracker runs with (its family's tuned ones, else the config's)."""
        return self.tuned.get((row.get("family"), row.get("seed")), self.tracker)

    def __call__(self, checkpoint: Path, folder: Path, row: dict[str, Any]) -> dict[str, Any]:
        """Evaluate ``checkpoint`` (fused form, ``latency.threads`` torch threads) and write
        ``folder/test.json``: ``row`` plus the metrics, cost and latency."""
        s = self.exp.settings
        tracker = self.tracker_of(row)
        evaluated = evaluate_checkpoint(checkpoint, self.sequences, tracker, threads=s.latency_threads,
                                        results=folder / "test")
        latency = network_latency(evaluated.model, s.latency_threads, s.latency_min_run_time)
        result = {**row, "split": s.split, "split_id": self.split_id, "sequences": len(self.sequences),
                  "checkpoint": str(checkpoint),
                  "latency_ms": latency.ms, "latency_iqr_ms": latency.iqr * 1e3, "latency_threads": s.latency_threads,
                  **evaluated.to_dict(), "tracker": tracker.to_dict()}
        atomic_write(folder / TEST_FILE, json.dumps(result, indent=2))
        return result


def match_budget(network: nn.Module, nas_macs: float, dense_macs: float, prune: PruneSettings, tolerance: float,
                 tries: int = 5) -> dict[str, Any]:
    """The MACs fraction to prune ``network`` (the weights the pruning starts from) to so that it
    lands closest to ``nas_macs``. Pruning stops at the first step within the budget and removes
    whole channels, so it lands at or below the requested fraction: dry runs on copies try
    ``nas / dense`` first, then up to ``(1 + tolerance)`` times it, until one lands within
    ``tolerance / 5`` (or within ``tolerance`` after 3 tries). Returns ``{"nas_macs", "dense_macs",
    "fraction" (None: no pruning reaches it), "macs", "tried", "reason"}``."""
    base = nas_macs / dense_macs
    record: dict[str, Any] = {"nas_macs": nas_macs, "dense_macs": dense_macs, "fraction": None, "macs": None,
                              "tried": [], "reason": None}
    if base > 1:
        record["reason"] = (f"the NAS subnet ({nas_macs / 1e6:.2f} M MACs) is larger than the dense network "
                            f"({dense_macs / 1e6:.2f} M MACs)")
        return record
    for k in [0, tries] + list(range(1, tries)):
        fraction = min(1.0, base * (1 + tolerance * k / tries))
        try:
            result = prune_model(copy.deepcopy(network).eval(), fraction, "macs", prune, progress=False)
        except BudgetError as err:
            record["reason"] = str(err)
            continue
        diff = result.pruned["macs"] / nas_macs - 1
        record["tried"].append({"fraction": fraction, "macs": result.pruned["macs"], "macs_vs_nas": diff})
        if record["macs"] is None or abs(diff) < abs(record["macs"] / nas_macs - 1):
            record.update(fraction=fraction, macs=result.pruned["macs"])
        best = abs(record["macs"] / nas_macs - 1)
        if best <= tolerance / 5 or (best <= tolerance and len(record["tried"]) >= 3):
            break
    if record["fraction"] is not None:
        record["reason"] = None
    return record


def _match(start_from: Path, path: Path, nas_macs: float, dense_macs: float, prune: PruneSettings,
           tolerance: float) -> None:
    atomic_write(path, json.dumps(match_budget(load_network(start_from), nas_macs, dense_macs, prune, tolerance),
                                  indent=2))


def _prune(cfg: dict[str, Any], dense: Path, out: Path, budget: float, kind: str | None, criterion: str,
           sparsity: Path | None, progress: bool) -> None:
    """``prune_checkpoint`` into ``out``, starting from the shared sparsity training when given
    (a finished phase is not redone); an unreachable budget leaves ``out/unmatched.json``."""
    if sparsity is not None and not (out / "pruned.pt").exists():
        target = out / "sparsity" / "checkpoint.pt"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(sparsity, target)  # trainers replace checkpoints by rename: the shared file stays intact
            except OSError:
                shutil.copy2(sparsity, target)
    try:
        prune_checkpoint(cfg, dense, out, budget, kind, criterion, resume=True, progress=progress)
    except BudgetError as err:
        atomic_write(out / "unmatched.json", json.dumps({"budget": budget, "reason": str(err)}, indent=2))


def _check_done(out: Path, name: str, key: str, value: float) -> None:
    """Refuse a finished run in ``out`` made for another ``key`` (the NAS subnet or the config changed)."""
    path = out / name
    if path.exists():
        done = json.loads(path.read_text())[key]
        if abs(done - value) > 1e-9 * max(1.0, abs(value)):
            raise ValueError(f"{path}: was made for {key} {done:g}, not {value:g} (the NAS subnet or the config "
                             f"changed): remove {out} or choose another --out")


def run_nas(exp: Experiment, out: Path, seed: int, supernet: Path, supernet_budget: dict[str, Any],
            evaluate: Evaluator, stages: StageLog, progress: bool = True) -> dict[str, float]:
    """The NAS trackers of one seed: a search per budget, then stand-alone retraining of what it found;
    returns the MACs of the subnet found at each budget."""
    s, tag = exp.settings, f"seed{seed}"
    nas_dir = out / "nas" / tag
    nas_macs: dict[str, float] = {}
    for label in s.nas_budgets:
        search_dir, retrain_dir = nas_dir / f"search_{label}", nas_dir / f"retrain_{label}"
        stages.run(f"{tag}/nas/search_{label}", (search_dir / "best.json").exists(), stage_search, exp.nas_config,
                   supernet, search_dir, progress, flops_budget=label, seed=seed)
        best = json.loads((search_dir / "best.json").read_text())["best"]
        if best is None:
            raise RuntimeError(f"{search_dir / 'best.json'}: the search at {label} MACs found no architecture; "
                               f"remove {search_dir} to search again")
        nas_macs[label] = float(best["macs"])
        stages.run(f"{tag}/nas/retrain_{label}", (retrain_dir / "eval.json").exists(), retrain, exp.retrain_config,
                   str(search_dir / "best.json"), retrain_dir, init=s.nas_init,
                   supernet=supernet if s.nas_init == "supernet" else None, seed=seed, split=s.split,
                   resume=(retrain_dir / "checkpoint.pt").exists(), progress=progress)
        trained = json.loads((retrain_dir / "eval.json").read_text())
        imagenet = supernet_budget.get("imagenet") if s.nas_init == "supernet" else \
            _imagenet(load_experiment(exp.retrain_config))
        phases = [_phase_budget("retrain", trained["iterations"], trained["batch_size"], imagenet=imagenet)]
        if s.nas_init == "supernet":
            phases.insert(0, supernet_budget)
        searched = json.loads((search_dir / "best.json").read_text())
        row = {"family": "nas", "method": f"nas-{s.nas_init}", "seed": seed, "budget": label, "kind": "nas",
               "target_macs": s.nas_macs(label), "arch": trained["arch"], "training": phases,
               "selection_evaluations": searched["evaluations"]}
        evaluate.tune(stages, out, "nas", seed, retrain_dir / "checkpoint.pt")
        stages.run(f"{tag}/eval/nas_{label}", evaluate.done(retrain_dir), evaluate,
                   retrain_dir / "checkpoint.pt", retrain_dir, row)
    return nas_macs


def extract_dense(cfg: dict[str, Any], supernet: Path, out: Path, search: dict[str, Any]) -> Path:
    """The ``dense: supernet`` tracker: ``cfg``'s ``model.arch`` extracted from ``supernet`` with its
    inherited weights, BatchNorm recalibrated like a search candidate (``search``'s calibration
    images and batch), saved as a stand-alone ``lighttrack_net`` checkpoint ``out/checkpoint.pt``."""
    from ...data.pairs import calibration_batches
    from ...models import load_supernet
    from ...search.fitness import recalibrate_batchnorm
    from ...search.settings import SearchSettings
    from ...train.baseline import model_spec

    net = load_supernet(supernet).eval()
    spec = model_spec(cfg)
    if load_space(spec["space"]).to_dict() != net.space.to_dict():
        raise ValueError(f"{supernet}: its space is not the experiment's (space / space_settings); the dense subnet "
                         f"must come from the supernet the comparison searches")
    arch = net.space.decode(spec["arch"])
    settings = SearchSettings.from_config(search)
    batches = calibration_batches(load_split(cfg["data"], "train"), net.template_size, net.search_size,
                                  settings.calibration_images, settings.calibration_batch)
    subnet = recalibrate_batchnorm(net.extract(arch), batches)
    save_torch(out / "checkpoint.pt", {"kind": "lighttrack_net", "config": cfg, "model_spec": subnet.spec(),
                                       "model": subnet.state_dict(), "iteration": 0,
                                       "source": {"supernet": str(supernet), "arch": str(arch),
                                                  "calibration_images": settings.calibration_images}})
    return out / "checkpoint.pt"


def family_dense(exp: Experiment, family: PrunedFamily, out: Path, seed: int, evaluate: Evaluator, stages: StageLog,
                 supernet: tuple[Path, dict[str, Any]] | None = None, progress: bool = True
                 ) -> tuple[Path, dict[str, Any]]:
    """Train (or, for ``dense: supernet``, extract from ``supernet``: its checkpoint and training phase)
    and evaluate ``family``'s dense tracker of ``seed``; returns its checkpoint and training phase."""
    cfg, tag = family.experiment(seed), f"seed{seed}"
    dense_dir = out / family.name / tag / "dense"
    if family.dense == "supernet":
        if supernet is None:
            raise ValueError(f"the {family.name} family's dense tracker is the supernet's subnet: a supernet is needed")
        stages.run(f"{tag}/{family.name}/dense", (dense_dir / "checkpoint.pt").exists(), extract_dense, cfg,
                   supernet[0], dense_dir, exp.nas.get("search") or {})
        phase = {**supernet[1], "shared": f"{supernet[1]['shared']} and every {family.name} tracker"}
    else:
        stages.run(f"{tag}/{family.name}/dense", finished(dense_dir / "checkpoint.pt", cfg),
                   lambda: train_baseline(BaselineTrainer(cfg, dense_dir, progress=progress)))
        phase = dense_phase(family, seed)
    evaluate.tune(stages, out, family.name, seed, dense_dir / "checkpoint.pt")
    stages.run(f"{tag}/eval/{family.name}_dense", evaluate.done(dense_dir), evaluate,
               dense_dir / "checkpoint.pt", dense_dir,
               {"family": family.name, "method": "dense", "seed": seed, "budget": "dense", "kind": "dense",
                "target_macs": None, "training": [{**phase, "shared": None} if family.dense == "train" else phase],
                "selection_evaluations": 0})
    return dense_dir / "checkpoint.pt", phase


def run_pruned(exp: Experiment, family: PrunedFamily, out: Path, seed: int, nas_macs: dict[str, float],
               evaluate: Evaluator, stages: StageLog, supernet: tuple[Path, dict[str, Any]] | None = None,
               progress: bool = True) -> None:
    """``family``'s dense tracker of ``seed`` and, per criterion, its sparsity training (shared by
    every pruning of the criterion), prunings to every NAS subnet's MACs and to the extreme budgets;
    ``supernet`` (checkpoint, training phase) is where a ``dense: supernet`` family's dense tracker comes from."""
    s, tag, name = exp.settings, f"seed{seed}", family.name
    cfg = family.experiment(seed)
    dense_ckpt, dense_phase = family_dense(exp, family, out, seed, evaluate, stages, supernet, progress)
    dense_macs = json.loads((dense_ckpt.parent / TEST_FILE).read_text())["macs"]  # fvcore, as the pruning counts
    for criterion in family.criteria:
        prune = family.prune[criterion]
        method_dir = out / name / tag / criterion
        sparsity = None
        trainer = sparsity_trainer(cfg, prune, load_network(dense_ckpt), method_dir / "sparsity", progress)
        if trainer is not None:
            stages.run(f"{tag}/{name}/{criterion}/sparsity", finished(trainer.checkpoint_path, trainer.cfg),
                       train_baseline, trainer)
            sparsity = trainer.checkpoint_path
        start_from = sparsity or dense_ckpt  # the weights every pruning of the criterion starts from
        targets: list[tuple[str, float | None, str | None]] = [(label, None, label) for label in s.nas_budgets]
        targets += [(s.extreme_label(f), f, None) for f in s.extreme_budgets]
        for label, fraction, matched in targets:
            prune_dir = method_dir / f"prune_{label}"
            kind = prune.budget_kind
            if matched is not None:  # the budget fraction that lands on the NAS subnet's MACs
                _check_done(prune_dir, "match.json", "nas_macs", nas_macs[matched])
                stages.run(f"{tag}/{name}/{criterion}/match_{label}", (prune_dir / "match.json").exists(), _match,
                           start_from, prune_dir / "match.json", nas_macs[matched], dense_macs, prune, s.tolerance)
                match = json.loads((prune_dir / "match.json").read_text())
                if match["fraction"] is None:
                    atomic_write(prune_dir / "unmatched.json", json.dumps(
                        {"budget": nas_macs[matched] / dense_macs, "reason": match["reason"]}, indent=2))
                    continue
                fraction, kind = match["fraction"], "macs"
            _check_done(prune_dir, "prune.json", "budget", fraction)
            done = (prune_dir / "prune.json").exists() or (prune_dir / "unmatched.json").exists()
            stages.run(f"{tag}/{name}/{criterion}/prune_{label}", done, _prune, cfg, dense_ckpt, prune_dir, fraction,
                       kind, criterion, sparsity, progress)
            if not (prune_dir / "prune.json").exists():
                continue
            report = json.loads((prune_dir / "prune.json").read_text())
            phases = [dense_phase]
            if report["sparsity"]["iterations"]:
                phases.append(_phase_budget("sparsity", report["sparsity"]["iterations"],
                                            report["sparsity"]["batch_size"],
                                            f"every {criterion} {name} tracker of seed {seed}", dense_phase["imagenet"]))
            phases.append(_phase_budget("finetune", report["finetune"]["iterations"], report["finetune"]["batch_size"],
                                        imagenet=dense_phase["imagenet"]))
            row = {"family": name, "method": f"pruned-{criterion}", "seed": seed, "budget": label,
                   "kind": "matched" if matched else "extreme", "matched_to": matched, "budget_fraction": fraction,
                   "target_macs": nas_macs[matched] if matched else fraction * dense_macs,
                   "widths": report["pruned"].get("widths"), "training": phases, "selection_evaluations": 0}
            stages.run(f"{tag}/eval/{name}_{criterion}_{label}", evaluate.done(prune_dir), evaluate,
                       Path(report["checkpoint"]), prune_dir, row)


def run_compresstracker(exp: Experiment, out: Path, seed: int, evaluate: Evaluator, stages: StageLog,
                        progress: bool = True) -> None:
    """CompressTracker students of the teacher family's dense tracker of ``seed`` (every variant of
    the plan: full students and the ablation)."""
    plan, tag = exp.compress, f"seed{seed}"
    teacher = out / plan.teacher / tag / "dense" / "checkpoint.pt"
    if not finished(teacher, exp.family(plan.teacher).experiment(seed)):
        raise ValueError(f"{teacher}: the {plan.teacher} teacher of seed {seed} has not finished its training; run "
                         f"the {plan.teacher} group to its end first (or together with compresstracker)")
    teacher_phase = dense_phase(exp.family(plan.teacher), seed)
    evaluate.tune(stages, out, plan.teacher, seed, teacher)  # the students track with their family's settings
    for label, layers, switches in plan.variants:
        cfg = plan.experiment(seed)
        cfg["compress"] = {**(cfg.get("compress") or {}), **switches}
        folder = out / plan.teacher / tag / "compresstracker" / label
        stages.run(f"{tag}/{plan.teacher}/compresstracker/{label}", (folder / "compress.json").exists(),
                   compress_checkpoint, cfg, teacher, folder, layers, resume=True, progress=progress)
        record = json.loads((folder / "compress.json").read_text())
        on = [k for k, v in switches.items() if v]
        method = "compresstracker" if len(on) == len(switches) else "compresstracker-" + ("+".join(on) or "plain")
        row = {"family": plan.teacher, "method": method, "seed": seed, "budget": label, "kind": "compressed", "layers": layers, "switches": switches,
               "ablation": layers == plan.ablation,
               "training": [teacher_phase, _phase_budget("compress", record["training"]["iterations"],
                                                            record["training"]["batch_size"],
                                                            imagenet=teacher_phase["imagenet"])],
               "selection_evaluations": 0}
        stages.run(f"{tag}/eval/{plan.teacher}_{label}", evaluate.done(folder), evaluate,
                   folder / "checkpoint.pt", folder, row)


def dense_phase(family: PrunedFamily, seed: int) -> dict[str, Any]:
    """The training phase of ``family``'s dense tracker of ``seed``, shared by every tracker made from it."""
    cfg = family.experiment(seed)
    return _phase_budget("dense", cfg["train"]["epochs"] * cfg["train"]["iters_per_epoch"], _batch(cfg),
                         f"every {family.name} tracker of seed {seed}", _imagenet(cfg))


def run_compare(exp: Experiment, out: str | Path, seeds: list[int] | None = None, supernet: str | Path | None = None,
                progress: bool = True, only: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Run (or resume, skipping what is finished) every stage of ``exp`` into ``out`` for ``seeds``
    (default: the config's); ``supernet`` is a trained supernet checkpoint to use instead of
    training one into ``out/supernet``; ``only`` restricts the run to some :func:`tracker_groups`
    (e.g. ``["vit"]`` in one process while another runs ``["nas", "cnn"]`` into the same ``out``).
    Returns the stage record (``stages.json``)."""
    out = Path(out)
    chosen = set(only) if only is not None else set(tracker_groups(exp))
    unknown = chosen - set(tracker_groups(exp))
    if unknown:
        raise ValueError(f"--only {sorted(unknown)}: not tracker groups of this comparison; choose from "
                         f"{tracker_groups(exp)}")
    stages = StageLog(out / "stages.json")
    stages.run("data", False, stage_data, exp.nas)
    needs_supernet = "nas" in chosen or any(f.dense == "supernet" and f.name in chosen for f in exp.families)
    evaluate = Evaluator(exp)
    for seed in seeds if seeds is not None else exp.settings.seeds:
        # the supernet of this seed and its training phase
        trained = _supernet(exp, out, seed, supernet, stages, progress) if needs_supernet else None
        if "nas" in chosen:
            assert trained is not None
            nas_macs = run_nas(exp, out, seed, trained[0], trained[1], evaluate, stages, progress)
        else:
            nas_macs = found_macs(exp, out, seed)
        for family in exp.families:
            if family.name in chosen:
                run_pruned(exp, family, out, seed, nas_macs, evaluate, stages, trained, progress)
        if exp.compress is not None and "compresstracker" in chosen:
            run_compresstracker(exp, out, seed, evaluate, stages, progress)
    return stages.records


def _supernet(exp: Experiment, out: Path, seed: int, given: str | Path | None, stages: StageLog,
              progress: bool) -> tuple[Path, dict[str, Any]]:
    """The supernet ``seed`` searches and its training phase: ``given`` (shared by every seed), or the
    config's supernet training with ``seed: seed``, trained into ``out/supernet/seed{seed}``."""
    if given is None:
        legacy = out / "supernet" / "checkpoint.pt"
        if legacy.exists():
            target = out / "supernet" / f"seed{exp.nas.get('seed', 0)}"
            raise ValueError(f"{legacy}: a supernet shared by every seed (the layout before each seed trained its "
                             f"own): move it into {target}/ or pass it as --supernet")
        cfg = {**exp.nas, "seed": seed}
        path = out / "supernet" / f"seed{seed}" / "checkpoint.pt"
        with locked(out / "supernet.lock", wait=True):  # groups sharing OUT: the first trains, the others wait
            stages.run(f"seed{seed}/supernet", finished(path, cfg), stage_train, cfg, path.parent, progress)
        shared = f"every NAS tracker of seed {seed}"
    else:
        path, shared = Path(given), "every NAS tracker of every seed"
    if not path.exists():
        raise FileNotFoundError(f"{path}: supernet checkpoint not found")
    state = read_checkpoint(path)
    if state.get("kind", "supernet") != "supernet":
        raise ValueError(f"{path}: a {state.get('kind')!r} checkpoint, not a supernet")
    recorded = state.get("config", {}).get("seed", seed)
    if given is None and int(recorded) != seed:  # a finished one (training refuses to resume another seed's)
        raise ValueError(f"{path}: trained with seed {recorded}, not {seed}: remove it or move it to "
                         f"{out / 'supernet' / f'seed{recorded}'}/")
    trained = state.get("config", {}).get("train", exp.nas["train"])
    return path, _phase_budget("supernet", int(state["iteration"]), int(trained["batch_size"]), shared,
                               imagenet=_imagenet({"train": trained}))


def tracker_groups(exp: Experiment) -> list[str]:
    """What ``--only`` selects from: ``nas``, every pruned family, ``compresstracker`` (when planned)."""
    return ["nas", *(f.name for f in exp.families)] + (["compresstracker"] if exp.compress is not None else [])


def found_macs(exp: Experiment, out: Path, seed: int) -> dict[str, float]:
    """The MACs of the subnets the NAS searches of ``seed`` found (for a run without the NAS group)."""
    macs = {}
    for label in exp.settings.nas_budgets:
        path = out / "nas" / f"seed{seed}" / f"search_{label}" / "best.json"
        if not path.exists():
            raise FileNotFoundError(f"{path}: the pruned trackers are matched to the NAS subnets' MACs; run the "
                                    f"nas group of seed {seed} first (or include it in --only)")
        macs[label] = float(json.loads(path.read_text())["best"]["macs"])
    return macs
