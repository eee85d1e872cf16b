"""Does a supernet rank architectures the way training them would?

A ranking study has two halves that are paid for separately:

1. :func:`train_standalone`: a fixed set of architectures, stratified over the MACs range and over
   the backbone choices (:func:`stratified_architectures`), each trained stand-alone with one recipe
   and scored on the whole val split. The scores live in one file (:class:`StandaloneResults`) bound
   to that recipe, so every later supernet is ranked against the same subnets.
2. :func:`rank_supernet`: the same architectures with a supernet's inherited weights (BatchNorm
   recalibrated), tracked once over the val split; Kendall tau and Spearman of the inherited fitness
   against the stand-alone AO with bootstrap 95 % intervals, beside the tau of MACs alone (the
   "bigger is better" predictor), and the fitness noise: how well two disjoint halves of the val
   sequences agree on the subnets' order, for the whole split and for fitness budgets the search could
   pay (K sequences of their first F frames); and the noise ceiling: how reproducibly the fitness and
   the stand-alone AO each order the subnets on as many sequences (:func:`split_half_reliability`),
   the tau that bounds (:func:`noise_ceiling`), and the fitness on one half of the sequences against
   the stand-alone AO on the other (:func:`cross_half_agreement`), free of what the two share on the
   same sequences.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence as Seq
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import kendalltau, spearmanr

from ..config import config_differences, data_read
from ..io import locked, write_json
from ..space.space import Architecture, SearchSpace

log = logging.getLogger(__name__)

STANDALONE_VERSION = 1
CEILING_TARGET = 0.6  # the Kendall tau a NAS reviewer expects of a supernet's ranking (issue 28)
_POSITION = re.compile(r"^(s\d+)b(\d+)$")


def backbone_genes(space: SearchSpace) -> list[str]:
    """Labels of the backbone's choices: the searchable stages' blocks and the output position."""
    stages = {s["name"] for s in space.settings.get("stages", [])}
    return [label for label in space.labels if label.split(".")[0] in stages or space.choice(label).kind == "position"]


def used_genes(space: SearchSpace, arch: Architecture) -> list[str]:
    """The labels that change the network ``arch`` builds: backbone blocks after its output position
    (``out: s3b1`` -> ``s3.1``) are never run."""
    positions = [label for label in space.labels if space.choice(label).kind == "position"]
    last: str | None = None
    for label in positions:
        match = _POSITION.match(str(arch[label]))
        if match:
            last = f"{match.group(1)}.{match.group(2)}"
    stage_blocks = [label for label in backbone_genes(space) if label not in positions]
    if last is None or last not in stage_blocks:
        return list(space.labels)
    unused = set(stage_blocks[stage_blocks.index(last) + 1:])
    return [label for label in space.labels if label not in unused]


def stratified_architectures(space: SearchSpace, macs: Callable[[Architecture], float], count: int, seed: int = 0,
                             samples: int = 2000) -> list[Architecture]:
    """``count`` architectures spread evenly over the MACs range of ``samples`` uniform draws and,
    within each MACs stratum, chosen to differ most from those already chosen in the backbone
    genes they use (greedy max-min Hamming distance): a stand-alone set that covers both the
    sizes and the backbone choices, not a run of near-copies of the median."""
    if count < 2:
        raise ValueError(f"count must be at least 2 (a ranking needs pairs), got {count}")
    rng = np.random.default_rng(seed)
    drawn = list({space.sample(rng): None for _ in range(samples)})
    cost = np.array([macs(a) for a in drawn])
    genes = backbone_genes(space)

    def key(arch: Architecture) -> dict[str, Any]:
        used = set(used_genes(space, arch))
        return {g: arch[g] if g in used else None for g in genes}

    keys = [key(a) for a in drawn]
    edges = np.linspace(cost.min(), cost.max(), count + 1)
    chosen: list[int] = []
    for i in range(count):
        centre = (edges[i] + edges[i + 1]) / 2
        stratum = [j for j in range(len(drawn)) if edges[i] <= cost[j] <= edges[i + 1] and j not in chosen]
        if not stratum:  # an empty stratum (the tails are thin): the unchosen draws nearest its centre
            order = np.argsort(np.abs(cost - centre))
            stratum = [int(j) for j in order if j not in chosen][:8]

        def spread(j: int) -> tuple[int, float]:
            distance = min((sum(keys[j][g] != keys[c][g] for g in genes) for c in chosen), default=len(genes))
            return distance, -abs(cost[j] - centre)

        chosen.append(max(stratum, key=spread))
    return [drawn[j] for j in chosen]


def bootstrap_rank_correlation(x: Seq[float], y: Seq[float], reference: Seq[float] | None = None,
                               resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Kendall tau (tau-b) and Spearman rho of ``x`` against ``y`` with percentile bootstrap 95 %
    intervals over the items (resampled with replacement). With ``reference`` (another predictor of
    ``y``, e.g. MACs), also its tau and the paired interval of ``tau(x) - tau(reference)`` on the
    same resamples."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) != len(y) or len(x) < 3:
        raise ValueError(f"need at least 3 paired values, got {len(x)} and {len(y)}")
    ref = None if reference is None else np.asarray(reference, float)
    rng = np.random.default_rng(seed)
    taus, rhos, diffs = [], [], []
    for _ in range(resamples):
        idx = rng.integers(0, len(x), len(x))
        if np.ptp(y[idx]) == 0 or np.ptp(x[idx]) == 0:
            continue  # all draws tied: no order to correlate
        tau = kendalltau(x[idx], y[idx])[0]
        taus.append(tau)
        rhos.append(spearmanr(x[idx], y[idx])[0])
        if ref is not None and np.ptp(ref[idx]) > 0:
            diffs.append(tau - kendalltau(ref[idx], y[idx])[0])
    result = {"n": len(x), "kendall_tau": float(kendalltau(x, y)[0]), "kendall_ci": _interval(taus),
              "spearman_rho": float(spearmanr(x, y)[0]), "spearman_ci": _interval(rhos)}
    if ref is not None:
        result.update(reference_tau=float(kendalltau(ref, y)[0]), tau_minus_reference=float(
            result["kendall_tau"] - kendalltau(ref, y)[0]), tau_minus_reference_ci=_interval(diffs))
    return result


def split_half_reliability(scores: Seq[Seq[float]], draws: int = 200, seed: int = 0) -> dict[str, Any]:
    """How reproducibly a per-sequence score orders the items, from the score alone: ``scores`` is
    items x sequences. Random halves of the sequences are drawn; ``halves_tau`` is the mean Kendall
    tau between the items' means on the two halves (``halves_range``: the spread of 95 % of the
    draws, not a confidence interval), and ``whole_tau`` that agreement stepped up to all the
    sequences (Spearman-Brown on the Pearson equivalent sin(pi tau / 2), for normal scores): the tau
    expected between two independent measurements of the same items on as many sequences as here."""
    m = _items_by_sequences(scores)
    taus = _half_taus(m, m, draws, seed, both_ways=False)
    result = {"halves_tau": float(np.mean(taus)) if taus else float("nan"), "halves_range": _interval(taus),
              "draws": len(taus), "sequences": m.shape[1], "half": m.shape[1] // 2}
    return {**result, "whole_tau": _tau(_reliability(result, m.shape[1]))}


def cross_half_agreement(predictor: Seq[Seq[float]], truth: Seq[Seq[float]], draws: int = 200,
                         seed: int = 0) -> dict[str, Any]:
    """Kendall tau of ``predictor``'s item means on one random half of the sequences against ``truth``'s
    on the other half (both ways, averaged over the draws; items x sequences each): the ranking of
    quality that carries to unseen sequences, free of what the two share on the same sequences."""
    p, t = _items_by_sequences(predictor), _items_by_sequences(truth)
    if p.shape != t.shape:
        raise ValueError(f"predictor and truth need the same items x sequences, got {p.shape} and {t.shape}")
    taus = _half_taus(p, t, draws, seed, both_ways=True)
    return {"tau": float(np.mean(taus)) if taus else float("nan"), "range": _interval(taus), "draws": len(taus)}


def noise_ceiling(first: dict[str, Any], second: dict[str, Any], sequences: float | None = None) -> float:
    """The Kendall tau two scores of the same items can reach when each orders them perfectly but for
    its own noise (``split_half_reliability`` of each: the classical attenuation bound
    sqrt(reliability x reliability)), measured on ``sequences`` sequences (default: as many as they
    were). Noise the two scores share, such as the same val sequences, is not in it, so a measured tau
    may exceed it. The bound is a point estimate: simulated at 16 items and 48 sequences, 95 % of
    fresh samples of the sequences put it within about +-0.09 of its mean. No interval is given (a
    bootstrap over the sequences is biased for split halves: copies of a sequence agree with
    themselves)."""
    n = first["sequences"] if sequences is None else sequences
    return attenuation_bound(_reliability(first, n), _reliability(second, n))


def attenuation_bound(*reliabilities: float) -> float:
    """The Kendall tau a score can reach against another when their Pearson reliabilities are these:
    sqrt of their product (negative products count as 0), as a tau."""
    return _tau(np.sqrt(np.maximum(np.prod(reliabilities), 0.0)))


def pearson_from_tau(tau: float) -> float:
    """Kendall tau as the Pearson r it implies for bivariate normal scores (Greiner: sin(pi tau / 2))."""
    return float(np.sin(np.pi * tau / 2))


def sequences_for_ceiling(first: dict[str, Any], second: dict[str, Any], target: float = 0.6,
                          limit: int = 100_000) -> int | None:
    """The fewest sequences at which :func:`noise_ceiling` reaches ``target``; None when it does not
    within ``limit`` (a score with no signal)."""
    def reaches(n: int) -> bool:
        return noise_ceiling(first, second, n) >= target

    if not reaches(limit):
        return None
    low, high = 0, limit  # the ceiling grows with the sequences: bisect for the first that reaches
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if reaches(middle) else (middle, high)
    return high


def _items_by_sequences(scores: Seq[Seq[float]]) -> np.ndarray:
    m = np.asarray(scores, float)
    if m.ndim != 2 or m.shape[0] < 3 or m.shape[1] < 2:
        raise ValueError(f"need at least 3 items x 2 sequences of scores, got shape {m.shape}")
    return m


def _half_taus(first: np.ndarray, second: np.ndarray, draws: int, seed: int, both_ways: bool) -> list[float]:
    """Kendall taus of ``first``'s item means on a random half of the sequences against ``second``'s on
    the other half, one per draw (two with ``both_ways``: each half in turn); draws without an order
    (all items tied) are left out."""
    rng = np.random.default_rng(seed)
    half = first.shape[1] // 2
    taus = []
    for _ in range(draws):
        order = rng.permutation(first.shape[1])
        a, b = order[:half], order[half:2 * half]
        for x, y in ((a, b), (b, a))[:2 if both_ways else 1]:
            u, v = first[:, x].mean(1), second[:, y].mean(1)
            if np.ptp(u) > 0 and np.ptp(v) > 0:
                taus.append(float(kendalltau(u, v)[0]))
    return taus


def _reliability(agreement: dict[str, Any], sequences: float) -> float:
    """Pearson reliability of a score on ``sequences`` sequences, from its agreement on random halves
    (Spearman-Brown from the half's length; 0 for no or negative agreement)."""
    if sequences <= 0:
        raise ValueError(f"need a positive number of sequences, got {sequences}")
    r = pearson_from_tau(agreement["halves_tau"])
    if not np.isfinite(r):
        return r
    return spearman_brown(r, sequences / agreement["half"])


def spearman_brown(r: float, factor: float) -> float:
    """The Pearson reliability of a score averaged over ``factor`` times as much data as the one of
    reliability ``r`` (0 for no or negative agreement)."""
    return factor * r / (1 + (factor - 1) * r) if r > 0 else 0.0


def _tau(r: float) -> float:
    return float(2 / np.pi * np.arcsin(np.clip(r, -1.0, 1.0)))


def _interval(values: list[float]) -> list[float]:
    values = [v for v in values if np.isfinite(v)]
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))] if values else [np.nan, np.nan]


