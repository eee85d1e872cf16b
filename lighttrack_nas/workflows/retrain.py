"""Stand-alone retraining of a found architecture, then its evaluation on a held-out split.

:func:`retrain` trains one subnet with :class:`SubnetTrainer` (from scratch or from the weights it
inherits from a trained supernet), resumable like supernet training, and tracks the test split
with the trained checkpoint: ``OUT/eval.json`` holds AO, SR0.5, SR0.75, success AUC, precision,
MACs, params, the architecture, the initialisation and the training budget.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..data.sources import load_split
from ..evaluate import evaluate_checkpoint
from ..io import write_json
from ..models.build import read_checkpoint
from ..tracker import TrackerConfig, tracker_settings
from ..train.trainer import SubnetTrainer
from ..config import load_experiment

log = logging.getLogger(__name__)

INITS = ("scratch", "supernet")


def architecture_argument(text: str) -> str:
    """``text`` itself (an architecture in any format the space decodes), or the best architecture
    of a search's ``best.json`` when ``text`` names a ``.json`` file."""
    if not text.strip().endswith(".json"):
        return text
    path = Path(text)
    try:
        result = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: search result not found") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(result, dict) or "best" not in result:
        raise ValueError(f"{path}: not a search best.json (no 'best' entry)")
    if result["best"] is None:
        reason = result.get("note") or "the search has not finished"
        raise ValueError(f"{path}: the search found no best architecture (best is null: {reason})")
    return str(result["best"]["arch"])


def retrain(config: str | Path, arch: str, out: str | Path, *, init: str = "scratch",
            supernet: str | Path | None = None, resume: bool = False, max_iters: int | None = None,
            seed: int | None = None, device: str | None = None, tracker: str | Path | None = None,
            split: str = "test", progress: bool = True) -> dict[str, Any] | None:
    """Train ``arch`` (a string or a search ``best.json``) stand-alone into ``out`` and evaluate it on
    ``split``; returns the report written to ``out/eval.json`` (None on ranks other than 0).

    ``init``: ``scratch`` (the config's seed initialises the subnet) or ``supernet`` (the subnet's
    weights copied from the ``supernet`` checkpoint, whose space is then used). An existing
    checkpoint is continued only with ``resume`` (it must hold the same architecture and
    initialisation); ``max_iters`` stops early (the schedule still spans the whole config).
    ``tracker`` is a tracker YAML (default: the config's ``tracker:``, else the defaults).
    """
    if init not in INITS:
        raise ValueError(f"init {init!r} is not one of {list(INITS)}")
    if (init == "supernet") != (supernet is not None):
        raise ValueError("--init supernet needs a supernet checkpoint (--supernet CKPT)" if supernet is None else
                         "--supernet is only used with --init supernet")
    overrides = {k: v for k, v in (("seed", seed), ("device", device)) if v is not None}
    cfg = load_experiment(config, overrides)
    init_supernet = Path(supernet).resolve() if supernet is not None else None
    trainer = SubnetTrainer(cfg, out, architecture_argument(arch), init_supernet, max_iters, progress)
    if trainer.checkpoint_path.exists():
        if not resume:
            raise ValueError(f"{trainer.checkpoint_path} exists: pass --resume to continue it, or choose another --out")
        _check_same_run(trainer, read_checkpoint(trainer.checkpoint_path))
        trainer.resume()
        log.info("resumed from %s at iteration %d", trainer.checkpoint_path, trainer.iteration)
    if trainer.rank == 0:  # a wrong split or tracker file fails now, not after training
        settings = tracker_settings(cfg, None if tracker is None else str(tracker))
        sequences = load_split(cfg["data"], split)
    checkpoint = trainer.train()
    if trainer.rank != 0:
        return None
    batch = trainer.train_cfg["batch_size"] * trainer.world
    report = {"arch": str(trainer.arch), "init": trainer.extra_state()["init"], "checkpoint": str(checkpoint),
              "split": split, "sequences": len(sequences),
              **evaluate_checkpoint(checkpoint, sequences, TrackerConfig.from_dict(settings), progress=progress).to_dict(),
              "tracker": settings, "iterations": trainer.iteration, "schedule_iterations": trainer.total,
              "batch_size": batch, "samples": trainer.iteration * batch}
    write_json(Path(out) / "eval.json", report)
    return report


def _check_same_run(trainer: SubnetTrainer, state: dict[str, Any]) -> None:
    """Refuse to resume a checkpoint of another architecture or initialisation."""
    if state.get("kind") != trainer.kind:
        raise ValueError(f"{trainer.checkpoint_path}: a {state.get('kind')} checkpoint, not a subnet one")
    if trainer.space.decode(state["arch"]) != trainer.arch:
        raise ValueError(f"{trainer.checkpoint_path}: holds subnet {state['arch']}, not the requested {trainer.arch}")
    wanted = trainer.extra_state()["init"]
    if state["init"] != wanted:
        raise ValueError(f"{trainer.checkpoint_path}: was initialised from {state['init']}, not {wanted}; "
                         "resume with the same --init/--supernet")
