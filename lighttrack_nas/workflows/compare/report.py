"""The comparison's outputs from the trackers' ``test.json`` files: ``results.csv``, ``report.md`` and
the plots (AO vs MACs and vs latency with each family's Pareto front, success plots per budget,
stability under compression per family and method, CompressTracker's ablation)."""
from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import FuncFormatter

from ...data.sources import load_split
from ...evaluate import open_results, paired_bootstrap, score_results
from ...evaluate.plots import plot_ope
from ...io import atomic_write, new_figure, save_figure
from ...machine import machine_info
from ...search.pareto import pareto_front
from .runner import TEST_FILE
from .settings import Experiment

MATCHED_FILE = "matched.json"   # the matched table, each family's start, seeds and split: the 2x2 join reads it

Row = dict[str, Any]
CSV_FIELDS = ["family", "method", "seed", "budget", "kind", "matched_to", "layers", "target_macs", "budget_fraction", "macs",
              "params", "latency_ms", "ao", "sr50", "sr75", "success_auc", "precision", "norm_precision", "macs_vs_nas",
              "train_iterations", "train_batch", "train_samples", "total_train_samples", "folder"]
METRICS = ("ao", "sr50", "sr75", "success_auc", "precision", "norm_precision")
COLORS = {"nas": "tab:blue", "cnn": "tab:orange", "vit": "tab:green", "hybrid": "tab:red", "largest": "tab:purple",
          "lite0": "tab:brown", "lite0_scratch": "tab:pink"}
NAMES = {"nas": "NAS (searched + retrained)", "cnn": "CNN", "vit": "ViT (one-stream transformer)",
         "hybrid": "hybrid (STARK-lite)", "largest": "the supernet's largest subnet",
         "lite0": "Lite0 tracker (ImageNet start)", "lite0_scratch": "Lite0 tracker (random start)"}
SHORT = {"cnn": "CNN", "vit": "ViT", "hybrid": "hybrid", "largest": "largest subnet", "lite0": "Lite0",
         "lite0_scratch": "Lite0 (scratch)"}
MARKERS = ("o", "s", "^", "v", "P", "X", "D")


def _color(family: str) -> str:
    return COLORS.get(family, "tab:gray")


def method_label(exp: Experiment, family: str, method: str) -> str:
    """``pruned CNN`` for a family with one criterion, ``pruned ViT (vit-slim)`` for one of several,
    ``ViT compresstracker`` for CompressTracker students."""
    name = SHORT.get(family, family)
    if not method.startswith("pruned-"):
        return f"{name} {method}"
    fam = next((f for f in exp.families if f.name == family), None)
    criterion = method.removeprefix("pruned-")
    return f"pruned {name}" + (f" ({criterion})" if fam is not None and len(fam.criteria) > 1 else "")


def compressed_methods(exp: Experiment) -> list[tuple[str, str]]:
    """``(family, method)`` of every pruning method of the config, in report order."""
    return [(f.name, f"pruned-{c}") for f in exp.families for c in f.criteria]


