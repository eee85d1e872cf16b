"""The search driver: budgets, cached and persisted evaluations, resume, finalists and outputs.

Output directory:

- ``candidates.jsonl``: one line per evaluated candidate (arch, MACs, params, predicted and
  measured latency where known, fitness, AO, SR0.5, SR0.75, generation), appended and synced
  as each candidate finishes;
- ``state.json``: the strategy's state after the last finished generation (written atomically);
- ``best.json``, ``pareto.csv``, ``pareto.png``: written when the search ends;
- ``latency_lut.json``: the latency table, when one was built for this search.

Resume: the strategy restarts from ``state.json`` and regenerates the interrupted generation
(same RNG state, hence the same candidates); candidates already in ``candidates.jsonl`` are
taken from there, so nothing evaluated is lost and the result equals an uninterrupted run's.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..cost.latency import BACKENDS as LATENCY_BACKENDS
from ..cost.latency import LatencyTable, backend_settings, network_latency
from ..cost.predictor import LatencyModel, load_latency_predictor
from ..cost.table import CostTable
from ..io import atomic_write, locked, write_json
from ..machine import machine_info
from ..space.space import Architecture, Constraint, SearchSpace
from ..tracker import tracker_settings
from ..config import load_experiment
from .backend import Backend, FitnessSpec, LocalBackend, ProcessBackend, Scorer, Scores
from .evolution import STRATEGIES, EvolutionConfig, Search
from .pareto import plot_pareto, write_pareto_csv
from .settings import Budgets, SearchSettings

log = logging.getLogger(__name__)
Record = dict[str, Any]
STATE_VERSION = 1


class SearchRunner:
    """Runs ``search`` with ``backend`` into ``out``: every candidate is costed, scored once,
    persisted at once; the state is saved after every generation."""

    def __init__(self, strategy: str, space: SearchSpace, config: EvolutionConfig, constraints: list[Constraint],
                 backend: Backend, costs: CostTable, out: str | Path, job: dict[str, Any],
                 latency: LatencyTable | None = None, progress: bool = True):
        self.search: Search = STRATEGIES[strategy](space, self._evaluate, config, constraints)
        self.backend, self.costs, self.latency = backend, costs, latency
        self.out, self.job, self.progress = Path(out), job, progress
        self.records: dict[str, Record] = {}
        self.elapsed = 0.0
        self.done = False

    # ------------------------------------------------------------------ files
    @property
    def state_path(self) -> Path:
        return self.out / "state.json"

    @property
    def log_path(self) -> Path:
        return self.out / "candidates.jsonl"

    def save(self) -> None:
        """Write ``state.json`` atomically."""
        state = {"version": STATE_VERSION, "job": self.job, "search": self.search.state_dict(), "done": self.done,
                 "elapsed_s": self.elapsed}
        write_json(self.state_path, state, indent=1)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :func:`read_state` and every evaluated candidate (those of an
        interrupted generation too)."""
        self.search.load_state_dict(state["search"])
        self.done, self.elapsed = bool(state["done"]), float(state["elapsed_s"])
        self.records = read_records(self.log_path)
        missing = [str(a) for a in self.search.fitness if str(a) not in self.records]
        if missing:
            raise ValueError(f"{self.log_path}: lacks {len(missing)} candidate(s) that {self.state_path} has evaluated")

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, archs: list[Architecture]) -> list[float]:
        todo = {str(a): a for a in archs if str(a) not in self.records}
        if todo:
            with open(self.log_path, "a") as log_file, tqdm(total=len(todo), leave=False, disable=not self.progress,
                                                             desc=f"generation {self.search.generation}",
                                                             unit="cand", dynamic_ncols=True) as bar:
                def on_result(arch: str, scores: Scores) -> None:
                    record = self._record(todo[arch], scores)
                    log_file.write(json.dumps(record) + "\n")
                    log_file.flush()
                    os.fsync(log_file.fileno())
                    bar.update(1)

                self.backend.score(list(todo), on_result)
        lost = [a for a in todo if a not in self.records]
        if lost:
            raise RuntimeError(f"the evaluation backend returned no scores for {len(lost)} candidate(s), "
                               f"e.g. {lost[0]}")
        return [self.records[str(a)]["fitness"] for a in archs]

    def _record(self, arch: Architecture, scores: Scores) -> Record:
        record = {"arch": str(arch), "generation": self.search.generation, "macs": self.costs.macs(arch),
                  "params": self.costs.params(arch),
                  "latency_pred_ms": self.latency.predict(arch) * 1e3 if self.latency else None, "latency_ms": None,
                  **{k: float(v) for k, v in scores.items()}}
        self.records[record["arch"]] = record
        return record

    # ------------------------------------------------------------------ driving
    def run(self, max_generations: int | None = None) -> bool:
        """Run generations until the search ends (or ``max_generations`` in total have run); saves
        after each. Returns whether the search has finished."""
        cfg = self.search.config
        stop = min(cfg.generations, max_generations or cfg.generations)  # None: to the end
        with tqdm(total=cfg.generations, initial=self.search.generation, desc=f"search ({type(self.search).__name__})",
                  unit="gen", disable=not self.progress, dynamic_ncols=True) as bar:
            while not self.search.done and self.search.generation < stop:
                start = time.perf_counter()
                self.search.step()
                self.elapsed += time.perf_counter() - start
                self.done = self.search.done
                self.save()
                bar.update(1)
                bar.set_postfix(best=f"{self.search.best(1)[0][1]:.3f}", evaluated=len(self.search.fitness))
        return self.search.done

    def finalize(self, budgets: Budgets, supernet: torch.nn.Module, finalists: int, threads: int = 1,
                 min_run_time: float = 0.5, extra: dict[str, Any] | None = None,
                 latency_backend: str = "torch") -> dict[str, Any]:
        """Measure the latency of the ``finalists`` best candidates, pick the best one that meets
        every budget as measured, and write ``best.json`` (with ``extra``), ``pareto.csv``,
        ``pareto.png`` and the final ``candidates.jsonl`` (measured latencies filled in)."""
        space = self.search.space
        evaluated = [self.records[str(a)] for a in self.search.fitness]
        top = distinct_fittest(evaluated, finalists)
        for record in tqdm(top, desc="measuring finalists", disable=not self.progress, leave=False):
            if record["latency_ms"] is None:
                record["latency_ms"] = network_latency(supernet.extract(space.decode(record["arch"])), threads,
                                                       min_run_time, latency_backend).ms
        meets = [r for r in top if budgets.latency is None or r["latency_ms"] <= budgets.latency * 1e3]
        best = meets[0] if meets else None
        result = {"strategy": self.job["strategy"], "seed": self.job["seed"], "budgets": budgets.to_dict(),
                  "best": best, "finalists": top, "evaluations": len(evaluated),
                  "generations": self.search.generation, "search_seconds": self.elapsed,
                  "candidates_per_s": len(evaluated) / self.elapsed if self.elapsed else None,
                  "latency": {"device": "cpu", **backend_settings(latency_backend), "threads": threads,
                              "machine": machine_info()},
                  **(extra or {})}
        if best is None:
            result["note"] = (f"none of the {len(top)} finalists met the latency budget when measured; the latency "
                              f"table under-predicts on this machine now: rebuild it or lower --latency-budget")
        atomic_write(self.log_path, "".join(json.dumps(r) + "\n" for r in self.records.values()))
        write_json(self.out / "best.json", result)
        write_pareto_csv(evaluated, self.out / "pareto.csv")
        plot_pareto(evaluated, self.out / "pareto.png", best, budgets.to_dict())
        return result


