"""The main job: the tiny pipeline end to end, stage by stage, each stage resumable.

data -> supernet training -> supernet evaluation (weight-sharing quality) -> cost table ->
evolutionary search under the budgets of the config's ``search:`` section (when it has one) ->
the comparison of a ``compare:`` config (:mod:`lighttrack_nas.compare`) on the same supernet, when given.
A stage whose output exists is skipped (training resumes from its checkpoint), so an interrupted
run continues where it stopped when started again with the same output directory.
"""
from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .cost import CostTable
from .data.sources import load_split
from .io import write_json
from .models import build_supernet, load_supernet
from .data.pairs import calibration_batches
from .search.fitness import SubnetEvaluator, reference_architectures, static_baseline
from .search.runner import run_search
from .tracker import TrackerConfig
from .train import SupernetTrainer
from .config import load_experiment
from .space import experiment_space

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
                              "static_baseline": static_baseline(sequences).to_dict()}
    for name, arch in archs.items():
        row: dict[str, Any] = {"arch": str(arch), "macs": table.macs(arch), "params": table.params(arch)}
        for label, net in (("trained", trained), ("untrained", untrained)):
            row[label] = SubnetEvaluator(net, calibration, sequences, tracker).score(arch).to_dict()
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
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def stage_search(config: str | Path, checkpoint: Path, out: Path, progress: bool = True) -> dict[str, Any]:
    """The search of the config's ``search:`` section (its budgets), resumed if interrupted."""
    if (out / "best.json").exists():
        return json.loads((out / "best.json").read_text())
    return run_search(config, checkpoint, out, resume=(out / "state.json").exists(), progress=progress)


def run_pipeline(config: str | Path, out: str | Path, tracker_yaml: str | Path = "experiments/tracker.yaml",
                 calibration_images: int = 256, progress: bool = True, compare_config: str | Path | None = None,
                 compare_seeds: list[int] | None = None) -> dict[str, Any]:
    """Run every stage of the experiment ``config`` into ``out`` (with ``compare_config``, finally the
    comparison into ``out/compare`` for ``compare_seeds``, searching the supernet trained here);
    returns the summary also written to ``out/summary.json``."""
    cfg = load_experiment(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {}
    timings: dict[str, float] = {}

    def timed(name: str, fn, *args, **kwargs):
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        result = fn(*args, **kwargs)
        timings[name] = round(time.perf_counter() - start, 1)
        return result

    summary["data"] = timed("data", stage_data, cfg)
    checkpoint = timed("train supernet", stage_train, cfg, out / "supernet", progress)
    report_path = out / "supernet_eval.json"
    if not report_path.exists():
        report = timed("evaluate supernet", stage_evaluate, cfg, checkpoint, tracker_yaml, calibration_images)
        write_json(report_path, report)
    summary["supernet_eval"] = json.loads(report_path.read_text())
    summary["costs"] = timed("costs", stage_costs, checkpoint, out / "costs.csv", 8)
    if cfg.get("search"):
        found = timed("search", stage_search, config, checkpoint, out / "search", progress)
        summary["search"] = {k: found.get(k) for k in ("budgets", "best", "evaluations", "search_seconds")}
    if compare_config is not None:
        from .compare import compare

        report = timed("compare", compare, compare_config, out / "compare", compare_seeds, checkpoint, progress)
        summary["compare"] = {"report": str(out / "compare" / "report.md"), "trackers": len(report["rows"]),
                              "missing": len(report["missing"]),
                              "verdicts": {e["budget"]: e["verdict"] for e in report["matched"]}}
    summary["seconds"] = timings
    write_json(out / "summary.json", summary)
    return summary
