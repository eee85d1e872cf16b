"""The main job: the tiny pipeline end to end, stage by stage, each stage resumable.

data -> supernet training -> supernet evaluation (weight-sharing quality) -> cost table ->
evolutionary search under the budgets of the config's ``search:`` section (when it has one) ->
the comparison of a ``compare:`` config (:mod:`lighttrack_nas.workflows.compare`) on the same supernet, when given.
A stage whose output exists is skipped (training resumes from its checkpoint), so an interrupted
run continues where it stopped when started again with the same output directory.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from ..config import load_experiment
from ..io import write_json
from .stages import stage_costs, stage_data, stage_evaluate, stage_search, stage_train

log = logging.getLogger(__name__)


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