class StandaloneResults:
    """``standalone.json``: stand-alone val scores of architectures, bound to the recipe that trained
    them (the experiment config after inheritance). Opening it with another recipe is refused with
    the differences listed, so a ranking never mixes subnets trained two ways."""

    def __init__(self, path: str | Path, recipe: dict[str, Any] | None = None):
        self.path = Path(path)
        if self.path.exists():
            self.recipe = recipe
            self.refresh()
        elif recipe is None:
            raise FileNotFoundError(f"{self.path}: stand-alone results not found")
        else:
            self.recipe, self.records = recipe, []

    def get(self, arch: str) -> dict[str, Any] | None:
        return next((r for r in self.records if r["arch"] == arch), None)

    def refresh(self) -> None:
        """Read the records again (other processes sharing the file may have added some), refusing a file of
        another version or of another recipe than this one's (a process that created it first with another)."""
        if not self.path.exists():
            return
        data = _read_json(self.path)
        if data.get("version") != STANDALONE_VERSION:
            raise ValueError(f"{self.path}: version {data.get('version')!r}, expected {STANDALONE_VERSION}")
        changed = [] if self.recipe is None else config_differences(_read_parts(data["recipe"]),
                                                                    _read_parts(self.recipe))
        if changed:
            raise ValueError(f"{self.path}: holds subnets trained with another recipe ({'; '.join(changed[:6])}); "
                             "use another --out or the same config")
        self.recipe, self.records = data["recipe"], data["subnets"]

    def add(self, record: dict[str, Any]) -> None:
        """Add (or replace) ``record``, merged under a lock with what other processes added meanwhile."""
        with locked(self.path.with_name(f".{self.path.name}.lock"), wait=True):
            self.refresh()
            self.records = [r for r in self.records if r["arch"] != record["arch"]] + [record]
            write_json(self.path, {"version": STANDALONE_VERSION, "recipe": self.recipe, "subnets": self.records})


