"""Issue 29's 2x2 of starting weights x method from two comparison runs (tools/compare_2x2.py).

One run's NAS supernet and pruned family start from ImageNet weights (e.g. ``compare_tiny.yaml``,
family ``largest``), the other's from random weights (``compare_scratch_tiny.yaml``); each run's
report already pairs NAS with its pruned family at matched MACs (``matched.json``, written by
:func:`~.report.write_report`). The join puts the two margins side by side per budget, checks that the
rows really differ in their start (every phase of every tracker) and track the same test split, and
applies the claim rule fixed in ``benchmarks/issue29/README.md``: "NAS beats pruning" only if NAS is
ahead (95 % interval above 0) within both rows at a majority of the budgets; ahead in one row only
means the advantage depends on the starting weights.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...io import atomic_write
from .report import MATCHED_FILE

SEEDS_FOR_CLAIM = 3
"""The rule's margins are over 3 seeds x the test sequences: fewer seeds in a row make no claim."""
ROWS = ("imagenet", "scratch")
ROW_NAMES = {"imagenet": "ImageNet start", "scratch": "random start"}


def _read(run: Path) -> dict[str, Any]:
    path = run / MATCHED_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: not a finished comparison (run tools/compare.py --report-only --config ... "
                                f"--out {run} to write it)")
    return json.loads(path.read_text())


def _check_start(run: Path, record: Mapping[str, Any], family: str, row: str) -> None:
    """Every tracker of NAS and ``family`` in ``run`` starts as ``row`` says (ImageNet or random weights)."""
    starts = record["starts"]
    if family not in starts:
        raise ValueError(f"{run}: no pruned family {family!r}; it has {sorted(k for k in starts if k != 'nas')}")
    want = row == "imagenet"
    for name in ("nas", family):
        if starts[name] is not want:
            found = {True: "ImageNet weights", False: "random weights"}.get(starts[name], "mixed or unrecorded weights")
            raise ValueError(f"{run}: the {name} trackers of the {ROW_NAMES[row]} row start from {found}; pass the "
                             f"run whose supernet and {family} start from {'ImageNet' if want else 'random'} weights")


def _cell(record: Mapping[str, Any], family: str, budget: str) -> list[dict[str, Any]]:
    return [e for e in record["matched"] if e["family"] == family and e["budget"] == budget]


def join(imagenet: str | Path, scratch: str | Path, out: str | Path, imagenet_family: str = "largest",
         scratch_family: str = "largest") -> dict[str, Any]:
    """Write ``out/2x2.md`` and ``out/2x2.json`` from the two comparison folders; returns the record."""
    runs = {"imagenet": Path(imagenet), "scratch": Path(scratch)}
    families = {"imagenet": imagenet_family, "scratch": scratch_family}
    records = {row: _read(runs[row]) for row in ROWS}
    for row in ROWS:
        _check_start(runs[row], records[row], families[row], row)
    if records["imagenet"]["split_id"] != records["scratch"]["split_id"]:
        raise ValueError(f"{runs['imagenet']} and {runs['scratch']} tracked different test splits "
                         f"({records['imagenet']['split_id']} vs {records['scratch']['split_id']}): evaluate both on one")
    budgets = list(dict.fromkeys(e["budget"] for row in ROWS for e in records[row]["matched"]
                                 if e["family"] == families[row]))
    table = []
    for budget in budgets:
        cells = {row: _cell(records[row], families[row], budget) for row in ROWS}
        for i in range(max(len(c) for c in cells.values())):
            table.append({"budget": budget, **{row: cells[row][i] if i < len(cells[row]) else None for row in ROWS}})
    ahead = {row: sum(1 for t in table if t[row] and t[row].get("outcome") == "ahead") for row in ROWS}
    both = sum(1 for t in table if all(t[row] and t[row].get("outcome") == "ahead" for row in ROWS))
    majority = len(table) // 2 + 1
    seeds = {row: len(records[row]["seeds"]) for row in ROWS}
    if min(seeds.values()) < SEEDS_FOR_CLAIM:
        claim = (f"no claim: {seeds['imagenet']} (ImageNet row) and {seeds['scratch']} (random row) seed(s), the rule "
                 f"needs {SEEDS_FOR_CLAIM} in each (NAS ahead at {ahead['imagenet']} and {ahead['scratch']} of "
                 f"{len(table)} budget(s))")
    elif both >= majority:
        claim = f"NAS beats pruning: ahead within both starting points at {both} of {len(table)} budget(s)"
    elif max(ahead.values()) >= majority:
        which = ROW_NAMES[max(ROWS, key=lambda r: ahead[r])]
        claim = (f"the advantage depends on the starting weights: NAS ahead within the {which} row only "
                 f"(ImageNet row {ahead['imagenet']}, random row {ahead['scratch']} of {len(table)} budget(s))")
    else:
        claim = (f"no claim: NAS ahead at {ahead['imagenet']} (ImageNet row) and {ahead['scratch']} (random row) of "
                 f"{len(table)} budget(s); a majority in both rows is required")
    dense = {row: records[row].get("dense_ao", {}).get(families[row]) for row in ROWS}
    record = {"runs": {row: str(runs[row]) for row in ROWS}, "families": families, "dense_ao": dense,
              "seeds": {row: records[row]["seeds"] for row in ROWS}, "split_id": records["imagenet"]["split_id"],
              "table": table, "ahead": ahead, "ahead_in_both": both, "claim": claim}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "2x2.json", json.dumps(record, indent=2))
    atomic_write(out / "2x2.md", "\n".join(_markdown(record)) + "\n")
    return record


