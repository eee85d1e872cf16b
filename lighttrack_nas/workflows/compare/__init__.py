"""The comparison report (tools/compare.py, docs/compare.md): NAS-found subnets vs pruned CNN
trackers at matched MACs, over seeds, on one held-out split.

``compare(config, out)`` is the whole run: :func:`prepare` (validate the ``compare:`` section, write
the per-family configs), :func:`run_compare` (every stage, finished ones skipped) and
:func:`write_report` (``results.csv``, ``report.md``, ``matched.json``, plots). :func:`join_2x2` joins an
ImageNet-start and a random-start run into issue 29's 2x2 of starting weights x method.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .report import collect, matched_table, write_report
from .runner import StageLog, run_compare
from .settings import CompareSettings, Experiment, prepare
from .two_by_two import join as join_2x2


def compare(config: str | Path, out: str | Path, seeds: list[int] | None = None, supernet: str | Path | None = None,
            progress: bool = True, report_only: bool = False, only: list[str] | None = None) -> dict[str, Any]:
    """Run (or resume) the comparison of ``config`` into ``out`` and write its report; returns
    :func:`write_report`'s summary. ``report_only``: no stage runs, the report covers what exists;
    ``only``: run just these tracker groups (``nas``, a family name, ``compresstracker``)."""
    exp = prepare(config, out)
    if not report_only:
        run_compare(exp, out, seeds, supernet, progress, only)
    return write_report(exp, out, seeds)


__all__ = ["CompareSettings", "Experiment", "StageLog", "collect", "compare", "join_2x2", "matched_table", "prepare",
           "run_compare", "write_report"]