def rescore_standalone(path: str | Path, config: str | Path, out: str | Path, split: str = "val",
                       shard: tuple[int, int] = (0, 1), progress: bool = True) -> StandaloneResults:
    """Track the checkpoints of a ``standalone.json`` again, without training, on ``config``'s ``split`` (e.g.
    the same generator's val split grown to more sequences) into ``out/standalone.json``, bound to
    ``config``'s recipe (with the runs' training seed). ``config`` must train exactly as the runs' recipe
    did and score the same split: only ``data.root`` (for generated data) and the scored split's
    ``sequences`` may differ; the source recipe's other keys (e.g. the subnet selection) are kept. Each
    record keeps its fields, its scores are replaced, and ``checkpoint`` is the original's absolute path;
    missing checkpoints, and those whose MACs are not their records', are refused, all listed before any
    tracking. Resumable: records already in ``out`` are kept; ``shard`` ``(k, n)`` re-scores only the
    records whose index is k modulo n, so n processes can share ``out``. Tracks with the recipe's
    ``train.threads``, as the trainings scored them (tracking depends on the thread count)."""
    from ..config import load_experiment
    from ..cost import count_tracking_model
    from ..data.sources import load_split
    from ..evaluate import evaluate_checkpoint
    from ..models.build import load_tracking_model
    from ..tracker import TrackerConfig, tracker_settings

    source = StandaloneResults(path)
    target = Path(out) / "standalone.json"
    if target.resolve() == source.path.resolve():
        raise ValueError(f"--out {out} holds the results re-scored: write them to another folder")
    averaged = not isinstance(source.recipe.get("seed"), (int, type(None)))
    if averaged or any("checkpoint" not in r for r in source.records):
        raise ValueError(f"{source.path}: an average of several runs (no checkpoints): re-score each run, then average")
    if source.recipe.get("split", "val") != split:
        raise ValueError(f"{source.path}: scored on {source.recipe.get('split', 'val')!r}, not {split!r}")
    cfg = load_experiment(config, {} if source.recipe.get("seed") is None else {"seed": source.recipe["seed"]})
    recipe = {**source.recipe, **standalone_recipe(cfg), "split": split}   # keeps e.g. the train step's selection

    def trained(r: dict[str, Any]) -> dict[str, Any]:   # the recipe but the root and the scored split's size
        data = r.get("data") or {}
        scored = {k: v for k, v in (data.get("splits") or {}).get(split, {}).items() if k != "sequences"}
        root = None if data.get("generate", True) else data.get("root")   # as data.sources reads it
        return {**{k: v for k, v in r.items() if k not in ("data", "split")},
                "data": {**data_read(data, ("train",)), "root": root, "scored": scored}}

    changed = config_differences(trained(source.recipe), trained(recipe))
    if changed:
        raise ValueError(f"{config}: does not train as {source.path}'s recipe ({'; '.join(changed[:6])})")
    jobs = [(i, r, (source.path.parent / r["checkpoint"]).resolve()) for i, r in sharded(source.records, shard)]
    missing = [str(checkpoint) for _, _, checkpoint in jobs if not checkpoint.exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} checkpoint(s) of {source.path} not found: {', '.join(missing)}")
    results = StandaloneResults(target, recipe)
    jobs = [job for job in jobs if results.get(job[1]["arch"]) is None]
    wrong = []
    for _, record, checkpoint in jobs:   # every checkpoint's MACs before any tracking
        macs = count_tracking_model(load_tracking_model(checkpoint, None)).macs
        if abs(macs - record["macs"]) > 1e-6 * record["macs"]:
            wrong.append(f"{checkpoint} ({macs / 1e6:.1f} M MACs, its record {record['macs'] / 1e6:.1f} M)")
    if wrong:
        raise ValueError(f"{len(wrong)} checkpoint(s) of {source.path} are not their records' architectures: "
                         + ", ".join(wrong))
    sequences = load_split(cfg["data"], split)
    settings = TrackerConfig.from_dict(tracker_settings(cfg))
    for i, record, checkpoint in jobs:
        log.info("re-scoring %d/%d (%.1f M MACs) on %d %s sequences", i + 1, len(source.records), record["macs"] / 1e6,
                 len(sequences), split)
        score = evaluate_checkpoint(checkpoint, sequences, settings, threads=int(cfg["train"]["threads"]),
                                    progress=progress).to_dict()
        results.add({**record, **{k: score[k] for k in ("ao", "sr50", "sr75")}, "checkpoint": str(checkpoint),
                     "rescored_from": str(source.path.resolve()),
                     "per_sequence_ao": {name: seq["ao"] for name, seq in score["per_sequence"].items()}})
    return results


