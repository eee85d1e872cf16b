"""The comparison's outputs from the trackers' ``test.json`` files: ``results.csv``, ``report.md`` and
the plots (AO vs MACs and vs latency with each family's Pareto front, success plots per budget,
stability under compression)."""
from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from ..data.sources import load_split
from ..evaluate import open_results, score_results
from ..evaluate.plots import plot_ope
from ..evaluate.results import atomic_write
from ..machine import machine_info
from ..search.pareto import pareto_front
from .runner import TEST_FILE
from .settings import Experiment

Row = dict[str, Any]
CSV_FIELDS = ["family", "method", "seed", "budget", "kind", "matched_to", "target_macs", "budget_fraction", "macs",
              "params", "latency_ms", "ao", "sr50", "sr75", "success_auc", "precision", "norm_precision", "macs_vs_nas",
              "train_iterations", "train_batch", "train_samples", "total_train_samples", "folder"]
METRICS = ("ao", "sr50", "sr75", "success_auc", "precision", "norm_precision")
COLORS = {"nas": "tab:blue", "cnn": "tab:orange"}
NAMES = {"nas": "NAS (searched + retrained)", "cnn": "CNN (dense + pruned)"}


def tracker_folders(exp: Experiment, out: Path, seeds: Iterable[int]) -> list[Path]:
    """Every tracker folder the comparison of ``seeds`` makes (finished or not), in report order."""
    s, folders = exp.settings, []
    for seed in seeds:
        folders += [out / "nas" / f"seed{seed}" / f"retrain_{b}" for b in s.nas_budgets]
        cnn = out / "cnn" / f"seed{seed}"
        folders += [cnn / "dense"] + [cnn / f"prune_{b}" for b in s.nas_budgets]
        folders += [cnn / f"prune_{s.extreme_label(f)}" for f in s.extreme_budgets]
    return folders


def collect(exp: Experiment, out: Path, seeds: Iterable[int]) -> tuple[list[Row], list[Row], list[str]]:
    """(rows of the evaluated trackers, unmatched budgets with their reason, missing tracker folders)."""
    rows, unmatched, missing = [], [], []
    for folder in tracker_folders(exp, out, seeds):
        if (folder / TEST_FILE).exists():
            row = json.loads((folder / TEST_FILE).read_text())
            row["folder"] = str(folder)
            if (folder / "match.json").exists():
                row["match"] = json.loads((folder / "match.json").read_text())
            row["precision"], row["norm_precision"] = row["precision20"], row["norm_precision20"]
            own = row["training"][-1]
            row.update(train_iterations=own["iterations"], train_batch=own["batch"], train_samples=own["samples"],
                       total_train_samples=sum(p["samples"] for p in row["training"]))
            rows.append(row)
        elif (folder / "unmatched.json").exists():
            seed = int(folder.parent.name.removeprefix("seed"))
            unmatched.append({"seed": seed, "budget": folder.name.removeprefix("prune_"),
                              **json.loads((folder / "unmatched.json").read_text())})
        else:
            missing.append(str(folder.relative_to(out)))
    nas = {(r["seed"], r["budget"]): r for r in rows if r["family"] == "nas"}
    for r in rows:
        pair = nas.get((r["seed"], r.get("matched_to")))
        r["macs_vs_nas"] = r["macs"] / pair["macs"] - 1 if r.get("kind") == "matched" and pair else None
    return rows, unmatched, missing


