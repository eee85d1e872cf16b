"""Search driver: budgets, config validation, Pareto fronts, outputs, resume (stop between and kill
within generations with a fake fitness; SIGKILL with the real tracker fitness), latency budgets
with a table built on the fly, one-line tool errors."""
import hashlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import yaml

from lighttrack_nas.config import ConfigError
from lighttrack_nas.cost.predictor import load_latency_predictor
from lighttrack_nas.models import build_supernet
from lighttrack_nas.search.pareto import pareto_front
from lighttrack_nas.search.runner import read_records, run_search
from lighttrack_nas.search.settings import Budgets, SearchSettings, parse_count, parse_seconds
from lighttrack_nas.space.space import ConstraintError
from lighttrack_nas.config import load_experiment
from lighttrack_nas.space import experiment_space

from conftest import ROOT

MICRO_SEARCH = {"population": 6, "generations": 3, "topk": 2, "mutants": 2, "crossovers": 2, "calibration_images": 8,
                "calibration_batch": 4, "finalists": 2,
                "latency": {"lut_min_run_time": 0.002, "lut_fit_subnets": 2, "min_run_time": 0.01}}


class SimulatedKill(Exception):
    pass


@dataclass(frozen=True)
class FakeFitness:
    """A cheap deterministic fitness; logs every call to ``calls`` and, to simulate a kill, raises
    once ``fail_after`` calls have been logged (left out of the repr, i.e. of the job's identity)."""

    calls: str
    fail_after: int | None = field(default=None, repr=False)

    def __call__(self):
        return self.score

    def score(self, arch: str) -> dict:
        done = Path(self.calls).read_text().count("\n") if os.path.exists(self.calls) else 0
        if self.fail_after is not None and done >= self.fail_after:
            raise SimulatedKill(arch)
        with open(self.calls, "a") as f:
            f.write(arch + "\n")
        value = int(hashlib.sha256(arch.encode()).hexdigest()[:8], 16) / 16 ** 8
        return {"fitness": value, "ao": value, "sr50": value, "sr75": value / 2}


@pytest.fixture(scope="module")
def micro(micro_config, tmp_path_factory):
    """The micro experiment (conftest) with a search section, and an untrained supernet checkpoint of it."""
    root = tmp_path_factory.mktemp("search")
    config = root / "search.yaml"
    config.write_text(yaml.safe_dump({"extends": str(micro_config), "search": MICRO_SEARCH}))
    torch.manual_seed(0)
    space = experiment_space(load_experiment(config))
    checkpoint = root / "supernet.pt"
    torch.save({"kind": "supernet", "space": space.to_dict(), "model": build_supernet(space).state_dict()}, checkpoint)
    return config, checkpoint