def average_standalone(paths: Seq[str | Path], out: str | Path) -> dict[str, Any]:
    """Average stand-alone runs of the same subnets into ``out/standalone.json``: one ``standalone.json``
    per training seed (:func:`train_standalone` ``train_seed``), the same recipe otherwise, scored on the
    same sequences. Per subnet its AO, SR and per-sequence AO are the runs' means, so :func:`rank_supernet`
    ranks against a ground truth with less run-to-run noise. Returns how the runs agree: Kendall tau of
    the subnets' order between each pair of runs (on the same sequences: the training seed's noise
    alone), the per-subnet spread over the runs beside the subnets' spread, and the tau a predictor of
    each subnet's expected AO could reach against one run and against the mean (:func:`predictor_bound`
    of the runs' and the sequences' reliabilities, the runs' stepped up to their number for the mean)."""
    if len(paths) < 2:
        raise ValueError(f"averaging needs at least 2 stand-alone runs, got {len(paths)}")
    out = Path(out)
    if any(Path(path).resolve() == (out / "standalone.json").resolve() for path in paths):
        raise ValueError(f"--out {out} holds one of the runs averaged: write the mean to another folder")
    runs = [StandaloneResults(path) for path in paths]
    first = runs[0]
    seeds = [_training_seed(run) for run in runs]
    for run, seed in zip(runs[1:], seeds[1:]):
        changed = config_differences(_read_parts({**first.recipe, "seed": None}), _read_parts({**run.recipe, "seed": None}))
        if changed:
            raise ValueError(f"{run.path}: trained with another recipe than {first.path} ({'; '.join(changed[:6])}); "
                             "only the training seed may differ")
        if seeds.count(seed) > 1:
            raise ValueError(f"{run.path}: training seed {seed} is also another run's; average runs of different "
                             "training seeds (train with --train-seed)")
        if {r["arch"] for r in run.records} != {r["arch"] for r in first.records}:
            raise ValueError(f"{run.path}: holds other subnets than {first.path} ({len(run.records)} vs "
                             f"{len(first.records)}); finish both runs' training first")
    names = list(first.records[0]["per_sequence_ao"])
    records = []
    for record in first.records:
        each = [record] + [run.get(record["arch"]) for run in runs[1:]]
        for run, r in zip(runs, each):
            if list(r["per_sequence_ao"]) != names:
                raise ValueError(f"{run.path}: subnet {r['arch']} was scored on other sequences than {first.path}'s")
        records.append({**{k: record[k] for k in ("index", "arch", "macs", "params", "iterations", "batch_size")
                           if k in record},
                        **{k: float(np.mean([r[k] for r in each])) for k in ("ao", "sr50", "sr75")},
                        "per_sequence_ao": {n: float(np.mean([r["per_sequence_ao"][n] for r in each])) for n in names},
                        "runs": [{"seed": seed, "ao": r["ao"], "standalone": str(run.path)}
                                 for seed, run, r in zip(seeds, runs, each)]})
    write_json(out / "standalone.json", {"version": STANDALONE_VERSION, "recipe": {**first.recipe, "seed": seeds},
                                         "subnets": records})
    return _run_agreement(runs, seeds, [r["arch"] for r in records], names)