def tracker_folders(exp: Experiment, out: Path, seeds: Iterable[int]) -> list[Path]:
    """Every tracker folder the comparison of ``seeds`` makes (finished or not), in report order."""
    s, folders = exp.settings, []
    for seed in seeds:
        folders += [out / "nas" / f"seed{seed}" / f"retrain_{b}" for b in s.nas_budgets]
        for family in exp.families:
            base = out / family.name / f"seed{seed}"
            folders.append(base / "dense")
            for criterion in family.criteria:
                folders += [base / criterion / f"prune_{b}" for b in s.nas_budgets]
                folders += [base / criterion / f"prune_{s.extreme_label(f)}" for f in s.extreme_budgets]
        if exp.compress is not None:
            folders += [out / exp.compress.teacher / f"seed{seed}" / "compresstracker" / label
                        for label, _, _ in exp.compress.variants]
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
        elif (folder / "unmatched.json").exists():  # {family}/seed{S}/{criterion}/prune_{B}
            family, seed, criterion = folder.parts[-4], int(folder.parts[-3].removeprefix("seed")), folder.parts[-2]
            unmatched.append({"family": family, "method": f"pruned-{criterion}", "seed": seed,
                              "budget": folder.name.removeprefix("prune_"),
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


def margin_interval(nas: dict[int, Row], pruned: dict[int, Row], seeds: Sequence[int]) -> tuple[float, float, float]:
    """NAS - pruned AO, paired by seed and test sequence: the mean over seeds of the AO margin (each
    sequence weighted by the frames its AO counts) with a 95 % bootstrap interval of the crossed
    design (:func:`~lighttrack_nas.evaluate.paired_bootstrap`: seeds and sequences resampled)."""
    names = sorted(nas[seeds[0]]["per_sequence"])
    gaps = []
    for s in seeds:
        mine, theirs = nas[s]["per_sequence"], pruned[s]["per_sequence"]
        if sorted(mine) != names or sorted(theirs) != names:
            raise ValueError(f"seed {s}: the NAS and pruned trackers were scored on other test sequences than seed "
                             f"{seeds[0]}'s; evaluate them again on one split")
        gaps.append([mine[name]["ao"] - theirs[name]["ao"] for name in names])
    first = nas[seeds[0]]["per_sequence"]
    frames = [first[name]["ao_frames"] for name in names] if all("ao_frames" in first[n] for n in names) else None
    return paired_bootstrap(gaps, frames)


def matched_table(exp: Experiment, rows: Sequence[Row], unmatched: Sequence[Row]) -> list[Row]:
    """Per NAS budget and pruning method: MACs and AO of both over seeds, the AO margin (NAS - pruned,
    paired by seed) with its 95 % interval over seeds x test sequences, and the verdict: ``NAS ahead``
    or ``NAS behind`` only where the interval excludes 0, ``tie`` otherwise."""
    tol = exp.settings.tolerance
    table = []
    for label in exp.settings.nas_budgets:
        nas = {r["seed"]: r for r in rows if r["family"] == "nas" and r["budget"] == label}
        for family, method in compressed_methods(exp):
            name = method_label(exp, family, method)
            pruned = {r["seed"]: r for r in rows if r.get("kind") == "matched" and r["matched_to"] == label
                      and r["family"] == family and r["method"] == method}
            seeds = sorted(set(nas) & set(pruned))
            entry: Row = {"budget": label, "family": family, "method": method, "name": name, "seeds": seeds}
            table.append(entry)
            if not seeds:
                reasons = [u["reason"] for u in unmatched if u["budget"] == label
                           and u.get("family", family) == family and u.get("method", method) == method]
                why = reasons[0] if reasons else ("the NAS tracker is missing" if not nas else f"the {name} is missing")
                entry["verdict"] = f"no verdict: {why}"
                continue
            margins = [nas[s]["ao"] - pruned[s]["ao"] for s in seeds]
            diffs = [pruned[s]["macs"] / nas[s]["macs"] - 1 for s in seeds]
            entry.update(nas_macs=float(np.mean([nas[s]["macs"] for s in seeds])),
                         cnn_macs=float(np.mean([pruned[s]["macs"] for s in seeds])),
                         nas_ao=_mean_std([nas[s]["ao"] for s in seeds]),
                         cnn_ao=_mean_std([pruned[s]["ao"] for s in seeds]),
                         margin=_mean_std(margins), wins=sum(m >= 0 for m in margins),
                         worst_macs_diff=max(diffs, key=abs))
            mean, std = entry["margin"]
            entry["margin_ci"] = margin_interval(nas, pruned, seeds)[1:]
            low, high = entry["margin_ci"]
            spread = f" ± {std:.3f}" if std is not None else " (1 seed: no spread)"
            detail = (f"AO margin {mean:+.3f}{spread}, 95 % CI [{low:+.3f}, {high:+.3f}] over seeds x test sequences; "
                      f"NAS ahead or equal on {entry['wins']}/{len(seeds)} seed(s)")
            if abs(entry["worst_macs_diff"]) > tol:
                entry["matched"] = False
                tried = max((len(pruned[s].get("match", {}).get("tried", [])) for s in seeds), default=0)
                entry["verdict"] = (f"no verdict: the {name}'s MACs differ from the NAS subnet's by "
                                    f"{entry['worst_macs_diff']:+.1%} (more than {tol:.0%}; pruning removes whole "
                                    f"channels, and this was the closest of the {tried} budget fraction(s) tried); "
                                    f"{detail}")
            else:
                entry["matched"] = True
                entry["outcome"] = "ahead" if low > 0 else "behind" if high < 0 else "tie"
                verdict = {"ahead": f"NAS ahead of {name}", "behind": f"NAS behind {name}",
                           "tie": f"tie: NAS vs {name}"}[entry["outcome"]]
                entry["verdict"] = f"{verdict} within {tol:.0%} MACs ({detail})"
    return table


def retention(rows: Sequence[Row]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per compressed ``(family, method)``: mean AO retained (AO / the seed's dense AO of the family)
    over its trackers and at its smallest MACs ratio (the most extreme budget), with that ratio."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for (family, method), points in stability_points(rows).items():
        if family == "nas" or method == "dense" or not points:
            continue
        smallest = min(p[0] for p in points)
        at_smallest = [p[1] for p in points if np.isclose(p[0], smallest, rtol=0.25)]
        out[(family, method)] = {"mean": float(np.mean([p[1] for p in points])), "ratio": smallest,
                                 "at_smallest": float(np.mean(at_smallest)), "trackers": len(points)}
    return out


def _means(rows: Sequence[Row], key: str) -> list[tuple[float, float, str]]:
    """(mean cost ``key``, mean AO, budget) of each budget of ``rows`` over seeds, by cost."""
    groups: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        if r.get(key) is not None:
            groups[r["budget"]].append(r)
    points = [(float(np.mean([r[key] for r in g])), float(np.mean([r["ao"] for r in g])), b) for b, g in groups.items()]
    return sorted(points)


# ---------------------------------------------------------------------- plots
def _plain_ticks(ax: Any) -> None:
    """Log-scale x ticks written as plain numbers (0.5, 2, 30) instead of powers of ten."""
    formatter = FuncFormatter(lambda value, _: f"{value:g}")
    ax.xaxis.set_major_formatter(formatter)
    ax.xaxis.set_minor_formatter(formatter)


def plot_ao_vs_cost(rows: Sequence[Row], path: Path, key: str, label: str, scale: float = 1.0) -> Path:
    """AO against a cost (``macs`` or ``latency_ms``): every tracker of every seed, the mean per
    budget and method (one marker per method, one colour per family), and each family's Pareto front
    over those means (lower cost, higher AO)."""
    figure = new_figure(figsize=(8.0, 5.2))
    ax = figure.add_subplot(1, 1, 1)
    for family in dict.fromkeys(r["family"] for r in rows):
        own = [r for r in rows if r["family"] == family]
        ax.scatter([r[key] * scale for r in own], [r["ao"] for r in own], s=12, alpha=0.3, c=_color(family))
        family_means = []
        for i, method in enumerate(dict.fromkeys(r["method"] for r in own)):
            means = _means([r for r in own if r["method"] == method], key)
            family_means += means
            ax.scatter([m[0] * scale for m in means], [m[1] for m in means], s=36, c=_color(family),
                       marker=MARKERS[i % len(MARKERS)], edgecolors="k", label=f"{family}: {method}")
            for x, y, budget in means:
                ax.annotate(budget, (x * scale, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        family_means.sort()
        front = [family_means[i] for i in pareto_front([m[0] for m in family_means], [m[1] for m in family_means])]
        ax.step([m[0] * scale for m in front], [m[1] for m in front], where="post", c=_color(family), lw=1.5,
                label=f"{NAMES.get(family, family)} Pareto front")
    ax.set(xscale="log", xlabel=label, ylabel="AO (test split)", title=f"AO vs {label} (means over seeds)")
    _plain_ticks(ax)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6, loc="best", ncol=2)
    return save_figure(figure, path)


def stability_points(rows: Sequence[Row]) -> dict[tuple[str, str], list[tuple[float, float, str]]]:
    """Per ``(family, method)``, (MACs / reference MACs, AO / reference AO, budget) of every tracker;
    the reference is the seed's dense tracker of the family, or for NAS the seed's largest NAS tracker."""
    out: dict[tuple[str, str], list[tuple[float, float, str]]] = {}
    for family in dict.fromkeys(r["family"] for r in rows):
        for seed in sorted({r["seed"] for r in rows if r["family"] == family}):
            own = [r for r in rows if r["family"] == family and r["seed"] == seed]
            dense = [r for r in own if r["kind"] == "dense"]
            ref = dense[0] if dense else max(own, key=lambda r: r["macs"])
            if ref["ao"] <= 0:
                continue
            for r in own:
                if r["kind"] != "dense":
                    out.setdefault((family, r["method"]), []).append((r["macs"] / ref["macs"], r["ao"] / ref["ao"],
                                                                      r["budget"]))
    return out


def plot_stability(rows: Sequence[Row], path: Path) -> Path:
    """AO retained (relative to the family's dense tracker, or to the largest NAS tracker) against the
    MACs ratio, per family and method: every tracker (faint), the mean per budget over seeds and, with
    several seeds, a band of +- one standard deviation over them."""
    figure = new_figure(figsize=(8.0, 5.2))
    ax = figure.add_subplot(1, 1, 1)
    methods: dict[str, int] = defaultdict(int)
    for (family, method), points in stability_points(rows).items():
        marker = MARKERS[methods[family] % len(MARKERS)]
        methods[family] += 1
        ax.scatter([p[0] for p in points], [p[1] for p in points], s=12, alpha=0.3, c=_color(family), marker=marker)
        by_budget: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
        for point in points:
            by_budget[point[2]].append(point)
        mean = sorted((float(np.mean([p[0] for p in g])), float(np.mean([p[1] for p in g])),
                       float(np.std([p[1] for p in g], ddof=1)) if len(g) > 1 else 0.0) for g in by_budget.values())
        if any(m[2] > 0 for m in mean):
            ax.fill_between([m[0] for m in mean], [m[1] - m[2] for m in mean], [m[1] + m[2] for m in mean],
                            color=_color(family), alpha=0.12, lw=0)
        reference = "largest NAS tracker" if family == "nas" else f"dense {family}"
        ax.plot([m[0] for m in mean], [m[1] for m in mean], marker=marker, ls="-" if method.startswith(
            ("pruned", "nas")) else "--", c=_color(family), label=f"{family}: {method} (vs the {reference})")
    ax.axhline(1.0, c="0.5", ls="--", lw=1)
    ax.set(xscale="log", xlabel="MACs / reference MACs (compression ratio)", ylabel="AO retained (AO / reference AO)",
           title="Stability under compression (means over seeds, bands: +- 1 std)")
    _plain_ticks(ax)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6, loc="best")
    return save_figure(figure, path)


def _name(row: Row) -> str:
    return f"{row['family']} {row['method']} s{row['seed']} {row['budget']} ({row['macs'] / 1e6:.1f}M)"


def plot_success(exp: Experiment, rows: Sequence[Row], out: Path) -> list[Path]:
    """Success (and precision) plots of the best tracker (highest AO over seeds) of NAS and of each
    pruning method at each NAS budget (``success_{B}.png``), of the dense and extreme-budget trackers
    (``success_extreme.png``) and of the CompressTracker students (``success_compresstracker.png``)."""
    sequences = load_split(exp.nas["data"], exp.settings.split)
    groups: list[tuple[str, list[list[Row]]]] = []
    methods = compressed_methods(exp)
    for label in exp.settings.nas_budgets:
        groups.append((label, [[r for r in rows if r["family"] == "nas" and r["budget"] == label]] + [
            [r for r in rows if r.get("kind") == "matched" and r["matched_to"] == label and r["family"] == f
             and r["method"] == m] for f, m in methods]))
    extremes = [[r for r in rows if r["kind"] == "dense" and r["family"] == f.name] for f in exp.families]
    extremes += [[r for r in rows if r["kind"] == "extreme" and r["budget"] == exp.settings.extreme_label(x)
                  and r["family"] == f and r["method"] == m] for x in exp.settings.extreme_budgets for f, m in methods]
    groups.append(("extreme", extremes))
    if exp.compress is not None:
        groups.append(("compresstracker", [[r for r in rows if r["kind"] == "compressed" and r["budget"] == label]
                                           for label, _, _ in exp.compress.variants]))
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


def _kind_name(row: Row) -> str:
    fam = SHORT.get(row["family"], row["family"])
    return {"nas": "NAS subnet", "dense": f"dense {fam}", "matched": f"{row['method']} {fam} (every budget)",
            "extreme": f"{row['method']} {fam} (every budget)",
            "compressed": f"{fam} CompressTracker student"}[row["kind"]]


def _training_section(rows: Sequence[Row]) -> list[str]:
    lines = ["## Compute and starting weights", "",
             "Per tracker kind: every training phase its weights went through (iterations x batch), what shares "
             "it, whether those weights descend from ImageNet ones, and the val evaluations spent on choosing it "
             "(the NAS search's candidates; pruning and compression choose by MACs alone). Wall times: the stage "
             "times below.", "",
             "| tracker | phase | iterations | batch | samples | shared by | ImageNet start | val evaluations |",
             "|---|---|---|---|---|---|---|---|"]
    seen = set()
    for r in rows:
        what = _kind_name(r)
        if what in seen:
            continue
        seen.add(what)
        for p in r["training"]:
            imagenet = {True: "yes", False: "no"}.get(p.get("imagenet"), "not recorded")
            lines.append(f"| {what} | {p['phase']} | {p['iterations']} | {p['batch']} | {p['samples']:,} | "
                         f"{p['shared'] or 'this tracker only'} | {imagenet} | "
                         f"{_fmt(r.get('selection_evaluations'), 0)} |")
    nas = [r for r in rows if r["family"] == "nas"]
    for r in {_kind_name(r): r for r in rows if r["kind"] in ("matched", "extreme", "compressed")}.values():
        if not nas:
            break
        own, total = (nas[0]["train_samples"], r["train_samples"]), (nas[0]["total_train_samples"],
                                                                       r["total_train_samples"])
        lines += ["", f"{_kind_name(r)}: its own training {own[1]:,} samples vs the NAS retraining {own[0]:,} "
                      f"({'equal' if own[0] == own[1] else 'NOT equal'}); including the shared phases its weights "
                      f"went through {total[1]:,} vs NAS {total[0]:,} samples "
                      f"({'equal' if total[0] == total[1] else 'NOT equal'})."]
    if nas:
        shared = sorted({p["shared"] for r in nas for p in r["training"] if p["phase"] == "supernet"})
        supernets = (f"Supernets: {len(shared)}, shared by {'; '.join(shared)}. " if shared else "")
        lines += ["", supernets + "Each dense tracker and its sparsity training are trained once per seed, shared by "
                  "every compressed tracker of the family."]
    return lines + [""]


def _stability_section(exp: Experiment, rows: Sequence[Row], table: Sequence[Row]) -> list[str]:
    """Retained AO per compressed method, the most stable family, and whether NAS beats every one."""
    kept = retention(rows)
    if not kept:
        return []
    lines = ["## Stability under compression", "",
             "AO retained = AO / the seed's dense AO of the family (CompressTracker students: of their teacher).",
             "", "| family | method | trackers | mean AO retained | smallest MACs ratio | AO retained there |",
             "|---|---|---|---|---|---|"]
    for (family, method), k in sorted(kept.items(), key=lambda item: -item[1]["mean"]):
        lines.append(f"| {family} | {method} | {k['trackers']} | {k['mean']:.3f} | {k['ratio']:.3f} | "
                     f"{k['at_smallest']:.3f} |")
    by_family: dict[str, list[float]] = defaultdict(list)
    for (family, method), k in kept.items():
        if method.startswith("pruned-"):
            by_family[family].append(k["at_smallest"])
    if by_family:
        ranked = sorted(((float(np.mean(v)), f) for f, v in by_family.items()), reverse=True)
        lines += ["", f"Most stable under pruning (AO retained at its most extreme budget, mean over its pruning "
                      f"methods): **{NAMES.get(ranked[0][1], ranked[0][1])}** ({ranked[0][0]:.3f})"
                  + "".join(f", then {NAMES.get(f, f)} ({v:.3f})" for v, f in ranked[1:]) + "."]
    compared = [e for e in table if e.get("matched")]
    if compared:
        losses = [e for e in compared if e["margin"][0] < 0]
        behind = ", ".join(f"{e['name']} at {e['budget']}" for e in losses)
        every = len(compared) == len(table) and not losses
        lines += ["", f"Does one-shot NAS beat every compressed family at every budget? **{'yes' if every else 'no'}**"
                      f": NAS ahead or equal in {len(compared) - len(losses)} of {len(table)} (budget, method) pairs"
                  + (f"; behind {behind}" if losses else "")
                  + (f"; {len(table) - len(compared)} pair(s) without a verdict" if len(compared) < len(table) else "")
                  + "."]
    return lines + [""]


def _ablation_section(exp: Experiment, rows: Sequence[Row]) -> list[str]:
    """CompressTracker: the students and the ablation (AO as each component is added)."""
    plan = exp.compress
    if plan is None:
        return []
    lines = ["## CompressTracker", "", f"Teacher: the dense {plan.teacher} tracker of each seed "
             f"({exp.family(plan.teacher).experiment(0)['model'].get('depth', '?')} layers); students of N layers, "
             f"stage division as published (student layer i from the last teacher layer of stage i).", "",
             "| student | replacement | guidance | mimicking | MACs (M) | latency (ms) | AO | change vs previous row |",
             "|---|---|---|---|---|---|---|---|"]
    previous = None
    for label, layers, switches in plan.variants:
        own = [r for r in rows if r["kind"] == "compressed" and r["budget"] == label]
        if not own:
            lines.append(f"| {label} | " + " | ".join("yes" if switches[k] else "no" for k in
                                                        ("replacement", "guidance", "mimic")) + " | - | - | - | - |")
            continue
        ao = _mean_std([r["ao"] for r in own])
        change = f"{ao[0] - previous:+.3f}" if previous is not None and layers == plan.ablation else "-"
        lines.append(f"| {label} | " + " | ".join("yes" if switches[k] else "no" for k in
                                                    ("replacement", "guidance", "mimic"))
                     + f" | {np.mean([r['macs'] for r in own]) / 1e6:.2f} | "
                       f"{np.mean([r['latency_ms'] for r in own]):.2f} | {_ms(ao)} | {change} |")
        previous = ao[0] if layers == plan.ablation else previous
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
    s, machine = exp.settings, machine_info()
    methods = ", ".join(f"{f.name}: {'/'.join(f.criteria)}" for f in exp.families)
    lines = [f"# NAS vs compressed trackers: {exp.config}", "",
             f"Seeds {seeds}; every tracker tracked on the `{s.split}` split "
             f"({rows[0]['sequences'] if rows else '?'} sequences) with the same tracker settings; MACs per frame "
             f"(fvcore, one multiply-add = one MAC, template cached); latency: network per frame, fused torch form, "
             f"{s.latency_threads} thread, median of {s.latency_min_run_time:g} s of runs. Machine: "
             f"{machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}. NAS retraining init: "
             f"{s.nas_init}; pruning methods: {methods}.", ""]
    if missing:
        lines += [f"**Incomplete**: {len(missing)} tracker(s) not evaluated yet: " + ", ".join(missing), ""]
    lines += ["## Matched MACs: NAS subnet vs pruned trackers", "",
              "| budget | pruned | NAS MACs (M) | pruned MACs (M) | worst MACs diff | NAS AO | pruned AO | "
              "AO margin (NAS - pruned) [95 % CI] | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    for e in table:
        if "margin" not in e:
            lines.append(f"| {e['budget']} | {e['name']} | - | - | - | - | - | - | {e['verdict']} |")
            continue
        lines.append(f"| {e['budget']} | {e['name']} | {e['nas_macs'] / 1e6:.2f} | {e['cnn_macs'] / 1e6:.2f} | "
                     f"{e['worst_macs_diff']:+.1%} | {_ms(e['nas_ao'])} | {_ms(e['cnn_ao'])} | {_ms(e['margin'], '+')} "
                     f"[{e['margin_ci'][0]:+.3f}, {e['margin_ci'][1]:+.3f}] | "
                     f"{e['verdict'].split(' (AO margin')[0]} |")
    lines += ["", "Verdicts:", ""] + [f"- **{e['budget']}** vs {e['name']}: {e['verdict']}" for e in table]
    first = exp.families[0]  # the headline baseline: compare.cnn, else the first of compare.families
    headline = [e for e in table if e["family"] == first.name and e["method"] == f"pruned-{first.criteria[0]}"]
    compared = [e for e in headline if e.get("matched")]
    outcomes = [e["outcome"] for e in compared]
    bar = compared and len(compared) == len(headline) and all(e["margin"][0] >= 0 for e in compared)
    lines += ["", f"The bar (NAS >= {method_label(exp, first.name, 'pruned-' + first.criteria[0])} in mean AO at "
                  f"every budget, MACs within {s.tolerance:.0%}): "
                  f"**{'met' if bar else 'not met'}** ({sum(e['margin'][0] >= 0 for e in compared)} of "
                  f"{len(headline)} budget(s)). Shown by the 95 % interval over seeds x test sequences: NAS ahead at "
                  f"{outcomes.count('ahead')}, a tie at {outcomes.count('tie')}, NAS behind at "
                  f"{outcomes.count('behind')}.", ""]
    lines += _stability_section(exp, rows, table) + _ablation_section(exp, rows)
    if unmatched:
        lines += ["Budgets that could not be pruned to:", ""]
        lines += [f"- {u['family']} {u['method']}, seed {u['seed']}, {u['budget']}: {u['reason']}"
                  for u in unmatched] + [""]
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
    atomic_write(out / MATCHED_FILE, json.dumps({
        "config": str(exp.config), "seeds": seeds, "split_id": rows[0].get("split_id") if rows else None,
        "starts": starts(rows), "dense_ao": dense_ao(rows), "matched": table}, indent=2))
    return {"rows": rows, "matched": table, "unmatched": unmatched, "missing": missing, "plots": plots}


def dense_ao(rows: Sequence[Row]) -> dict[str, float]:
    """Per family with a dense tracker: its mean AO over seeds (what the family's pruning starts from)."""
    dense: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r.get("kind") == "dense":
            dense[r["family"]].append(r["ao"])
    return {family: float(np.mean(ao)) for family, ao in dense.items()}


def starts(rows: Sequence[Row]) -> dict[str, bool | None]:
    """Per family: True when every training phase of every tracker descends from ImageNet weights,
    False when none does, None when mixed or not recorded."""
    flags: dict[str, set] = defaultdict(set)
    for r in rows:
        flags[r["family"]] |= {phase.get("imagenet") for phase in r["training"]}
    return {family: next(iter(f)) if len(f) == 1 and None not in f else None for family, f in flags.items()}