@pytest.fixture(scope="module")
def reference(micro, tmp_path_factory):
    """An uninterrupted evolution with the fake fitness and no budget: (result, output directory)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    return _search(micro, out), out


def _search(micro, out, **kw):
    config, checkpoint = micro
    kw.setdefault("factory", FakeFitness(str(out) + ".calls"))
    return run_search(config, checkpoint, out, progress=False, **kw)


def _calls(out):
    return Path(str(out) + ".calls").read_text().splitlines()


def _without_timing(records):
    return {a: {k: v for k, v in r.items() if k not in ("latency_ms", "seconds")} for a, r in records.items()}


def test_parse_budgets():
    assert parse_count("600M") == 600e6 and parse_count("2.5G") == 2.5e9 and parse_count("800k") == 800e3
    assert parse_count("1500000") == 1.5e6 and parse_count(" 2 M ") == 2e6
    assert parse_seconds("8ms") == pytest.approx(0.008) and parse_seconds("8000us") == pytest.approx(0.008)
    assert parse_seconds("0.008s") == pytest.approx(0.008)
    for bad in ("600X", "M", "-5M", "0", "6 00M"):
        with pytest.raises(ValueError, match="not a positive count like 600M"):
            parse_count(bad)
    for bad in ("8", "8 min", "ms", "0ms"):
        with pytest.raises(ValueError, match="with a unit, like 8ms"):
            parse_seconds(bad)
    # "none" lifts a budget, whatever the config's default
    assert Budgets.parse(flops="145M", params="none", latency="None") == Budgets(flops=145e6)
    assert Budgets.parse(flops="40M", latency="3ms") == Budgets(flops=40e6, latency=0.003)


@pytest.mark.parametrize("section, message", [
    ({"populaton": 4}, r"unknown key\(s\) \['populaton'\]"),
    ({"population": 0}, "population must be an integer >= 1, got 0"),
    ({"val_frames": 1}, "val_frames must be an integer >= 2 or null, got 1"),
    ({"generations": 2.5}, "generations must be an integer >= 1"),
    ({"mutation_prob": 1.5}, r"mutation_prob must be a number in \[0, 1\]"),
    ({"population": 8, "mutants": 6, "crossovers": 6}, r"mutants \+ crossovers \(6 \+ 6\) exceed the population \(8\)"),
    ({"strategy": "greedy"}, "'greedy' is not one of"),
    ({"budgets": {"flops": "12X"}}, "flops budget: '12X' is not a positive count"),
    ({"budgets": {"macs": "1M"}}, r"unknown key\(s\) \['macs'\]"),
    ({"ray": {"candidates_per_task": 0}}, "candidates_per_task must be an integer >= 1"),
    ({"latency": {"min_run_time": -1}}, "min_run_time must be a number > 0"),
    ({"latency": {"regression_subnets": 5}}, "regression_subnets must be 0 .per-op table. or >= 10"),
])
def test_settings_are_validated(section, message):
    with pytest.raises(ConfigError, match=message):
        SearchSettings.from_config(section)


def test_settings_defaults_are_the_published_evolution():
    settings = SearchSettings.from_config({})
    cfg = settings.evolution(seed=0)
    assert (cfg.population, cfg.generations, cfg.topk, cfg.mutants, cfg.crossovers, cfg.mutation_prob) == \
        (48, 20, 10, 24, 24, 0.1)


def test_pareto_front_by_hand():
    costs = [5, 1, 3, 3, 2, 6, 1]
    fitness = [0.9, 0.1, 0.5, 0.7, 0.1, 0.8, 0.2]
    assert pareto_front(costs, fitness) == [6, 3, 0]  # (1, .2) beats (1, .1); (3, .7) beats (3, .5) and (2, .1)


def test_search_outputs_and_budgets(micro, tmp_path):
    out = tmp_path / "run"
    ray_before = "ray" in sys.modules
    result = _search(micro, out, flops_budget="3M", params_budget="40K")
    assert ray_before or "ray" not in sys.modules  # a local search never imports Ray
    records = read_records(out / "candidates.jsonl")
    assert len(records) == result["evaluations"] == len(_calls(out)) == len(set(_calls(out)))
    assert all(r["macs"] <= 3e6 and r["params"] <= 40e3 for r in records.values())
    assert {r["generation"] for r in records.values()} == {0, 1, 2}
    best = max(records.values(), key=lambda r: r["fitness"])
    assert result["best"]["arch"] == best["arch"] and result["best"]["latency_ms"] > 0
    assert json.loads((out / "best.json").read_text())["best"]["arch"] == best["arch"]
    assert len(result["finalists"]) == MICRO_SEARCH["finalists"]
    rows = (out / "pareto.csv").read_text().splitlines()
    assert rows[0].startswith("front,arch,macs") and all(r.startswith("macs,") for r in rows[1:])
    assert any(best["arch"] in r for r in rows[1:])  # the fittest candidate is always on the front
    assert (out / "pareto.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="pass --resume"):
        _search(micro, out, flops_budget="3M")


def test_random_search_uses_the_same_number_of_evaluations(micro, reference, tmp_path):
    rnd = _search(micro, tmp_path / "rnd", strategy="random")
    assert reference[0]["evaluations"] == rnd["evaluations"] == MICRO_SEARCH["population"] * MICRO_SEARCH["generations"]


def test_resume_between_generations_equals_uninterrupted(micro, reference, tmp_path):
    out = tmp_path / "split"
    first = _search(micro, out, max_generations=1)
    assert first["best"] is None and first["generations"] == 1
    assert json.loads((out / "state.json").read_text())["search"]["generation"] == 1
    resumed = _search(micro, out, resume=True)
    assert resumed["best"]["arch"] == reference[0]["best"]["arch"]
    assert _without_timing(read_records(out / "candidates.jsonl")) == \
        _without_timing(read_records(reference[1] / "candidates.jsonl"))
    assert sorted(_calls(out)) == sorted(_calls(reference[1]))  # nothing evaluated twice
    with pytest.raises(ValueError, match="started with other settings.*budgets"):
        _search(micro, out, flops_budget="2M", resume=True)


def test_local_processes_score_like_one_process(micro, reference, tmp_path):
    """search.processes: 2 scores in two spawned processes; the search is the one-process search."""
    config = tmp_path / "processes.yaml"
    config.write_text(yaml.safe_dump({"extends": str(micro[0]), "search": {**MICRO_SEARCH, "processes": 2}}))
    out = tmp_path / "run"
    result = _search((config, micro[1]), out)
    assert (result["best"]["arch"], result["best"]["fitness"]) == (reference[0]["best"]["arch"],
                                                                  reference[0]["best"]["fitness"])
    assert _without_timing(read_records(out / "candidates.jsonl")) == \
        _without_timing(read_records(reference[1] / "candidates.jsonl"))
    assert len(_calls(out)) == len(set(_calls(out))) == reference[0]["evaluations"]


def test_kill_within_a_generation_loses_nothing(micro, reference, tmp_path):
    out = tmp_path / "killed"
    calls = str(out) + ".calls"
    with pytest.raises(SimulatedKill):  # killed in generation 1, after 3 of its candidates
        _search(micro, out, factory=FakeFitness(calls, fail_after=MICRO_SEARCH["population"] + 3))
    assert len(read_records(out / "candidates.jsonl")) == MICRO_SEARCH["population"] + 3
    with open(out / "candidates.jsonl", "a") as f:
        f.write('{"arch": "cut sh')  # a line the kill cut short
    resumed = _search(micro, out, factory=FakeFitness(calls), resume=True)
    assert (resumed["best"]["arch"], resumed["best"]["fitness"]) == (reference[0]["best"]["arch"],
                                                                      reference[0]["best"]["fitness"])
    assert _without_timing(read_records(out / "candidates.jsonl")) == \
        _without_timing(read_records(reference[1] / "candidates.jsonl"))
    assert len(_calls(out)) == len(set(_calls(out))) == reference[0]["evaluations"]


def test_unreachable_budget_names_the_smallest_cost(micro, tmp_path):
    with pytest.raises(ConstraintError, match=r"MACs <= 10K: smallest seen .*smallest achievable about [0-9.]+M"):
        _search(micro, tmp_path / "run", flops_budget="10K")
    assert not (tmp_path / "run" / "state.json").exists()  # nothing to resume: a new budget may be tried


def test_finalists_are_distinct_networks():
    from lighttrack_nas.search.runner import distinct_fittest

    same = {"macs": 100, "params": 10, "fitness": 0.5}  # e.g. differing only after an early out position
    records = [{"arch": "a", **same}, {"arch": "b", **same}, {"arch": "c", "macs": 90, "params": 9, "fitness": 0.4},
               {"arch": "d", "macs": 80, "params": 8, "fitness": 0.45}]
    assert [r["arch"] for r in distinct_fittest(records, 2)] == ["a", "d"]
    assert [r["arch"] for r in distinct_fittest(records, 5)] == ["a", "d", "c"]


def test_latency_budget_builds_a_table_and_measures_finalists(micro, tmp_path):
    out = tmp_path / "lat"
    result = _search(micro, out, latency_budget="1s")
    assert (out / "latency_lut.json").exists() and result["lut"] == str(out / "latency_lut.json")
    records = read_records(out / "candidates.jsonl")
    assert all(r["latency_pred_ms"] <= 1000 for r in records.values())
    measured = [r for r in records.values() if r["latency_ms"] is not None]
    assert len(measured) == MICRO_SEARCH["finalists"] and result["best"]["latency_ms"] <= 1000
    assert "latency" in (out / "pareto.csv").read_text()
    with pytest.raises(ValueError, match="made for torch at 1 thread"):
        _search(micro, tmp_path / "other", lut=str(out / "latency_lut.json"), threads=2)
    with pytest.raises(ValueError, match="this search measures onnxruntime-int8"):
        _search(micro, tmp_path / "other", lut=str(out / "latency_lut.json"), latency_backend="onnxruntime-int8")


def test_search_targets_int8_latency_with_a_fitted_model(micro, tmp_path):
    """--backend onnxruntime-int8: the predictor must be one fitted for int8, and the finalists are
    measured as int8 ONNX Runtime graphs; a config's regression_subnets fits the model itself."""
    from lighttrack_nas.cost.latency import backend_settings, random_architectures
    from lighttrack_nas.cost.predictor import LatencyModel

    config, checkpoint = micro
    net = build_supernet(experiment_space(load_experiment(config)))
    archs = random_architectures(net, 12, 0)
    times = [1e-3 * (1 + i % 3) for i in range(12)]
    LatencyModel.fit(net, archs, times, {"backend": "onnxruntime-int8", "threads": 1}).save(tmp_path / "old.json")
    with pytest.raises(ValueError, match=r"old.json: made for onnxruntime-int8 graphs keeping nothing float, but "
                                         r"that backend now keeps \['Output'\] float: rebuild it"):   # all-int8 graphs
        _search(micro, tmp_path / "old", latency_budget="1s", lut=str(tmp_path / "old.json"),
                latency_backend="onnxruntime-int8")
    model = LatencyModel.fit(net, archs, times, {**backend_settings("onnxruntime-int8"), "threads": 1})
    model.save(tmp_path / "int8.json")
    out = tmp_path / "int8"
    result = _search(micro, out, latency_budget="1s", lut=str(tmp_path / "int8.json"),
                     latency_backend="onnxruntime-int8")
    assert result["latency"]["backend"] == "onnxruntime-int8" and 0 < result["best"]["latency_ms"] <= 1000
    assert result["latency"]["keep_float"] == ["Output"]   # what the measured int8 graphs kept float
    fitted = tmp_path / "fitted.yaml"
    fitted.write_text(yaml.safe_dump({"extends": str(config), "search": {
        **MICRO_SEARCH, "generations": 1, "latency": {**MICRO_SEARCH["latency"], "regression_subnets": 10}}}))
    result = run_search(fitted, checkpoint, tmp_path / "fit", latency_budget="1s", progress=False,
                        factory=FakeFitness(str(tmp_path / "fit.calls")))
    assert isinstance(load_latency_predictor(result["lut"]), LatencyModel)
    assert result["best"]["latency_pred_ms"] is not None