def _run_agreement(runs: list[StandaloneResults], seeds: list[int], archs: list[str], names: list[str]) -> dict[str, Any]:
    """How the stand-alone runs (trained with ``seeds``) of :func:`average_standalone` agree on the subnets ``archs``."""
    ao = np.array([[run.get(a)["ao"] for a in archs] for run in runs])  # the score rank_supernet ranks against
    pairs = [float(kendalltau(ao[i], ao[j])[0]) for i in range(len(runs)) for j in range(i + 1, len(runs))]
    per_run = [split_half_reliability([[run.get(a)["per_sequence_ao"][n] for n in names] for a in archs])
               for run in runs]
    mean = split_half_reliability([[np.mean([run.get(a)["per_sequence_ao"][n] for run in runs]) for n in names]
                                   for a in archs])
    r_runs = pearson_from_tau(float(np.mean(pairs)))
    r_runs_mean = spearman_brown(r_runs, len(runs))
    r_one = float(np.mean([pearson_from_tau(r["whole_tau"]) for r in per_run]))
    return {"runs": len(runs), "subnets": len(archs), "sequences": len(names),
            "seeds": seeds, "runs_tau": pairs,
            "run_spread": float(np.sqrt(np.mean(np.var(ao, axis=0, ddof=1)))),
            "subnet_spread": float(np.std(ao.mean(0), ddof=1)),
            "sequences_self_tau": {"one_run": [r["whole_tau"] for r in per_run], "mean": mean["whole_tau"]},
            "predictor_bound": {"one_run": predictor_bound(r_runs, r_one),
                                "mean": predictor_bound(r_runs_mean, pearson_from_tau(mean["whole_tau"]))}}


def predictor_bound(same_sequences: float, same_run: float) -> float:
    """The Kendall tau a predictor of each item's expected score can reach against one measurement of
    it, when the measurement's noise has two independent parts: the run's (shared by everything one
    training run scores) and the sequences' (shared by every run scored on them). ``same_sequences``
    is the Pearson agreement of two runs on the same sequences (the sequences' noise counts as
    signal), ``same_run`` that of one run on two sets of as many sequences (the run's counts). With
    additive noises the expected score's share of the variance is their sum minus 1; the bound is its
    square root, as a tau (0 when the share is not positive)."""
    return _tau(np.sqrt(max(same_sequences + same_run - 1, 0.0)))


def _training_seed(results: StandaloneResults) -> int:
    """The seed ``results`` were trained with (a recipe without one trains with 0); ValueError for an
    averaged file."""
    seed = results.recipe.get("seed")
    if seed is None:
        return 0
    if not isinstance(seed, int):
        raise ValueError(f"{results.path}: not one training run (seed {seed!r}); average the runs themselves")
    return seed


def _read_parts(recipe: dict[str, Any]) -> dict[str, Any]:
    """A recipe as far as its stand-alone results depend on it: of the data, only the splits trained on
    and scored, no loader workers (a test split made larger later changes nothing)."""
    return {**recipe, "data": data_read(recipe.get("data") or {}, ("train", recipe.get("split", "val")))}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def standalone_recipe(cfg: dict[str, Any]) -> dict[str, Any]:
    """What decides a stand-alone result, free of where the files lie: the space (with its settings),
    seed, data, training and the tracker settings it is scored with."""
    from ..space import experiment_space
    from ..tracker import tracker_settings

    return {"space": experiment_space(cfg).to_dict(), "seed": cfg.get("seed"), "data": cfg["data"],
            "train": cfg["train"], "tracker": tracker_settings(cfg)}


