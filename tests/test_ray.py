"""Ray backend: a search on Ray workers equals the local one, dead workers' candidates are retried
(capped), worker start-up failures are reported, and tracker tuning with Ray Tune writes a usable
tracker YAML. Skipped when Ray is not installed."""
import os
import sys
from dataclasses import dataclass

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'ray[tune]'); the Ray backend is optional")

import test_search  # noqa: E402
from test_search import MICRO_SEARCH, FakeFitness, _calls, _search, _without_timing, micro, reference  # noqa: E402,F401

from lighttrack_nas.data.sources import load_split  # noqa: E402
from lighttrack_nas.models import load_supernet  # noqa: E402
from lighttrack_nas.search.distributed import RayBackend, start_ray  # noqa: E402
from lighttrack_nas.search.runner import read_records  # noqa: E402
from lighttrack_nas.search.tuning import RANGES, tune_tracker, write_tuning  # noqa: E402
from lighttrack_nas.tracker import TrackerConfig  # noqa: E402
from lighttrack_nas.config import load_experiment  # noqa: E402

for _module in (test_search, sys.modules[__name__]):  # workers cannot import the tests directory
    ray.cloudpickle.register_pickle_by_value(_module)


@dataclass(frozen=True)
class CrashOnce:
    """Scores like FakeFitness, but the first call anywhere kills its worker process."""

    marker: str
    calls: str

    def __call__(self):
        return self.score

    def score(self, arch: str) -> dict:
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return FakeFitness(self.calls).score(arch)
        os._exit(1)


@dataclass(frozen=True)
class AlwaysCrash:
    def __call__(self):
        return lambda arch: os._exit(1)


@dataclass(frozen=True)
class BrokenBuild:
    def __call__(self):
        raise FileNotFoundError("no/such/checkpoint.pt")


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    owns = start_ray(workers=2)
    yield
    if owns:
        ray.shutdown()


def test_ray_search_equals_the_local_search(micro, reference, tmp_path):
    out = tmp_path / "ray"
    result = _search(micro, out, workers=2)
    assert result["best"]["arch"] == reference[0]["best"]["arch"]
    assert _without_timing(read_records(out / "candidates.jsonl")) == \
        _without_timing(read_records(reference[1] / "candidates.jsonl"))
    assert sorted(_calls(out)) == sorted(_calls(reference[1]))


def test_dead_worker_candidates_are_retried(tmp_path):
    archs = [f"arch{i}" for i in range(9)]
    backend = RayBackend(CrashOnce(str(tmp_path / "crashed"), str(tmp_path / "calls")), workers=2,
                         candidates_per_task=2, max_retries=2)
    results = {}
    try:
        backend.score(archs, lambda arch, scores: results.setdefault(arch, []).append(scores))
    finally:
        backend.close()
    assert backend.retries == 1 and (tmp_path / "crashed").exists()
    assert sorted(results) == sorted(archs) and all(len(v) == 1 for v in results.values())
    assert sorted((tmp_path / "calls").read_text().split()) == sorted(archs)  # the crashed call scored nothing
    assert results["arch3"][0] == FakeFitness(str(tmp_path / "other")).score("arch3")


def test_retries_are_capped(tmp_path):
    backend = RayBackend(AlwaysCrash(), workers=1, max_retries=1)
    try:
        with pytest.raises(RuntimeError, match=r"Ray workers died 2 times scoring \['a', 'b'\]"):
            backend.score(["a", "b"], lambda arch, scores: None)
    finally:
        backend.close()


def test_worker_build_failure_is_reported():
    with pytest.raises(RuntimeError, match="a Ray worker could not build its scorer.*no/such/checkpoint.pt"):
        RayBackend(BrokenBuild(), workers=1)


def test_tune_tracker_writes_a_loadable_tracker_yaml(micro, tmp_path):
    config, checkpoint = micro
    cfg = load_experiment(config)
    model = load_supernet(checkpoint).extract(load_supernet(checkpoint).space.sample(0))
    sequences = load_split(cfg["data"], "val")
    result = tune_tracker(model, sequences, TrackerConfig(), samples=2, out=tmp_path, workers=2, seed=1)
    assert len(result.trials) == 2
    assert result.scores["fitness"] == max(t["fitness"] for t in result.trials) >= result.base_scores["fitness"]
    for trial in result.trials:
        for key, (lo, hi) in RANGES.items():
            assert lo <= trial[key] <= hi
    path = write_tuning(result, tmp_path, {"arch": model.arch, "split": "val"})
    loaded = TrackerConfig.from_yaml(path)
    assert loaded.penalty_k == pytest.approx(result.best.penalty_k, rel=1e-5)
    assert loaded.context_amount == TrackerConfig().context_amount
    assert (tmp_path / "trials.csv").read_text().count("\n") == 3