def write_csv(rows: Sequence[Row], path: Path) -> None:
    """One row per tracker (:data:`CSV_FIELDS`)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, buffer.getvalue())


# ---------------------------------------------------------------------- statistics
def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for one value)."""
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def matched_table(exp: Experiment, rows: Sequence[Row], unmatched: Sequence[Row]) -> list[Row]:
    """Per NAS budget: MACs and AO of both families over seeds, the AO margin (NAS - pruned CNN,
    paired by seed) and the verdict."""
    tol = exp.settings.tolerance
    table = []
    for label in exp.settings.nas_budgets:
        nas = {r["seed"]: r for r in rows if r["family"] == "nas" and r["budget"] == label}
        cnn = {r["seed"]: r for r in rows if r.get("kind") == "matched" and r["matched_to"] == label}
        seeds = sorted(set(nas) & set(cnn))
        entry: Row = {"budget": label, "seeds": seeds}
        if not seeds:
            reasons = [u["reason"] for u in unmatched if u["budget"] == label]
            why = reasons[0] if reasons else ("the NAS tracker is missing" if not nas else "the pruned CNN is missing")
            entry["verdict"] = f"no verdict: {why}"
            table.append(entry)
            continue
        margins = [nas[s]["ao"] - cnn[s]["ao"] for s in seeds]
        diffs = [cnn[s]["macs"] / nas[s]["macs"] - 1 for s in seeds]
        entry.update(nas_macs=float(np.mean([nas[s]["macs"] for s in seeds])),
                     cnn_macs=float(np.mean([cnn[s]["macs"] for s in seeds])),
                     nas_ao=_mean_std([nas[s]["ao"] for s in seeds]), cnn_ao=_mean_std([cnn[s]["ao"] for s in seeds]),
                     margin=_mean_std(margins), wins=sum(m >= 0 for m in margins), worst_macs_diff=max(diffs, key=abs))
        mean, std = entry["margin"]
        spread = f" ± {std:.3f}" if std is not None else " (1 seed: no spread)"
        detail = f"AO margin {mean:+.3f}{spread}; NAS ahead or equal on {entry['wins']}/{len(seeds)} seed(s)"
        if abs(entry["worst_macs_diff"]) > tol:
            entry["matched"] = False
            tried = max((len(cnn[s].get("match", {}).get("tried", [])) for s in seeds), default=0)
            entry["verdict"] = (f"no verdict: the pruned CNN's MACs differ from the NAS subnet's by "
                                f"{entry['worst_macs_diff']:+.1%} (more than {tol:.0%}; pruning removes whole "
                                f"channels, and this was the closest of the {tried} budget fraction(s) tried); "
                                f"{detail}")
        else:
            entry["matched"] = True
            entry["verdict"] = (f"NAS >= pruned CNN within {tol:.0%} MACs" if mean >= 0 else
                                f"NAS < pruned CNN within {tol:.0%} MACs") + f" ({detail})"
        table.append(entry)
    return table


def _means(rows: Sequence[Row], family: str, key: str) -> list[tuple[float, float, str]]:
    """(mean cost ``key``, mean AO, budget) of each budget of ``family`` over seeds, by cost."""
    groups: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        if r["family"] == family and r.get(key) is not None:
            groups[r["budget"]].append(r)
    points = [(float(np.mean([r[key] for r in g])), float(np.mean([r["ao"] for r in g])), b) for b, g in groups.items()]
    return sorted(points)


# ---------------------------------------------------------------------- plots
def _figure(width: float = 7.0, height: float = 4.8) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _plain_ticks(ax: Any) -> None:
    """Log-scale x ticks written as plain numbers (0.5, 2, 30) instead of powers of ten."""
    formatter = FuncFormatter(lambda value, _: f"{value:g}")
    ax.xaxis.set_major_formatter(formatter)
    ax.xaxis.set_minor_formatter(formatter)


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write(path, buffer.getvalue())
    return path