def train_standalone(config: str | Path, out: str | Path, count: int, *, seed: int = 0, split: str = "val",
                     shard: tuple[int, int] = (0, 1), train_seed: int | None = None,
                     progress: bool = True) -> StandaloneResults:
    """Train ``count`` stratified architectures of ``config``'s space stand-alone (the config's whole
    schedule, from its initialisation) into ``out/subnetNN/`` and score each on ``split``; the scores
    go to ``out/standalone.json`` as each subnet finishes. ``seed`` selects the architectures;
    ``train_seed`` (default: the config's ``seed``) initialises and feeds their training, so the same
    subnets trained with other seeds measure the run-to-run noise (:func:`average_standalone`).
    ``shard`` ``(k, n)`` trains only the subnets whose index is k modulo n, so n processes can share
    ``out``. Re-running continues: finished subnets are kept, an interrupted one resumes from its
    checkpoint."""
    from ..config import load_experiment
    from ..cost import CostTable
    from ..models import build_supernet
    from ..space import experiment_space

    check_shard(shard)
    cfg = load_experiment(config, None if train_seed is None else {"seed": train_seed})
    out = Path(out)
    results = StandaloneResults(out / "standalone.json", standalone_recipe(cfg) | {"split": split, "count": count,
                                                                                  "selection_seed": seed})
    space = experiment_space(cfg)
    table = CostTable(build_supernet(space))
    archs = stratified_architectures(space, table.macs, count, seed)
    for i, arch in sharded(archs, shard):
        if results.get(str(arch)) is None:
            log.info("stand-alone subnet %d/%d (%.1f M MACs)", i + 1, count, table.macs(arch) / 1e6)
        train_and_score(results, config, str(arch), f"subnet{i:02d}", split, progress, train_seed, index=i)
    return results


def check_shard(shard: tuple[int, int]) -> None:
    """ValueError unless ``shard`` ``(k, n)`` has 0 <= k < n."""
    k, n = shard
    if not 0 <= k < n:
        raise ValueError(f"shard {k}/{n}: expected K/N with 0 <= K < N")


def sharded(items: Seq[Any], shard: tuple[int, int]) -> list[tuple[int, Any]]:
    """``(index, item)`` of the items whose index is k modulo n: shard ``(k, n)`` of n processes sharing a study."""
    check_shard(shard)
    k, n = shard
    return list(enumerate(items))[k::n]


def train_and_score(results: StandaloneResults, config: str | Path, arch: str, run: str, split: str = "val",
                    progress: bool = True, seed: int | None = None, **extra: Any) -> dict[str, Any]:
    """``arch``'s stand-alone record: from ``results`` when there, else trained with ``config``'s whole
    schedule (and ``seed``, default the config's) into ``results``' folder / ``run`` (resuming an
    interrupted run), scored on ``split`` and added (with ``extra`` fields)."""
    from .retrain import retrain

    found = results.get(arch)
    if found is not None:
        return found
    report = retrain(config, arch, results.path.parent / run, resume=True, seed=seed, split=split, progress=progress)
    record = {**extra, "arch": arch, **{k: report[k] for k in ("ao", "sr50", "sr75", "macs", "params", "iterations",
                                                                "batch_size")},
              "checkpoint": f"{run}/checkpoint.pt",
              "per_sequence_ao": {name: seq["ao"] for name, seq in report["per_sequence"].items()}}
    results.add(record)
    return record


def parse_budget(text: str) -> tuple[int, int]:
    """``"KxF"`` (K sequences of F frames each) as ``(K, F)``; ValueError naming the text otherwise."""
    try:
        k, f = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"fitness budget {text!r} is not KxF (K sequences of F frames each), e.g. 8x30") from None
    if k < 1 or f < 2:
        raise ValueError(f"fitness budget {text!r}: need K >= 1 sequences of F >= 2 frames")
    return k, f