def distinct_fittest(records: list[Record], count: int) -> list[Record]:
    """The ``count`` fittest records of distinct networks. Architectures that differ only in genes the
    network does not use (e.g. blocks after an early ``out`` position) build the same network: same
    MACs, parameters and fitness; only the first of them is kept, so the finalists are ``count``
    different networks rather than one network measured ``count`` times."""
    top: list[Record] = []
    seen: set[tuple[Any, Any, Any]] = set()
    for record in sorted(records, key=lambda r: -r["fitness"]):
        key = (record["macs"], record["params"], record["fitness"])
        if key not in seen:
            seen.add(key)
            top.append(record)
            if len(top) == count:
                break
    return top


def read_state(path: Path, job: dict[str, Any]) -> dict[str, Any]:
    """A saved ``state.json``, checked to belong to the same ``job`` (strategy, seed, budgets,
    supernet, fitness, latency table)."""
    state = json.loads(path.read_text())
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"{path}: state version {state.get('version')}, expected {STATE_VERSION}")
    changed = {k: (state["job"].get(k), v) for k, v in job.items() if state["job"].get(k) != v}
    if changed:
        raise ValueError(f"{path}: the search was started with other settings; saved vs now: "
                         + "; ".join(f"{k}: {a!r} vs {b!r}" for k, (a, b) in changed.items()))
    return state