def _tool(micro, out, *extra):
    return [sys.executable, str(ROOT / "tools" / "search.py"), "--config", str(micro[0]), "--supernet", str(micro[1]),
            "--out", str(out), "--no-progress", *extra]


def test_tool_errors_are_one_line(micro, tmp_path):
    run = subprocess.run(_tool(micro, tmp_path / "run", "--flops-budget", "12X"), capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == \
        "error: flops budget: '12X' is not a positive count like 600M, 2.5G, 800K or 1500000"


def test_real_fitness_resumes_after_sigkill(micro, tmp_path):
    """The real tracker fitness on the micro supernet: a search process is SIGKILLed within a
    generation, then the search resumes to the same candidates and fitness as an uninterrupted run."""
    config = tmp_path / "small.yaml"  # 3 candidates x 2 generations
    config.write_text(yaml.safe_dump({"extends": str(micro[0]), "search": {"population": 3, "generations": 2,
                                                                           "mutants": 1, "crossovers": 1}}))
    checkpoint = micro[1]
    reference = run_search(config, checkpoint, tmp_path / "ref", progress=False)
    out = tmp_path / "killed"
    # a forked child shares this process's cost table, so it starts searching at once
    proc = multiprocessing.get_context("fork").Process(target=run_search, args=(config, checkpoint, out),
                                                       kwargs={"progress": False})
    proc.start()
    log = out / "candidates.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.is_alive():
        if log.exists() and log.read_text().count("\n") >= 3 + 1:  # generation 0 and part of generation 1
            break
        time.sleep(0.01)
    assert proc.is_alive(), "the search finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    killed_at = len(read_records(log))
    assert not (out / "best.json").exists() and 3 + 1 <= killed_at < reference["evaluations"] == 6
    resumed = run_search(config, checkpoint, out, resume=True, progress=False)
    assert resumed["best"]["arch"] == reference["best"]["arch"] and resumed["evaluations"] == reference["evaluations"]
    ref_records, got_records = (read_records(d / "candidates.jsonl") for d in (tmp_path / "ref", out))
    assert ref_records.keys() == got_records.keys()
    for arch, record in ref_records.items():
        assert 0.0 <= record["ao"] <= 1.0 and record["fitness"] == pytest.approx((record["ao"] + record["sr50"]) / 2)
        assert got_records[arch]["fitness"] == pytest.approx(record["fitness"], abs=1e-9)


def test_bench_search_compares_strategies_at_equal_evaluations(micro, tmp_path):
    config = tmp_path / "small.yaml"  # 3 candidates x 2 generations, real tracker fitness
    config.write_text(yaml.safe_dump({"extends": str(micro[0]), "search": {"population": 3, "generations": 2,
                                                                           "mutants": 1, "crossovers": 1}}))
    out = tmp_path / "bench"
    run = subprocess.run([sys.executable, "benchmarks/search.py", "--config", str(config), "--supernet", str(micro[1]),
                          "--out", str(out), "--seeds", "0", "--no-progress"],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr
    report = json.loads((out / "bench_search.json").read_text())
    assert [r["strategy"] for r in report["runs"]] == ["evolution", "random"]
    for r in report["runs"]:
        fitness = [c["fitness"] for c in read_records(Path(r["folder"]) / "candidates.jsonl").values()]
        assert r["evaluations"] == len(fitness) == 6 and r["best_fitness"] == pytest.approx(max(fitness))
        assert r["curve"] == sorted(r["curve"]) and len(r["curve"]) == 6
    assert "| evolution | 1 | 6 |" in (out / "bench_search.md").read_text()
    assert (out / "best_so_far.png").stat().st_size > 5_000


def test_fitness_identity_keys_only_what_decides_the_scores():
    from lighttrack_nas.search.backend import FitnessSpec

    data = {"root": "/d", "workers": 2, "splits": {"train": {"sequences": 3}, "val": {"sequences": 4},
                                                   "test": {"sequences": 16}}}
    base = FitnessSpec("ckpt", data, split="val", sequences=4)
    other_test = FitnessSpec("ckpt", {**data, "workers": 0, "splits": {**data["splits"], "test": {"sequences": 48}}},
                             split="val", sequences=4)
    assert base.identity() == other_test.identity() and "frames" not in base.identity()
    assert FitnessSpec("ckpt", data, split="val", sequences=4, frames=30).identity() != base.identity()
    assert FitnessSpec("ckpt", {**data, "splits": {**data["splits"], "val": {"sequences": 5}}}, split="val",
                       sequences=4).identity() != base.identity()