def rank_supernet(supernet: str | Path, standalone: str | Path, out: str | Path, *, calibration_images: int = 64,
                  budgets: Seq[str] = ("4x60", "8x30", "16x15", "8x60", "16x30", "16x60"), resamples: int = 2000,
                  tracks: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Rank the architectures of a ``standalone.json`` with ``supernet``'s inherited weights and write
    ``out/ranking.json`` and ``out/ranking.png``; returns the report.

    Each subnet is extracted, its BatchNorm recalibrated on ``calibration_images`` training pairs
    (the search's own procedure) and tracked once over the split its stand-alone score used. The
    fitness on the whole split is ranked against the stand-alone AO (and MACs alone, the baseline);
    disjoint halves of the sequences measure how much of the fitness is noise, and so do the fitness
    ``budgets`` the search could pay (``KxF``: K sequences of their first F frames, the search's
    ``val_sequences`` x ``val_frames``): the first K sequences against the next K, and the first K's
    ranking against the stand-alone AO. Random halves of the sequences give each score's own
    reproducibility and the noise ceiling of the tau (``reliability``). The tracker is causal, so
    every budget is scored from the same whole-sequence boxes. Each subnet's tracked boxes are kept in
    ``out/inherited/`` (keyed by the supernet's digest, the calibration, the data, the tracker and the
    thread count), so re-ranking after more stand-alone subnets have finished tracks only the new ones;
    ``tracks`` names another ranking's folder of boxes to read too (never written), so the same supernet
    is ranked against another stand-alone set of the same subnets and sequences
    (:func:`average_standalone`) without tracking again."""
    import hashlib
    import io

    import torch
    from tqdm import tqdm

    from ..data.pairs import calibration_batches
    from ..data.sources import load_split
    from ..evaluate.results import score_tracks
    from ..evaluate.tracking import track_sequences
    from ..io import atomic_write
    from ..models import load_supernet
    from ..search.fitness import FITNESS_FORM, inherited_subnet
    from ..search.runner import file_digest
    from ..tracker import TrackerConfig

    results = StandaloneResults(standalone)
    recipe = results.recipe
    if len(results.records) < 3:
        raise ValueError(f"{standalone}: {len(results.records)} stand-alone subnets; a ranking needs at least 3")
    net = load_supernet(supernet).eval()
    sequences = load_split(recipe["data"], recipe["split"])
    tracker = TrackerConfig.from_dict(recipe["tracker"])
    calibration = calibration_batches(load_split(recipe["data"], "train"), net.template_size, net.search_size,
                                      calibration_images)
    halves = {"a": sequences[0::2], "b": sequences[1::2]}
    parsed = {text: parse_budget(text) for text in budgets}
    pairs = {text: ([s.head(f) for s in sequences[:k]], [s.head(f) for s in sequences[k:2 * k]])
             for text, (k, f) in parsed.items() if 2 * k <= len(sequences)}
    identity = json.dumps([file_digest(supernet), calibration_images, recipe["tracker"], recipe["data"], recipe["split"],
                           torch.get_num_threads(), FITNESS_FORM], sort_keys=True)  # everything the tracked boxes depend on
    cache = Path(out) / "inherited"
    stores = [cache] + ([] if tracks is None else [Path(tracks)])
    rows, per_sequence_fitness = [], []
    for record in tqdm(results.records, desc="inherited", unit="subnet", disable=not progress):
        arch = net.space.decode(record["arch"])
        key = f"{hashlib.sha256(f'{identity}:{arch}'.encode()).hexdigest()[:20]}.npz"
        found = next((store / key for store in stores if (store / key).exists()), None)
        if found is not None:
            with np.load(found) as stored:
                preds = {s.name: stored[s.name] for s in sequences}
        else:
            if tracks is not None:
                log.info("subnet %s is not in %s (another supernet, calibration, data or thread count?): tracking it "
                         "into %s", record["arch"], tracks, cache)
            preds, _ = track_sequences(inherited_subnet(net, arch, calibration), sequences, tracker)
            buffer = io.BytesIO()
            np.savez(buffer, **preds)
            atomic_write(cache / key, buffer.getvalue())

        def fitness(seqs: list) -> float:
            return score_tracks(seqs, {s.name: preds[s.name][:len(s)] for s in seqs}).fitness

        per_sequence_fitness.append([fitness([s]) for s in sequences])
        rows.append({"arch": record["arch"], "macs": record["macs"], "standalone_ao": record["ao"],
                     "fitness": fitness(sequences), "half_a": fitness(halves["a"]), "half_b": fitness(halves["b"]),
                     **{f"first{k}": fitness(a) for k, (a, _) in pairs.items()},
                     **{f"next{k}": fitness(b) for k, (_, b) in pairs.items()}})
    column = {key: [r[key] for r in rows] for key in rows[0] if key != "arch"}
    truth = column["standalone_ao"]
    names = [s.name for s in sequences]
    per_sequence = {"fitness": per_sequence_fitness,
                    "standalone": [[r["per_sequence_ao"][n] for n in names] for r in results.records]}
    reliability = {key: split_half_reliability(scores) for key, scores in per_sequence.items()}
    fit, alone = reliability["fitness"], reliability["standalone"]
    reliability.update(
        ceiling_tau=noise_ceiling(fit, alone), ceiling_target=CEILING_TARGET,
        sequences_for_target=sequences_for_ceiling(fit, alone, CEILING_TARGET),
        cross_halves={**cross_half_agreement(per_sequence["fitness"], per_sequence["standalone"]),
                      "ceiling_tau": noise_ceiling(fit, alone, fit["half"])})
    report = {"supernet": str(supernet), "standalone": str(standalone), "split": recipe["split"],
              "sequences": len(sequences), "calibration_images": calibration_images,
              "recipe_iterations": recipe["train"]["epochs"] * recipe["train"]["iters_per_epoch"],
              "ranking": bootstrap_rank_correlation(column["fitness"], truth, column["macs"], resamples),
              "macs_alone": bootstrap_rank_correlation(column["macs"], truth, resamples=resamples),
              "halves_agreement": bootstrap_rank_correlation(column["half_a"], column["half_b"], resamples=resamples),
              "reliability": reliability,
              "budgets": {k: {"agreement": bootstrap_rank_correlation(column[f"first{k}"], column[f"next{k}"],
                                                                     resamples=resamples),
                              "ranking": bootstrap_rank_correlation(column[f"first{k}"], truth, resamples=resamples)}
                        for k in pairs},
              "subnets": rows}
    out = Path(out)
    write_json(out / "ranking.json", report)
    plot_ranking(rows, report["ranking"], out / "ranking.png")
    return report


RANKING_KEYS = {"supernet": None, "split": None, "sequences": None, "macs_alone": ("kendall_tau",),
                "ranking": ("kendall_tau", "kendall_ci", "tau_minus_reference", "tau_minus_reference_ci"),
                "reliability": ("ceiling_tau", "fitness", "standalone"), "subnets": None}


def read_ranking(path: str | Path) -> dict[str, Any]:
    """A ``ranking.json`` of :func:`rank_supernet`, checked for what :func:`summarize_rankings` reads."""
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable ranking.json ({err})") from None
    if not isinstance(report, dict):
        raise ValueError(f"{path}: not a ranking.json of the rank step (not a JSON object)")
    missing = [key if not inner else f"{key}.{field}" for key, inner in RANKING_KEYS.items()
               for field in (inner or (None,)) if key not in report or (inner and field not in report[key])]
    if missing:
        raise ValueError(f"{path}: not a ranking.json of the rank step (missing: {', '.join(missing)})")
    return report


def summarize_rankings(reports: Seq[dict[str, Any]], target: float = CEILING_TARGET) -> dict[str, Any]:
    """Issue 28's bar over several supernets' rankings (:func:`read_ranking`) of one stand-alone set:
    met when the mean Kendall tau of inherited fitness vs stand-alone AO is at least ``target`` and
    every supernet's paired 95 % interval of tau(fitness) - tau(MACs) lies above 0. ``noisier`` names
    the score that orders the subnets less reproducibly on the whole split (stepped-up self-agreement;
    the fitness's averaged over the supernets), the one that limits the tau when the bar is missed;
    None when either agreement is undefined."""
    if not reports:
        raise ValueError("no rankings to summarize")
    supernets = [r["supernet"] for r in reports]
    if len(set(supernets)) < len(supernets):
        raise ValueError(f"a supernet is ranked twice ({', '.join(sorted({s for s in supernets if supernets.count(s) > 1}))}): "
                         "summarize each supernet's ranking once")
    truth = {(r["split"], r["sequences"], tuple(sorted((row["arch"], row["standalone_ao"]) for row in r["subnets"])))
             for r in reports}
    if len(truth) > 1:
        raise ValueError("the rankings rank different stand-alone sets (subnets, their scores, split or sequence "
                         "count differ); summarize the rankings of one standalone.json")
    rows = [{"supernet": r["supernet"], "kendall_tau": r["ranking"]["kendall_tau"],
             "kendall_ci": r["ranking"]["kendall_ci"], "tau_minus_macs": r["ranking"]["tau_minus_reference"],
             "tau_minus_macs_ci": r["ranking"]["tau_minus_reference_ci"], "ceiling_tau": r["reliability"]["ceiling_tau"],
             "fitness_self_tau": r["reliability"]["fitness"]["whole_tau"]} for r in reports]
    mean_tau = float(np.mean([row["kendall_tau"] for row in rows]))
    above_macs = all(row["tau_minus_macs_ci"][0] > 0 for row in rows)
    fitness_self = float(np.mean([row["fitness_self_tau"] for row in rows]))
    standalone_self = float(reports[0]["reliability"]["standalone"]["whole_tau"])
    noisier = (None if not np.isfinite([fitness_self, standalone_self]).all()
               else "fitness" if fitness_self < standalone_self else "stand-alone AO")
    return {"supernets": rows, "subnets": len(reports[0]["subnets"]), "sequences": reports[0]["sequences"],
            "target": target, "mean_tau": mean_tau, "every_interval_above_macs": above_macs,
            "bar_met": mean_tau >= target and above_macs, "macs_alone_tau": reports[0]["macs_alone"]["kendall_tau"],
            "fitness_self_tau": fitness_self, "standalone_self_tau": standalone_self, "noisier": noisier}


def plot_ranking(rows: list[dict[str, Any]], ranking: dict[str, Any], png: Path) -> None:
    """Inherited fitness against stand-alone AO, coloured by MACs, the two halves' fitness beside it."""
    from ..io import new_figure, save_figure

    macs = np.array([r["macs"] for r in rows]) / 1e6
    fig = new_figure(figsize=(10, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    points = left.scatter([r["fitness"] for r in rows], [r["standalone_ao"] for r in rows], c=macs, cmap="viridis")
    low, high = ranking["kendall_ci"]
    left.set(xlabel="fitness, inherited weights (whole split)", ylabel="AO, trained stand-alone",
             title=f"Kendall tau {ranking['kendall_tau']:.2f} [{low:.2f}, {high:.2f}]")
    right.scatter([r["half_a"] for r in rows], [r["half_b"] for r in rows], c=macs, cmap="viridis")
    right.set(xlabel="fitness, even val sequences", ylabel="fitness, odd val sequences",
              title="fitness noise: disjoint halves")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.colorbar(points, ax=[left, right], label="M MACs")
    save_figure(fig, png)
