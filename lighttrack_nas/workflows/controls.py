"""Controls for the search: does evolution beat random search, and does the searched architecture
beat random architectures of its size? (docs/search.md, "Does the search search?")

For each seed, on that seed's supernet (a NAS seed retrains the supernet: give one per seed):

(a) evolution and random search under one MACs budget alone (the search config's other budgets are
    dropped: a latency budget would make the searched space depend on how loaded the machine was while
    its latency table was timed), at the same number of evaluations;
(b) ``randoms`` uniform architectures within +-``tolerance`` of the evolution winner's MACs.

Every architecture is then trained stand-alone with one recipe and scored on the val split
(:func:`~lighttrack_nas.workflows.ranking.train_and_score`: the scores are kept, per architecture,
in ``OUT/standalone.json``, so a re-run, or another seed into the same ``OUT``, reuses them). The
paired differences per seed, (a) evolution winner - random-search winner and (b) evolution winner -
median of the random architectures, are reported with their mean, spread and a 95 % bootstrap
interval over seeds and val sequences (crossed: each draw resamples the seeds and, once for all of
them, the sequences; per-sequence AO differences, equally weighted), on the whole val split and on
its held-out part: the sequences the searches' fitness never tracked (``search.val_sequences``), so
a winner is not scored on the sequences it was chosen on.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence as Seq
from pathlib import Path
from typing import Any

import numpy as np

from ..config import config_differences, load_experiment
from ..data.sources import load_split
from ..evaluate.metrics import paired_bootstrap
from ..io import locked, write_json
from ..search.settings import SearchSettings
from ..space.space import Architecture, SearchSpace
from .ranking import StandaloneResults, check_shard, sharded, standalone_recipe, train_and_score
from .stages import stage_search

log = logging.getLogger(__name__)


def same_size_architectures(space: SearchSpace, macs: Callable[[Architecture], float], target: float, count: int,
                            tolerance: float = 0.05, seed: int = 0, max_draws: int = 200_000) -> list[Architecture]:
    """``count`` distinct uniform architectures whose MACs lie within ``target`` x (1 +- ``tolerance``)
    (rejection sampling, seeded); ValueError when ``max_draws`` draws do not find them."""
    rng = np.random.default_rng(seed)
    found: dict[Architecture, None] = {}
    for _ in range(max_draws):
        arch = space.sample(rng)
        if abs(macs(arch) - target) <= tolerance * target:
            found[arch] = None
            if len(found) == count:
                return list(found)
    raise ValueError(f"only {len(found)} of {count} random architectures within {tolerance:.0%} of "
                     f"{target / 1e6:.1f} M MACs in {max_draws} draws: widen the tolerance")


def searched_sequences(search_config: str | Path) -> list[str] | None:
    """Names of the val sequences the search's fitness tracks, in the search's order (None: the whole
    split, or a split other than val)."""
    cfg = load_experiment(search_config)
    settings = SearchSettings.from_config(cfg.get("search"), f"{search_config}: search")
    if settings.split != "val" or settings.val_sequences is None:
        return None
    return [s.name for s in load_split(cfg["data"], "val", settings.val_sequences)]


def summarize(rows: list[dict[str, Any]], key: str, held_out: Seq[str] | None = None,
              resamples: int = 10000) -> dict[str, Any]:
    """Mean, std, wins and bootstrap interval of the paired difference ``key`` over the seeds' rows; with
    ``held_out`` (sequence names) the same for the mean difference over those sequences alone."""
    def gaps(names: Seq[str]) -> list[list[float]]:  # (seeds, sequences), paired by sequence name
        return [[r[key]["per_sequence"][name] for name in names] for r in rows]

    values = np.array([r[key]["ao"] for r in rows])
    mean, low, high = paired_bootstrap(gaps(sorted(rows[0][key]["per_sequence"])), resamples=resamples)
    summary = {"per_seed": values.tolist(), "mean": float(values.mean()), "std": float(values.std(ddof=1)) if
               len(values) > 1 else 0.0, "wins": int((values > 0).sum()), "seeds": len(values),
               "per_sequence_mean": mean, "ci95": [low, high]}
    if held_out:
        per_seed = np.array([np.mean(g) for g in gaps(held_out)])
        mean, low, high = paired_bootstrap(gaps(held_out), resamples=resamples)
        summary["held_out"] = {"sequences": len(held_out), "per_seed": per_seed.tolist(),
                               "wins": int((per_seed > 0).sum()), "mean": mean, "ci95": [low, high]}
    return summary


def _same_size_draw(path: Path, supernet: Path, winner: str, count: int, tolerance: float, seed: int) -> list[str]:
    """The seed's same-size random architectures: read from ``path`` when drawn before (with the same winner,
    count and tolerance; ValueError naming the difference otherwise), else drawn on ``supernet``'s space and
    written there, so a resumed run needs the supernet only for what it has not yet searched or drawn."""
    from ..cost import CostTable
    from ..models import load_supernet

    request = {"winner": winner, "count": count, "tolerance": tolerance, "seed": seed}
    if path.exists():
        recorded = json.loads(path.read_text())
        changed = config_differences({k: recorded.get(k) for k in request}, request)
        if changed:
            raise ValueError(f"{path}: drawn with other settings ({'; '.join(changed)}): use another --out")
        return recorded["architectures"]
    net = load_supernet(supernet)
    table = CostTable(net)
    target = table.macs(net.space.decode(winner))
    sized = same_size_architectures(net.space, table.macs, target, count, tolerance, seed)
    write_json(path, request | {"target_macs": target, "architectures": [str(a) for a in sized],
                                "macs": [table.macs(a) for a in sized]})
    return [str(a) for a in sized]


def run_controls(search_config: str | Path, recipe: str | Path, supernets: Seq[str | Path], seeds: Seq[int],
                 out: str | Path, flops_budget: str, *, randoms: int = 5, tolerance: float = 0.05,
                 shard: tuple[int, int] = (0, 1), progress: bool = True) -> dict[str, Any] | None:
    """Run both controls for every seed (``supernets``: one per seed, or one shared by all) into ``out``
    and write ``out/controls.json``; returns the report. Resumable: finished searches (``sSEED/*/best.json``),
    random draws (``sSEED/same_size.json``) and stand-alone trainings (``standalone.json``) are reused,
    interrupted ones continue; a seed whose searches and draws are recorded no longer reads its supernet, so
    those small files carry a study to another machine. ``shard`` ``(k, n)``: n processes run the same call into
    ``out``; each searches a seed only while holding its lock (the others wait, then reuse the result) and
    trains the stand-alone jobs (one per distinct architecture, over all seeds in order) whose index is k modulo
    n; a shard that ends with other shards' jobs untrained writes no ``controls.json`` and returns None (re-run
    when they have finished, with any shard or none)."""
    if len(supernets) not in (1, len(seeds)):
        raise ValueError(f"give one supernet per seed ({len(seeds)}) or one for all, got {len(supernets)}")
    if randoms < 1 or not 0 < tolerance < 1:
        raise ValueError(f"need randoms >= 1 and 0 < tolerance < 1, got {randoms} and {tolerance}")
    check_shard(shard)
    out = Path(out)
    cfg = load_experiment(recipe)
    results = StandaloneResults(out / "standalone.json", standalone_recipe(cfg) | {"split": "val"})
    plans = []
    for i, seed in enumerate(seeds):
        supernet = Path(supernets[i % len(supernets)])
        folder = out / f"s{seed}"
        winners = {}
        with locked(folder / ".search.lock", wait=True, what=f"seed {seed}'s searches"):  # the other shards reuse them
            for strategy in ("evolution", "random"):
                log.info("seed %d: %s search under %s MACs", seed, strategy, flops_budget)
                winners[strategy] = stage_search(search_config, supernet, folder / strategy, progress,
                                                 flops_budget=flops_budget, params_budget="none",
                                                 latency_budget="none", strategy=strategy, seed=seed)
            sized = _same_size_draw(folder / "same_size.json", supernet, winners["evolution"]["best"]["arch"],
                                    randoms, tolerance, seed)
        roles = {role: winners[role]["best"]["arch"] for role in ("evolution", "random")}
        roles |= {f"size{j}": arch for j, arch in enumerate(sized)}
        plans.append((seed, supernet, winners, roles))
    jobs = {}  # architecture -> its first (seed, role): an architecture of several roles is trained once
    for seed, _, _, roles in plans:
        for role, arch in roles.items():
            jobs.setdefault(arch, (seed, role))
    for k, (arch, (seed, role)) in sharded(list(jobs.items()), shard):
        if results.get(arch) is None:
            log.info("seed %d: training %s stand-alone (job %d of %d)", seed, role, k + 1, len(jobs))
        score = train_and_score(results, recipe, arch, f"runs/s{seed}_{role}", "val", progress)
        log.info("seed %d: %s val AO %.3f", seed, role, score["ao"])
    results.refresh()
    missing = [f"s{seed} {role}" for arch, (seed, role) in jobs.items() if results.get(arch) is None]
    if missing:
        log.info("%d stand-alone trainings of other shards still to finish: %s", len(missing), ", ".join(missing))
        return None
    rows = [_control_row(seed, supernet, winners, {role: results.get(arch) for role, arch in roles.items()},
                         len(roles) - 2) for seed, supernet, winners, roles in plans]
    searched = searched_sequences(search_config)
    held_out = None if searched is None else sorted(set(rows[0]["evolution_minus_random"]["per_sequence"]) - set(searched))
    report = {"search_config": str(search_config), "recipe": str(recipe), "flops_budget": flops_budget,
              "randoms": randoms, "tolerance": tolerance, "supernet_seeds": len(set(map(str, supernets))),
              "searched_sequences": searched, "seeds": rows,
              "evolution_minus_random": summarize(rows, "evolution_minus_random", held_out),
              "evolution_minus_median": summarize(rows, "evolution_minus_median", held_out)}
    write_json(out / "controls.json", report)
    plot_controls(report, out / "controls.png")
    return report


def plot_controls(report: dict[str, Any], png: Path) -> None:
    """Left: every trained architecture's stand-alone val AO against its MACs, per seed (evolution's winner,
    random search's, the same-size draw and its median). Right: both paired differences per seed and their
    mean with the 95 % interval, on the held-out sequences when there are some, else on the whole split."""
    from ..io import new_figure, save_figure

    fig = new_figure(figsize=(11, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    for i, row in enumerate(report["seeds"]):
        color = f"C{i}"
        sized = row["same_size"]
        macs = [r["macs"] / 1e6 for r in sized]
        left.scatter(macs, [r["val_ao"] for r in sized], color=color, marker="o", alpha=0.5, s=22)
        left.hlines(np.median([r["val_ao"] for r in sized]), min(macs), max(macs), color=color, alpha=0.6)
        for role, marker in (("evolution", "*"), ("random", "^")):
            winner = row["winners"][role]
            left.scatter(winner["macs"] / 1e6, winner["val_ao"], color=color, marker=marker, s=110 if marker == "*" else 50,
                         edgecolor="black", linewidth=0.5, label=f"seed {row['seed']}" if role == "evolution" else None)
    for marker, label in (("*", "evolution's winner"), ("^", "random search's winner"),
                          ("o", "same-size random (line: median)")):
        left.scatter([], [], color="grey", marker=marker, label=label)
    left.set(xlabel="M MACs", ylabel="val AO, trained stand-alone")
    left.set_title("every trained architecture, per seed", fontsize=10)
    left.legend(fontsize=7, framealpha=0.6)
    held_out = "held_out" in report["evolution_minus_random"]
    differences = (("evolution_minus_random", "evolution -\nrandom search"),
            ("evolution_minus_median", "evolution -\nsame-size median"))
    for y, (key, _) in enumerate(differences):
        part = report[key]["held_out"] if held_out else report[key]
        per_seed, mean = part["per_seed"], part["mean" if held_out else "per_sequence_mean"]
        right.scatter(per_seed, [y + 0.15] * len(per_seed), color=[f"C{i}" for i in range(len(per_seed))], s=22)
        right.errorbar(mean, y - 0.15, xerr=[[mean - part["ci95"][0]], [part["ci95"][1] - mean]], fmt="s",
                       color="black", capsize=4)
        right.text(mean, y - 0.35, f"{mean:+.3f} [{part['ci95'][0]:+.3f}, {part['ci95'][1]:+.3f}]", ha="center",
                   va="center", fontsize=8)
    right.axvline(0, color="grey", linewidth=0.8)
    right.set_yticks(range(len(differences)), [label for _, label in differences])
    right.set(xlabel="val AO difference", ylim=(-0.6, 1.5))
    right.set_title(f"{'held-out' if held_out else 'all'} val sequences: seeds (dots), mean, 95 % interval",
                    fontsize=10)
    right.grid(alpha=0.3, axis="x")
    save_figure(fig, png)


def _control_row(seed: int, supernet: Path, winners: dict[str, Any], trained: dict[str, dict[str, Any]],
                 randoms: int) -> dict[str, Any]:
    """One seed's row of the report: its searches' winners, the same-size draw (roles ``size0`` ..) and both
    paired differences."""
    scored = {role: trained[role] for role in ("evolution", "random")}
    sized_scores = [trained[f"size{j}"] for j in range(randoms)]
    median = float(np.median([r["ao"] for r in sized_scores]))
    names = sorted(scored["evolution"]["per_sequence_ao"])
    evo = {n: scored["evolution"]["per_sequence_ao"][n] for n in names}
    median_per_sequence = {n: float(np.median([r["per_sequence_ao"][n] for r in sized_scores])) for n in names}
    log.info("seed %d: evolution %.3f, random search %.3f, same-size median %.3f (val AO)", seed,
             scored["evolution"]["ao"], scored["random"]["ao"], median)
    return {
        "seed": seed, "supernet": str(supernet),
        "evaluations": {k: w["evaluations"] for k, w in winners.items()},
        "winners": {k: {"arch": scored[k]["arch"], "macs": scored[k]["macs"], "fitness": winners[k]["best"]["fitness"],
                        "val_ao": scored[k]["ao"]} for k in scored},
        "same_size": [{"arch": r["arch"], "macs": r["macs"], "val_ao": r["ao"]} for r in sized_scores],
        "evolution_minus_random": {"ao": scored["evolution"]["ao"] - scored["random"]["ao"],
                                   "per_sequence": {n: evo[n] - scored["random"]["per_sequence_ao"][n] for n in names}},
        "evolution_minus_median": {"ao": scored["evolution"]["ao"] - median,
                                   "per_sequence": {n: evo[n] - median_per_sequence[n] for n in names}},
    }