def plot_ao_vs_cost(rows: Sequence[Row], path: Path, key: str, label: str, scale: float = 1.0) -> Path:
    """AO against a cost (``macs`` or ``latency_ms``): every tracker of every seed, the mean per
    budget and each family's Pareto front over those means (lower cost, higher AO)."""
    figure = _figure()
    ax = figure.add_subplot(1, 1, 1)
    for family in ("nas", "cnn"):
        own = [r for r in rows if r["family"] == family]
        if not own:
            continue
        ax.scatter([r[key] * scale for r in own], [r["ao"] for r in own], s=14, alpha=0.35, c=COLORS[family])
        means = _means(own, family, key)
        ax.scatter([m[0] * scale for m in means], [m[1] for m in means], s=40, c=COLORS[family],
                   edgecolors="k", label=f"{NAMES[family]}: mean over seeds")
        for x, y, budget in means:
            ax.annotate(budget, (x * scale, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        front = [means[i] for i in pareto_front([m[0] for m in means], [m[1] for m in means])]
        ax.step([m[0] * scale for m in front], [m[1] for m in front], where="post", c=COLORS[family], lw=1.5,
                marker="D", markersize=9, markerfacecolor="none", label=f"{family.upper()} Pareto front")
    ax.set(xscale="log", xlabel=label, ylabel="AO (test split)", title=f"AO vs {label}")
    _plain_ticks(ax)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(figure, path)


def stability_points(rows: Sequence[Row]) -> dict[str, list[tuple[float, float, str]]]:
    """Per family, (MACs / reference MACs, AO / reference AO, budget) of every tracker; the reference
    is the seed's dense CNN, or for NAS the seed's largest NAS tracker."""
    out: dict[str, list[tuple[float, float, str]]] = {"nas": [], "cnn": []}
    for family in out:
        for seed in sorted({r["seed"] for r in rows if r["family"] == family}):
            own = [r for r in rows if r["family"] == family and r["seed"] == seed]
            dense = [r for r in own if r["kind"] == "dense"]
            ref = dense[0] if dense else max(own, key=lambda r: r["macs"])
            if ref["ao"] > 0:
                out[family] += [(r["macs"] / ref["macs"], r["ao"] / ref["ao"], r["budget"]) for r in own]
    return out


def plot_stability(rows: Sequence[Row], path: Path) -> Path:
    """AO retained (relative to the dense CNN, or to the largest NAS tracker) against the MACs ratio:
    every tracker (faint) and the mean per budget over seeds."""
    figure = _figure()
    ax = figure.add_subplot(1, 1, 1)
    for family, points in stability_points(rows).items():
        if not points:
            continue
        ax.scatter([p[0] for p in points], [p[1] for p in points], s=14, alpha=0.4, c=COLORS[family])
        by_budget: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
        for point in points:
            by_budget[point[2]].append(point)
        mean = sorted((float(np.mean([p[0] for p in g])), float(np.mean([p[1] for p in g])))
                      for g in by_budget.values())
        reference = "dense CNN" if family == "cnn" else "largest NAS tracker"
        ax.plot([m[0] for m in mean], [m[1] for m in mean], "o-", c=COLORS[family],
                label=f"{NAMES[family]} (relative to the {reference}), mean over seeds")
    ax.axhline(1.0, c="0.5", ls="--", lw=1)
    ax.set(xscale="log", xlabel="MACs / reference MACs (compression ratio)", ylabel="AO retained (AO / reference AO)",
           title="Stability under compression")
    _plain_ticks(ax)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(figure, path)


def _name(row: Row) -> str:
    return f"{row['method']} s{row['seed']} {row['budget']} ({row['macs'] / 1e6:.1f}M)"


def plot_success(exp: Experiment, rows: Sequence[Row], out: Path) -> list[Path]:
    """Success (and precision) plots of the best tracker (highest AO over seeds) of each family at
    each NAS budget (``success_{B}.png``), and of the dense and extreme-budget CNNs (``success_extreme.png``)."""
    sequences = load_split(exp.nas["data"], exp.settings.split)
    groups: list[tuple[str, list[list[Row]]]] = []
    for label in exp.settings.nas_budgets:
        groups.append((label, [[r for r in rows if r["family"] == "nas" and r["budget"] == label],
                               [r for r in rows if r.get("kind") == "matched" and r["matched_to"] == label]]))
    extremes = [[r for r in rows if r["kind"] == "dense"]]
    extremes += [[r for r in rows if r["kind"] == "extreme" and r["budget"] == exp.settings.extreme_label(f)]
                 for f in exp.settings.extreme_budgets]
    groups.append(("extreme", extremes))
    paths = []
    for label, candidates in groups:
        best = [max(c, key=lambda r: r["ao"]) for c in candidates if c]
        if not best:
            continue
        curves = {_name(r): score_results(sequences, open_results(Path(r["folder"]) / "test")).ope for r in best}
        paths.append(plot_ope(curves, out / f"success_{label}.png", f"({label})"))
    return paths


# ---------------------------------------------------------------------- report
def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _ms(pair: tuple[float, float | None], sign: str = "") -> str:
    """``mean ± std`` (``sign="+"``: the mean's sign always written)."""
    mean, std = pair
    return f"{mean:{sign}.3f}" + (f" ± {std:.3f}" if std is not None else "")


def _training_section(rows: Sequence[Row]) -> list[str]:
    lines = ["## Training budget (iterations x batch)", "",
             "| tracker | phase | iterations | batch | samples | shared by |", "|---|---|---|---|---|---|"]
    seen = set()
    for r in rows:
        what = {"nas": "NAS subnet", "dense": "dense CNN", "matched": "pruned CNN (every budget)",
                "extreme": "pruned CNN (every budget)"}[r["kind"]]
        if what in seen:
            continue
        seen.add(what)
        for p in r["training"]:
            lines.append(f"| {what} | {p['phase']} | {p['iterations']} | {p['batch']} | {p['samples']:,} | "
                         f"{p['shared'] or 'this tracker only'} |")
    nas = [r for r in rows if r["family"] == "nas"]
    cnn = [r for r in rows if r["kind"] in ("matched", "extreme")]
    if nas and cnn:
        own = (nas[0]["train_samples"], cnn[0]["train_samples"])
        total = (nas[0]["total_train_samples"], cnn[0]["total_train_samples"])
        lines += ["", f"Per tracker at a budget, its own training: NAS retraining {own[0]:,} samples vs pruned-CNN "
                      f"fine-tuning {own[1]:,} ({'equal' if own[0] == own[1] else 'NOT equal'}). Including the "
                      f"shared phases its weights went through: NAS {total[0]:,} vs pruned CNN {total[1]:,} samples "
                      f"({'equal' if total[0] == total[1] else 'NOT equal'}; the supernet is trained once for every "
                      f"NAS tracker and seed, the dense CNN and its sparsity training once per seed)."]
    return lines + [""]


def write_report(exp: Experiment, out: str | Path, seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """Write ``results.csv``, ``report.md`` and the plots into ``out`` from what has been evaluated
    there; returns ``{"rows", "matched", "unmatched", "missing", "plots"}``."""
    out = Path(out)
    seeds = list(seeds if seeds is not None else exp.settings.seeds)
    rows, unmatched, missing = collect(exp, out, seeds)
    write_csv(rows, out / "results.csv")
    table = matched_table(exp, rows, unmatched)
    plots = []
    if rows:
        plots += [plot_ao_vs_cost(rows, out / "ao_vs_macs.png", "macs", "MACs per frame (M)", 1e-6),
                  plot_ao_vs_cost(rows, out / "ao_vs_latency.png", "latency_ms",
                                  f"measured latency (ms, {exp.settings.latency_threads} thread)"),
                  plot_stability(rows, out / "stability.png")]
        plots += plot_success(exp, rows, out)
    s = exp.settings
    lines = [f"# NAS vs pruned CNN trackers: {exp.config}", "",
             f"Seeds {seeds}; every tracker tracked on the `{s.split}` split "
             f"({rows[0]['sequences'] if rows else '?'} sequences) with the same tracker settings; MACs per frame "
             f"(fvcore, one multiply-add = one MAC, template cached); latency: network per frame, fused torch form, "
             f"{s.latency_threads} thread, median of {s.latency_min_run_time:g} s of runs. Machine: "
             f"{machine_info()['cpu']}. NAS retraining init: {s.nas_init}; pruning criterion: {exp.prune.criterion} "
             f"({exp.prune.budget_kind} budgets).", ""]
    if missing:
        lines += [f"**Incomplete**: {len(missing)} tracker(s) not evaluated yet: " + ", ".join(missing), ""]
    lines += ["## Matched MACs: NAS subnet vs pruned CNN", "",
              "| budget | NAS MACs (M) | pruned CNN MACs (M) | worst MACs diff | NAS AO | pruned CNN AO | "
              "AO margin (NAS - CNN) | verdict |", "|---|---|---|---|---|---|---|---|"]
    for e in table:
        if "margin" not in e:
            lines.append(f"| {e['budget']} | - | - | - | - | - | - | {e['verdict']} |")
            continue
        lines.append(f"| {e['budget']} | {e['nas_macs'] / 1e6:.2f} | {e['cnn_macs'] / 1e6:.2f} | "
                     f"{e['worst_macs_diff']:+.1%} | {_ms(e['nas_ao'])} | {_ms(e['cnn_ao'])} | {_ms(e['margin'], '+')} | "
                     f"{e['verdict'].split(' (')[0]} |")
    lines += ["", "Verdicts:", ""] + [f"- **{e['budget']}**: {e['verdict']}" for e in table]
    compared = [e for e in table if e.get("matched")]
    bar = compared and len(compared) == len(table) and all(e["margin"][0] >= 0 for e in compared)
    lines += ["", f"The bar (NAS >= pruned CNN at every budget, MACs within {s.tolerance:.0%}): "
                  f"**{'met' if bar else 'not met'}** ({sum(e['margin'][0] >= 0 for e in compared)} of "
                  f"{len(table)} budget(s)).", ""]
    if unmatched:
        lines += ["Budgets the CNN could not be pruned to:", ""]
        lines += [f"- seed {u['seed']}, {u['budget']}: {u['reason']}" for u in unmatched] + [""]
    lines += _training_section(rows)
    lines += ["## Every tracker", "", "| family | method | seed | budget | MACs (M) | params (M) | latency (ms) | "
              "AO | SR0.5 | SR0.75 | success AUC | precision | MACs vs NAS |", "|---|---|---|---|---|---|---|---|---|"
              "---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['family']} | {r['method']} | {r['seed']} | {r['budget']} | {r['macs'] / 1e6:.2f} | "
                     f"{r['params'] / 1e6:.3f} | {r['latency_ms']:.2f} | " + " | ".join(
                         _fmt(r[k]) for k in METRICS[:-1]) + " | "
                     + (f"{r['macs_vs_nas']:+.1%}" if r["macs_vs_nas"] is not None else "-") + " |")
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    stages_path = out / "stages.json"
    if stages_path.exists():
        stages = json.loads(stages_path.read_text())
        timed = {k: v["seconds"] for k, v in stages.items() if v.get("seconds") is not None}
        lines += ["", "## Stage times", "", f"Total of the recorded stages: {sum(timed.values()) / 60:.1f} min "
                  f"(each stage timed in the run that did it).", "", "| stage | seconds | last run |", "|---|---|---|"]
        lines += [f"| {k} | {v.get('seconds') if v.get('seconds') is not None else '-'} | {v.get('last', '-')} |"
                  for k, v in stages.items()]
    atomic_write(out / "report.md", "\n".join(lines) + "\n")
    return {"rows": rows, "matched": table, "unmatched": unmatched, "missing": missing, "plots": plots}