def _ao(entry: Mapping[str, Any] | None, key: str) -> str:
    if not entry or key not in entry:
        return "-"
    mean, std = entry[key]
    return f"{mean:.3f}" + (f" ± {std:.3f}" if std is not None else "")


def _margin(entry: Mapping[str, Any] | None) -> str:
    if not entry or "margin" not in entry:
        return "-" if not entry else entry["verdict"]
    low, high = entry["margin_ci"]
    outcome = entry.get("outcome", "no verdict")
    return f"{entry['margin'][0]:+.3f} [{low:+.3f}, {high:+.3f}] {outcome}"


def _start_effect(table: Sequence[Mapping[str, Any]], key: str) -> list[str]:
    """ImageNet - random start of one method's mean AO per budget (not paired: each row's own subnets)."""
    out = []
    for t in table:
        if all(t[row] and key in t[row] for row in ROWS):
            out.append(f"{t['budget']} {t['imagenet'][key][0] - t['scratch'][key][0]:+.3f}")
    return out


def _markdown(record: Mapping[str, Any]) -> list[str]:
    fam = record["families"]
    lines = ["# Starting weights x method (issue 29's 2x2)", "",
             f"ImageNet row: `{record['runs']['imagenet']}` (NAS vs pruned `{fam['imagenet']}`, seeds "
             f"{record['seeds']['imagenet']}); random row: `{record['runs']['scratch']}` (NAS vs pruned "
             f"`{fam['scratch']}`, seeds {record['seeds']['scratch']}). Test split {record['split_id']}. Each margin is "
             f"NAS - pruned AO at matched MACs with its 95 % paired-bootstrap interval over seeds x test sequences; "
             f"`ahead` / `behind` only where the interval excludes 0.", "",
             "| budget | ImageNet: NAS AO | ImageNet: pruned AO | ImageNet: margin [95 % CI] | random: NAS AO | "
             "random: pruned AO | random: margin [95 % CI] |", "|---|---|---|---|---|---|---|"]
    for t in record["table"]:
        i, s = t["imagenet"], t["scratch"]
        lines.append(f"| {t['budget']} | {_ao(i, 'nas_ao')} | {_ao(i, 'cnn_ao')} | {_margin(i)} | {_ao(s, 'nas_ao')} | "
                     f"{_ao(s, 'cnn_ao')} | {_margin(s)} |")
    starts = [f"{ROW_NAMES[row]}: {record['dense_ao'][row]:.3f}" for row in ROWS if record["dense_ao"][row] is not None]
    two_families = "" if fam["imagenet"] == fam["scratch"] else ": two families, not the start alone"
    lines += ["", "AO of the dense network each pruned side starts from (the baseline is no better than its start): "
              + ("; ".join(starts) or "not recorded") + ".",
              "", f"**Claim** (rule fixed before the result, benchmarks/issue29/README.md): {record['claim']}.", "",
              "What the start is worth (ImageNet - random mean AO, each row's own subnets, not paired): NAS "
              + (", ".join(_start_effect(record["table"], "nas_ao")) or "-") + f"; pruned (`{fam['imagenet']}` vs "
              f"`{fam['scratch']}`{two_families}) " + (", ".join(_start_effect(record["table"], "cnn_ao")) or "-") + "."]
    return lines
