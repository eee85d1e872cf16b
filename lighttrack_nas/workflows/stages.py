"""The stages the main job and the comparison chain: data, supernet training, the supernet's
weight-sharing quality, a cost table, the search. Each is resumable or skipped when its output exists."""
from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..cost import CostTable
from ..data.pairs import calibration_batches
from ..data.sources import load_split
from ..io import atomic_write
from ..models import build_supernet, load_supernet
from ..search.fitness import SubnetEvaluator, reference_architectures, static_baseline
from ..search.runner import run_search
from ..space import experiment_space
from ..tracker import TrackerConfig
from ..train import SupernetTrainer

log = logging.getLogger(__name__)


def stage_data(cfg: dict[str, Any]) -> dict[str, int]:
    """Generate (or find) every split the config names."""
    return {split: len(load_split(cfg["data"], split)) for split in cfg["data"].get("splits", {})}


def stage_train(cfg: dict[str, Any], out: Path, progress: bool = True) -> Path:
    """Train the supernet, resuming from ``out/checkpoint.pt`` when present."""
    trainer = SupernetTrainer(cfg, out, progress=progress)
    if trainer.resume():
        log.info("resuming supernet training at iteration %d", trainer.iteration)
    if trainer.iteration < trainer.total:
        trainer.train()
    return trainer.checkpoint_path


def stage_evaluate(cfg: dict[str, Any], checkpoint: Path, tracker_yaml: str | Path, calibration_images: int,
                   limit: int | None = None, split: str = "val",
                   extra_archs: dict[str, str] | None = None) -> dict[str, Any]:
    """Weight-sharing quality: the largest and median subnets (and ``extra_archs``, name -> architecture
    text) of the trained and of an untrained supernet (the config's seed), BatchNorm recalibrated on
    ``calibration_images`` training pairs, tracked on the first ``limit`` sequences of ``split`` (all with
    None), against the static-box baseline."""
    trained = load_supernet(checkpoint)
    torch.manual_seed(int(cfg.get("seed", 0)))
    untrained = build_supernet(experiment_space(cfg))
    sequences = load_split(cfg["data"], split, limit)
    calibration = calibration_batches(load_split(cfg["data"], "train"), trained.template_size, trained.search_size,
                                      calibration_images)
    tracker = TrackerConfig.from_yaml(tracker_yaml)
    table = CostTable(trained)
    archs = reference_architectures(trained.space, table.macs)
    archs.update({name: trained.space.decode(text) for name, text in (extra_archs or {}).items()})
    report: dict[str, Any] = {"split": split, "sequences": len(sequences),
                              "static_baseline": static_baseline(sequences).to_dict(per_sequence=False)}
    for name, arch in archs.items():
        row: dict[str, Any] = {"arch": str(arch), "macs": table.macs(arch), "params": table.params(arch)}
        for label, net in (("trained", trained), ("untrained", untrained)):
            row[label] = SubnetEvaluator(net, calibration, sequences, tracker).score(arch).to_dict(per_sequence=False)
            log.info("%s subnet, %s supernet: AO %.3f, SR0.5 %.3f (%.1f M MACs)", name, label, row[label]["ao"],
                     row[label]["sr50"], row["macs"] / 1e6)
        row["ao_gain"] = row["trained"]["ao"] / max(row["untrained"]["ao"], 1e-9)
        report[name] = row
    return report


def stage_costs(checkpoint: Path, out: Path, samples: int, seed: int = 0) -> list[dict[str, Any]]:
    """Cost table of LightTrack-Mobile and sampled architectures in the trained space."""
    supernet = load_supernet(checkpoint)
    space, table = supernet.space, CostTable(supernet)
    rng = np.random.default_rng(seed)
    archs = [("lighttrack-mobile", space.presets["lighttrack-mobile"])]
    archs += [(f"sample-{i}", space.sample(rng)) for i in range(samples)]
    rows = [{"name": name, **{k: v for k, v in table.cost(a).to_dict().items() if k != "parts"}, "arch": str(a)}
            for name, a in archs]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out, text.getvalue())
    return rows


def stage_search(config: str | Path, checkpoint: str | Path, out: Path, progress: bool = True,
                 **options: Any) -> dict[str, Any]:
    """The search of the config's ``search:`` section (its budgets, or those in ``options``: any
    :func:`~lighttrack_nas.search.runner.run_search` keyword): ``best.json`` when it has finished,
    else run, resumed if interrupted."""
    if (out / "best.json").exists():
        return json.loads((out / "best.json").read_text())
    return run_search(config, checkpoint, out, resume=(out / "state.json").exists(), progress=progress, **options)