def cost_table(net: torch.nn.Module) -> CostTable:
    """The MACs/params table of a supernet's space (structural, so built once per space and process)."""
    key = json.dumps(net.space.to_dict(), sort_keys=True, default=str)
    if key not in _COST_TABLES:
        _COST_TABLES[key] = CostTable(net)
    return _COST_TABLES[key]


_COST_TABLES: dict[str, CostTable] = {}


def read_records(path: Path) -> dict[str, Record]:
    """The candidates of a ``candidates.jsonl``; a last line cut short by a kill is dropped (from
    the file too)."""
    if not path.exists():
        return {}
    lines = path.read_text().splitlines()
    records = {}
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                log.warning("%s: dropping a truncated last line", path)
                atomic_write(path, "".join(json.dumps(r) + "\n" for r in records.values()))
                break
            raise ValueError(f"{path}:{i + 1}: not a JSON record") from None
        records[record["arch"]] = record
    return records


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file (identifies a checkpoint or latency table in the saved state)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_search(config: str | Path, supernet: str | Path, out: str | Path, *, flops_budget: str | None = None,
               params_budget: str | None = None, latency_budget: str | None = None, lut: str | None = None,
               threads: int = 1, workers: int | None = None, ray_address: str | None = None, resume: bool = False,
               strategy: str | None = None, seed: int | None = None, tracker: str | None = None,
               max_generations: int | None = None, factory: Callable[[], Scorer] | None = None,
               progress: bool = True, latency_backend: str = "torch") -> dict[str, Any]:
    """Search the space of a supernet checkpoint under the given budgets; returns ``best.json``'s
    content (``None`` under ``best`` until the search has finished, e.g. with ``max_generations``).

    ``factory`` builds the fitness scorer (default: :class:`FitnessSpec` from the config);
    ``workers`` / ``ray_address`` score on Ray (otherwise Ray is never imported; the config's
    ``search.processes`` > 1 scores in that many local processes).
    ``latency_backend`` is the runtime whose latency the budget limits (torch, onnxruntime,
    onnxruntime-int8): the predictor is built or checked for it and the finalists are measured in it.
    """
    from ..models import load_supernet

    cfg = load_experiment(config)
    settings = SearchSettings.from_config(cfg.get("search"), f"{config}: search")
    budgets = Budgets.parse(**{**settings.budgets, **{k: v for k, v in (
        ("flops", flops_budget), ("params", params_budget), ("latency", latency_budget)) if v is not None}})
    strategy = strategy or settings.strategy
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r} is not one of {sorted(STRATEGIES)}")
    seed = int(cfg.get("seed", 0)) if seed is None else seed
    if latency_backend not in LATENCY_BACKENDS:
        raise ValueError(f"latency backend {latency_backend!r} is not one of {list(LATENCY_BACKENDS)}")
    for name, value in (("--max-generations", max_generations), ("--workers", workers), ("--threads", threads)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    out = Path(out)
    with locked(out / ".lock", what=f"{out} (search)"):  # one search per folder at a time
        if (out / "state.json").exists() and not resume:
            raise ValueError(f"{out / 'state.json'} exists: pass --resume to continue that search, or choose another "
                             "--out")
        net = load_supernet(supernet).eval()
        table, lut = _latency_table(net, budgets, lut, out, threads, settings, seed, progress, latency_backend)
        if factory is None:
            data = dict(cfg["data"])
            if "root" in data:
                data["root"] = str(Path(data["root"]).resolve())  # workers may run in other directories
            factory = FitnessSpec(checkpoint=str(Path(supernet).resolve()), data=data, split=settings.split,
                                  sequences=settings.val_sequences, frames=settings.val_frames,
                                  calibration_images=settings.calibration_images,
                                  calibration_batch=settings.calibration_batch,
                                  tracker=tracker_settings(cfg, tracker),
                                  device=str(cfg.get("device", "auto")), threads=settings.threads)
            factory.prepare_data()
        job = {"strategy": strategy, "seed": seed, "budgets": budgets.to_dict(), "space": net.space.name,
               "supernet": file_digest(supernet), "fitness": factory.identity() if isinstance(factory, FitnessSpec) else repr(factory), "lut": file_digest(lut) if lut else None,
               "latency_backend": latency_backend}
        state = read_state(out / "state.json", job) if (out / "state.json").exists() else None
        costs = cost_table(net)
        constraints = budgets.constraints(costs.macs, costs.params, table.predict if table else None)
        backend = _backend(factory, workers, ray_address, settings)
        try:
            runner = SearchRunner(strategy, net.space, settings.evolution(seed), constraints, backend, costs, out, job,
                                  table, progress)
            if state is not None:
                runner.load_state_dict(state)
                log.info("resumed %s at generation %d (%d candidates evaluated)", out, runner.search.generation,
                         len(runner.records))
            else:
                runner.save()
            try:
                finished = runner.run(max_generations)
            except BaseException:
                if state is None and not runner.log_path.exists():  # failed before evaluating anything
                    runner.state_path.unlink()
                raise
            if not finished:
                return {"strategy": strategy, "seed": seed, "best": None, "generations": runner.search.generation,
                        "evaluations": len(runner.search.fitness), "search_seconds": runner.elapsed}
        finally:
            backend.close()
        return runner.finalize(budgets, net, settings.finalists, threads, settings.latency["min_run_time"],
                               {"config": str(config), "supernet": str(supernet), "lut": lut}, latency_backend)


def _latency_table(net: torch.nn.Module, budgets: Budgets, lut: str | None, out: Path, threads: int,
                   settings: SearchSettings, seed: int, progress: bool, backend: str = "torch"
                   ) -> tuple[LatencyTable | LatencyModel | None, str | None]:
    """The given latency predictor, the one built for this search before, or a new one (with a latency
    budget): a per-op table, or with ``latency.regression_subnets`` N a model fitted on N whole subnets;
    and its path. A predictor made for other threads or another backend is refused."""
    own = out / "latency_lut.json"
    if lut is None and own.exists():
        lut = str(own)
    if lut is not None:
        table = load_latency_predictor(lut).bind(net)
        made = (table.meta["threads"], table.meta.get("backend", "torch"))
        if made != (threads, backend):
            raise ValueError(f"{lut}: made for {made[1]} at {made[0]} thread(s), but this search measures {backend} "
                             f"at --threads {threads}: rebuild it (tools/build_latency_lut.py --backend {backend})")
        return table, lut
    if budgets.latency is None:
        return None, None
    fit = int(settings.latency["regression_subnets"])
    with tqdm(desc="fitting the latency model" if fit else "building the latency table",
              unit="subnet" if fit else "op", disable=not progress, leave=False) as bar:
        if fit:
            table = LatencyModel.build(net, threads, fit, seed, backend, settings.latency["min_run_time"],
                                       progress=lambda i: bar.update(1))
        else:
            table = LatencyTable.build(net, threads, settings.latency["lut_min_run_time"],
                                       int(settings.latency["lut_fit_subnets"]), seed,
                                       progress=lambda name: bar.update(1), backend=backend)
    table.save(own)
    return table, str(own)


def _backend(factory: Callable[[], Scorer], workers: int | None, address: str | None,
             settings: SearchSettings) -> Backend:
    if workers is None and address is None:
        return ProcessBackend(factory, settings.processes) if settings.processes > 1 else LocalBackend(factory)
    from .distributed import RayBackend

    return RayBackend(factory, workers, address, cpus_per_worker=settings.threads, **settings.ray)
