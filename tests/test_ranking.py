"""The ranking study (benchmarks/ranking.py) and the search controls (benchmarks/controls.py): stratified
selection, bootstrap rank correlations,
the recipe-bound stand-alone file, and both steps end to end on the micro experiment."""
import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from scipy.stats import kendalltau

from lighttrack_nas.cost import CostTable
from lighttrack_nas.models import build_supernet
from lighttrack_nas.train import SupernetTrainer
from lighttrack_nas.config import load_experiment
from lighttrack_nas.space import experiment_space
from lighttrack_nas.evaluate import paired_bootstrap
from lighttrack_nas.workflows.controls import same_size_architectures
from lighttrack_nas.workflows.ranking import (StandaloneResults, average_standalone, backbone_genes,
                                              bootstrap_rank_correlation, predictor_bound,
                                              cross_half_agreement, noise_ceiling, sequences_for_ceiling,
                                              split_half_reliability, stratified_architectures, summarize_rankings,
                                              used_genes)

from conftest import ROOT

TOOL = ROOT / "benchmarks" / "ranking.py"


def test_used_genes_drop_blocks_after_the_output(tiny_space):
    arch = tiny_space.sample(0).replace({"out": "s3b1"})
    used = used_genes(tiny_space, arch)
    assert "s3.1" in used and "s3.0" in used and "s2.3" in used
    assert not {"s3.2", "s3.3", "s4.0", "s4.3"} & set(used)
    assert {"cls.0", "reg_w", "out"} <= set(used)
    assert set(backbone_genes(tiny_space)) == {l for l in tiny_space.labels if l[:2] in ("s1", "s2", "s3", "s4")} | {"out"}


def test_stratified_selection_spans_the_macs_range_and_the_backbone(tiny_space):
    table = CostTable(build_supernet(tiny_space))
    archs = stratified_architectures(tiny_space, table.macs, 8, seed=1, samples=400)
    rng = np.random.default_rng(1)
    draws = sorted(table.macs(tiny_space.sample(rng)) for _ in range(400))
    macs = [table.macs(a) for a in archs]
    assert len(set(map(str, archs))) == 8
    assert max(macs) - min(macs) > 0.7 * (draws[-1] - draws[0])  # quantiles of uniform draws would cluster
    assert len({a["out"] for a in archs}) >= 4
    assert archs == stratified_architectures(tiny_space, table.macs, 8, seed=1, samples=400)  # seeded
    with pytest.raises(ValueError, match="at least 2"):
        stratified_architectures(tiny_space, table.macs, 1)


def test_bootstrap_rank_correlation():
    truth = np.arange(12.0)
    perfect = bootstrap_rank_correlation(truth * 2, truth, reference=truth[::-1], resamples=200)
    assert perfect["kendall_tau"] == pytest.approx(1.0) and perfect["kendall_ci"][0] == pytest.approx(1.0)
    assert perfect["reference_tau"] == pytest.approx(-1.0)
    assert perfect["tau_minus_reference_ci"][0] == pytest.approx(2.0)
    noise = bootstrap_rank_correlation(np.random.default_rng(0).normal(size=12), truth, resamples=300)
    low, high = noise["kendall_ci"]
    assert low < noise["kendall_tau"] < high and high - low > 0.3
    with pytest.raises(ValueError, match="at least 3"):
        bootstrap_rank_correlation([1, 2], [1, 2])


def test_split_half_reliability_and_noise_ceiling():
    rng = np.random.default_rng(0)
    items = np.linspace(0, 1, 16)[:, None]
    clean = split_half_reliability(items + 0.001 * rng.normal(size=(16, 48)))
    assert clean["halves_tau"] > 0.95 and clean["whole_tau"] > clean["halves_tau"] - 1e-9
    pure = split_half_reliability(rng.normal(size=(16, 48)))
    assert abs(pure["halves_tau"]) < 0.2 and pure["whole_tau"] < 0.25
    noisy = split_half_reliability(items + 0.6 * rng.normal(size=(16, 48)))
    assert 0.2 < noisy["halves_tau"] < noisy["whole_tau"] < clean["halves_tau"]  # more sequences, more agreement
    # stepped up, it predicts the agreement of two independent measurements on as many sequences
    predicted, measured = [], []
    for trial in range(30):
        scores = 0.3 * rng.normal(size=(16, 1)) + rng.normal(size=(16, 96))
        predicted.append(split_half_reliability(scores[:, :48], draws=40, seed=trial)["whole_tau"])
        measured.append(kendalltau(scores[:, :48].mean(1), scores[:, 48:].mean(1))[0])
    assert np.mean(predicted) == pytest.approx(np.mean(measured), abs=0.06)
    # the ceiling is bounded by the noisier score and reaches 1 only when both are noise-free
    assert noise_ceiling(noisy, pure) < noise_ceiling(noisy, clean) < noise_ceiling(clean, clean) <= 1
    assert noise_ceiling(clean, clean) > 0.95
    assert noise_ceiling(noisy, noisy, 192) > noise_ceiling(noisy, noisy)  # more sequences, higher ceiling
    needed = sequences_for_ceiling(noisy, pure, target=0.6)
    assert needed is not None and needed > 48 and noise_ceiling(noisy, pure, needed) >= 0.6
    assert noise_ceiling(noisy, pure, needed - 1) < 0.6
    assert sequences_for_ceiling(noisy, clean, target=0.3) < 48  # already reached: fewer would do
    assert sequences_for_ceiling(noisy, {**pure, "halves_tau": -0.1}) is None  # no signal: never
    # an odd count steps up from the half actually drawn (23 of 47), not from half of 47
    odd = split_half_reliability(items + 0.6 * rng.normal(size=(16, 47)))
    assert odd["half"] == 23 and odd["whole_tau"] == pytest.approx(noise_ceiling(odd, odd))
    with pytest.raises(ValueError, match="positive number of sequences"):
        noise_ceiling(noisy, noisy, 0)
    # a predictor that shares only the sequences' noise with the truth agrees with it on the same
    # sequences, not across halves; one that shares the items' quality agrees either way
    quality, noise = rng.normal(size=(16, 1)), rng.normal(size=(16, 48))
    echo = noise + 0.01 * rng.normal(size=(16, 48))
    assert kendalltau(echo.mean(1), noise.mean(1))[0] > 0.9 and abs(cross_half_agreement(echo, noise)["tau"]) < 0.2
    assert cross_half_agreement(quality + 0.5 * noise, quality + 0.5 * rng.normal(size=(16, 48)))["tau"] > 0.6
    with pytest.raises(ValueError, match="same items x sequences"):
        cross_half_agreement(np.ones((4, 6)), np.ones((4, 5)))
    with pytest.raises(ValueError, match="3 items x 2 sequences"):
        cross_half_agreement(np.ones(6), np.ones(6))
    with pytest.raises(ValueError, match="3 items x 2 sequences"):
        split_half_reliability(np.ones((2, 10)))


def test_standalone_results_are_bound_to_their_recipe(tmp_path):
    path = tmp_path / "standalone.json"
    results = StandaloneResults(path, {"train": {"epochs": 6}})
    results.add({"arch": "a", "ao": 0.5})
    results.add({"arch": "a", "ao": 0.6})
    assert StandaloneResults(path).get("a")["ao"] == 0.6 and len(StandaloneResults(path).records) == 1
    with pytest.raises(ValueError, match=r"another recipe \(train.epochs: saved 6, now 7\)"):
        StandaloneResults(path, {"train": {"epochs": 7}})
    with pytest.raises(FileNotFoundError, match="not found"):
        StandaloneResults(tmp_path / "missing.json")
    scored = {"split": "val", "data": {"workers": 2, "splits": {"train": {"seed": 1}, "val": {"seed": 2},
                                                                "test": {"sequences": 16}}}}
    kept = StandaloneResults(tmp_path / "scored.json", scored)
    kept.add({"arch": "a", "ao": 0.5})
    later = {**scored, "data": {"workers": 0, "splits": {**scored["data"]["splits"], "test": {"sequences": 48}}}}
    assert StandaloneResults(tmp_path / "scored.json", later).get("a")  # a split never used may change
    with pytest.raises(ValueError, match=r"data.splits.val.seed: saved 2, now 3"):
        StandaloneResults(tmp_path / "scored.json", {**scored, "data": {**scored["data"], "splits": {
            **scored["data"]["splits"], "val": {"seed": 3}}}})
    first, second = StandaloneResults(path), StandaloneResults(path)  # two processes adding to one file
    first.add({"arch": "b", "ao": 0.4})
    second.add({"arch": "c", "ao": 0.3})
    assert sorted(r["arch"] for r in StandaloneResults(path).records) == ["a", "b", "c"]
    first.refresh()
    assert first.get("c")["ao"] == 0.3  # what the other process added
    # two processes opening a fresh file with different recipes: the later one is refused on its next read
    fresh = tmp_path / "fresh.json"
    six, seven = StandaloneResults(fresh, {"train": {"epochs": 6}}), StandaloneResults(fresh, {"train": {"epochs": 7}})
    six.add({"arch": "a", "ao": 0.5})
    with pytest.raises(ValueError, match=r"another recipe \(train.epochs: saved 6, now 7\)"):
        seven.add({"arch": "b", "ao": 0.4})
    assert [r["arch"] for r in StandaloneResults(fresh).records] == ["a"]


def _run(path, seed: int | None, offsets, sequences=("s0", "s1", "s2", "s3"), epochs: int = 6) -> str:
    """A standalone.json of five subnets trained with ``seed``: subnet i scores 0.1 i + offsets[i] + a
    per-sequence pattern."""
    results = StandaloneResults(path, {"seed": seed, "train": {"epochs": epochs}, "data": {}, "split": "val"})
    for i, offset in enumerate(offsets):
        per = {name: 0.1 * i + offset + 0.01 * k for k, name in enumerate(sequences)}
        results.add({"index": i, "arch": f"a{i}", "ao": float(np.mean(list(per.values()))), "sr50": 0.5, "sr75": 0.2,
                     "macs": 1e6 * (i + 1), "params": 10, "iterations": 600, "batch_size": 32, "per_sequence_ao": per})
    return path


def test_average_standalone_means_the_runs_and_refuses_other_recipes(tmp_path):
    one = _run(tmp_path / "one.json", 0, [0, 0, 0, 0, 0])
    two = _run(tmp_path / "two.json", 1, [0.02, 0, 0.04, 0, 0.2])  # the same order: nothing overtakes
    agreement = average_standalone([one, two], tmp_path / "mean")
    mean = StandaloneResults(tmp_path / "mean" / "standalone.json")
    assert mean.recipe["seed"] == [0, 1] and mean.recipe["train"] == {"epochs": 6}
    assert mean.get("a2")["ao"] == pytest.approx(0.2 + 0.02 + 0.015) and mean.get("a2")["macs"] == 3e6
    assert mean.get("a4")["per_sequence_ao"]["s3"] == pytest.approx(0.4 + 0.1 + 0.03)
    assert [r["seed"] for r in mean.get("a0")["runs"]] == [0, 1] and mean.get("a0")["runs"][1]["ao"] == pytest.approx(0.035)
    assert agreement["runs_tau"] == [pytest.approx(1.0)] and agreement["runs"] == 2 and agreement["sequences"] == 4
    assert agreement["run_spread"] == pytest.approx(np.sqrt(np.mean([0.02 ** 2, 0, 0.04 ** 2, 0, 0.2 ** 2]) / 2))
    assert set(agreement["predictor_bound"]) == {"one_run", "mean"}
    swapped = _run(tmp_path / "swapped.json", 2, [0.35, 0, 0, 0, 0])  # subnet 0 overtakes 1, 2 and 3
    assert average_standalone([one, swapped], tmp_path / "m2")["runs_tau"] == [pytest.approx(0.4)]

    with pytest.raises(ValueError, match="at least 2"):
        average_standalone([one], tmp_path / "bad")
    with pytest.raises(ValueError, match="training seed 0 is also another run's"):
        average_standalone([one, _run(tmp_path / "same.json", 0, [0] * 5)], tmp_path / "bad")
    with pytest.raises(ValueError, match=r"another recipe than .*one.json \(train.epochs: saved 6, now 7\)"):
        average_standalone([one, _run(tmp_path / "epochs.json", 3, [0] * 5, epochs=7)], tmp_path / "bad")
    with pytest.raises(ValueError, match="holds other subnets"):
        average_standalone([one, _run(tmp_path / "four.json", 4, [0] * 4)], tmp_path / "bad")
    with pytest.raises(ValueError, match="subnet a0 was scored on other sequences"):
        average_standalone([one, _run(tmp_path / "seqs.json", 5, [0] * 5, sequences=("s0", "s1", "s2", "x"))],
                           tmp_path / "bad")
    with pytest.raises(ValueError, match=r"not one training run \(seed \[0, 1\]\)"):
        average_standalone([tmp_path / "mean" / "standalone.json", swapped], tmp_path / "bad")
    inside = _run(tmp_path / "inside" / "standalone.json", 6, [0] * 5)
    with pytest.raises(ValueError, match="holds one of the runs averaged"):
        average_standalone([one, inside], tmp_path / "inside")
    assert not (tmp_path / "bad").exists()
    unseeded = _run(tmp_path / "unseeded.json", None, [0] * 5)  # a recipe without a seed trains with 0
    with pytest.raises(ValueError, match="training seed 0 is also another run's"):
        average_standalone([one, unseeded], tmp_path / "bad")


def test_predictor_bound_recovers_the_expected_score_share(tmp_path):
    """Simulated stand-alone runs with known variances: expected AO T (var 1), run noise R (var 1, one draw
    per subnet and run) and sequence noise (var 1 on the mean of the sequences, shared by the runs).
    Against one run a perfect predictor of T has r = sqrt(1/3); against the mean of two, sqrt(1/2.5)."""
    rng = np.random.default_rng(0)
    subnets, sequences = 400, 40
    expected = rng.normal(size=subnets)
    shared = rng.normal(scale=np.sqrt(sequences), size=(subnets, sequences))  # the sequences' noise, both runs
    paths = []
    for seed in (0, 1):
        run = StandaloneResults(tmp_path / f"run{seed}.json", {"seed": seed, "data": {}, "split": "val"})
        scores = expected[:, None] + rng.normal(size=(subnets, 1)) + shared
        for i in range(subnets):
            run.records.append({"arch": f"a{i}", "ao": float(scores[i].mean()), "sr50": 0, "sr75": 0,
                                "per_sequence_ao": {f"s{k}": float(v) for k, v in enumerate(scores[i])}})
        run.add(run.records.pop())
        paths.append(run.path)
    bound = average_standalone(paths, tmp_path / "mean")["predictor_bound"]
    tau = lambda share: 2 / np.pi * np.arcsin(np.sqrt(share))
    assert bound["one_run"] == pytest.approx(tau(1 / 3), abs=0.04)  # the product of the two reliabilities: 0.46
    assert bound["mean"] == pytest.approx(tau(1 / 2.5), abs=0.04)
    assert predictor_bound(0.5, 0.4) == 0.0 and predictor_bound(1.0, 1.0) == pytest.approx(1.0)


def test_train_then_rank_end_to_end(micro_config, tmp_path):
    config = tmp_path / "ranking.yaml"
    config.write_text(yaml.safe_dump({"extends": str(micro_config), "train": {
        "epochs": 1, "iters_per_epoch": 2, "freeze_backbone_epochs": 0, "threads": 1}, "data": {"splits": {
            "val": {"sequences": 4, "frames": 6, "size": [96, 64], "seed": 2}}}}))
    out = tmp_path / "ranking"
    run = lambda *args: subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True)
    for shard in ("1/2", "0/2"):  # two processes' shares of one study: subnet 1, then 0 and 2
        done = run("train", "--config", config, "--out", out, "--subnets", 3, "--shard", shard)
        assert done.returncode == 0, done.stderr
        if shard == "1/2":
            assert [r["index"] for r in json.loads((out / "standalone.json").read_text())["subnets"]] == [1]
    records = json.loads((out / "standalone.json").read_text())["subnets"]
    assert len(records) == 3 and all(r["iterations"] == 2 and 0 <= r["ao"] <= 1 for r in records)
    assert len(records[0]["per_sequence_ao"]) == 4
    again = run("train", "--config", config, "--out", out, "--subnets", 3)  # nothing left to train
    assert again.returncode == 0 and "stand-alone subnet" not in again.stderr
    assert "argument --shard: shard 2/2: expected K/N with 0 <= K < N" in run(
        "train", "--config", config, "--out", out, "--subnets", 3, "--shard", "2/2").stderr
    changed = run("train", "--config", config, "--out", out, "--subnets", 4)
    assert changed.returncode != 0 and "another recipe (count: saved 3, now 4)" in changed.stderr

    supernet = tmp_path / "supernet"
    SupernetTrainer(load_experiment(config), supernet, max_iters=2, progress=False).train()
    ranked = run("rank", "--standalone", out / "standalone.json", "--supernet", supernet / "checkpoint.pt",
                 "--out", tmp_path / "rank", "--calibration-images", 4, "--budgets", "1x6", "2x3", "3x6", "--resamples", 50)
    assert ranked.returncode == 0, ranked.stderr
    report = json.loads((tmp_path / "rank" / "ranking.json").read_text())
    assert report["ranking"]["n"] == 3 and set(report["budgets"]) == {"1x6", "2x3"}  # 2 x 3 > 4 sequences
    assert -1 <= report["ranking"]["kendall_tau"] <= 1 and "reference_tau" in report["ranking"]
    rel = report["reliability"]
    assert set(rel) == {"fitness", "standalone", "ceiling_tau", "ceiling_target", "sequences_for_target",
                        "cross_halves"} and rel["ceiling_tau"] <= 1
    assert "noise ceiling" in ranked.stdout and "per_sequence_fitness" not in report["subnets"][0]
    assert (tmp_path / "rank" / "ranking.png").stat().st_size > 0
    assert "Kendall tau" in ranked.stdout and "MACs alone" in ranked.stdout
    assert len(list((tmp_path / "rank" / "inherited").glob("*.npz"))) == 3  # tracked boxes kept per subnet
    again = run("rank", "--standalone", out / "standalone.json", "--supernet", supernet / "checkpoint.pt",
                "--out", tmp_path / "rank", "--calibration-images", 4, "--budgets", "1x6", "2x3", "3x6", "--resamples", 50)
    assert again.returncode == 0 and json.loads((tmp_path / "rank" / "ranking.json").read_text()) == report
    space = experiment_space(load_experiment(config))
    assert {space.decode(r["arch"]) for r in report["subnets"]} == {space.decode(r["arch"]) for r in records}

    reseeded = run("train", "--config", config, "--out", tmp_path / "seed1", "--subnets", 3, "--train-seed", 1)
    assert reseeded.returncode == 0, reseeded.stderr
    averaged = run("average", "--standalone", out / "standalone.json", tmp_path / "seed1" / "standalone.json",
                   "--out", tmp_path / "mean")
    assert averaged.returncode == 0, averaged.stderr
    assert "2 runs (training seeds [3, 1]) of 3 subnets on 4 sequences" in averaged.stdout
    mean = {r["arch"]: r for r in json.loads((tmp_path / "mean" / "standalone.json").read_text())["subnets"]}
    second = {r["arch"]: r for r in json.loads((tmp_path / "seed1" / "standalone.json").read_text())["subnets"]}
    assert any(second[r["arch"]]["ao"] != r["ao"] for r in records)  # another seed trains otherwise
    assert all(mean[r["arch"]]["ao"] == pytest.approx((r["ao"] + second[r["arch"]]["ao"]) / 2) for r in records)
    assert json.loads((tmp_path / "mean" / "agreement.json").read_text())["runs"] == 2
    against_mean = run("rank", "--standalone", tmp_path / "mean" / "standalone.json", "--supernet",
                       supernet / "checkpoint.pt", "--out", tmp_path / "rank_mean", "--tracks", tmp_path / "rank" / "inherited",
                       "--calibration-images", 4, "--budgets", "1x6", "--resamples", 50)
    assert against_mean.returncode == 0, against_mean.stderr
    remeasured = json.loads((tmp_path / "rank_mean" / "ranking.json").read_text())["subnets"]
    assert [r["fitness"] for r in remeasured] == [r["fitness"] for r in report["subnets"]]  # the same tracked boxes
    assert [r["standalone_ao"] for r in remeasured] == [mean[r["arch"]]["ao"] for r in remeasured]
    assert len(list((tmp_path / "rank" / "inherited").glob("*.npz"))) == 3 and not (tmp_path / "rank_mean" / "inherited").exists()

    grown = tmp_path / "grown.yaml"  # the same recipe, its val split grown from 4 to 6 sequences in a root of its own
    grown.write_text(yaml.safe_dump({"extends": str(config), "data": {"root": str(tmp_path / "data6"), "splits": {
        "val": {"sequences": 6, "frames": 6, "size": [96, 64], "seed": 2}}}}))
    for shard in ("1/2", "0/2"):   # two processes' shares
        rescored = run("rescore", "--standalone", out / "standalone.json", "--config", grown, "--out", tmp_path / "grown",
                       "--shard", shard)
        assert rescored.returncode == 0, rescored.stderr
        if shard == "1/2":
            assert len(json.loads((tmp_path / "grown" / "standalone.json").read_text())["subnets"]) == 1
    new = {r["arch"]: r for r in json.loads((tmp_path / "grown" / "standalone.json").read_text())["subnets"]}
    assert set(new) == {r["arch"] for r in records}
    for r in records:   # the first 4 sequences are the old split, tracked as the training scored them
        assert len(new[r["arch"]]["per_sequence_ao"]) == 6
        assert {k: new[r["arch"]]["per_sequence_ao"][k] for k in r["per_sequence_ao"]} == r["per_sequence_ao"]
        assert new[r["arch"]]["checkpoint"] == str((out / r["checkpoint"]).resolve())
    reseeded_rescore = run("rescore", "--standalone", tmp_path / "seed1" / "standalone.json", "--config", grown,
                           "--out", tmp_path / "grown1")   # a run of another training seed: rescored with its seed
    assert reseeded_rescore.returncode == 0, reseeded_rescore.stderr
    averaged_rescore = run("rescore", "--standalone", tmp_path / "mean" / "standalone.json", "--config", grown,
                           "--out", tmp_path / "x")
    assert averaged_rescore.returncode != 0 and "an average of several runs" in averaged_rescore.stderr
    swapped = json.loads((out / "standalone.json").read_text())   # two records' checkpoints exchanged
    paths = [str((out / r["checkpoint"]).resolve()) for r in swapped["subnets"]]
    for r, path in zip(swapped["subnets"], paths[1::-1] + paths[2:]):
        r["checkpoint"] = path
    (tmp_path / "swapped").mkdir()
    (tmp_path / "swapped" / "standalone.json").write_text(json.dumps(swapped))
    mixed = run("rescore", "--standalone", tmp_path / "swapped" / "standalone.json", "--config", grown,
                "--out", tmp_path / "x")
    assert mixed.returncode != 0 and "2 checkpoint(s)" in mixed.stderr and "not their records' architectures" in mixed.stderr
    assert "re-scoring" not in mixed.stderr   # refused before any tracking
    other_recipe = tmp_path / "other_recipe.yaml"
    other_recipe.write_text(yaml.safe_dump({"extends": str(grown), "train": {"iters_per_epoch": 3}}))
    refused = run("rescore", "--standalone", out / "standalone.json", "--config", other_recipe, "--out", tmp_path / "x")
    assert refused.returncode != 0 and "does not train as" in refused.stderr and "iters_per_epoch" in refused.stderr
    assert not (tmp_path / "x").exists()

    other = json.loads(json.dumps(report))  # a second supernet's ranking of the same subnets
    other["supernet"] = "another/checkpoint.pt"
    other["ranking"].update(kendall_tau=report["ranking"]["kendall_tau"] - 0.2)
    (tmp_path / "other.json").write_text(json.dumps(other))
    summed = run("summary", "--rankings", tmp_path / "rank" / "ranking.json", tmp_path / "other.json",
                 "--out", tmp_path / "summary")
    assert summed.returncode == 0, summed.stderr
    summary = json.loads((tmp_path / "summary" / "summary.json").read_text())
    assert summary["mean_tau"] == pytest.approx(report["ranking"]["kendall_tau"] - 0.1)
    assert "2 supernets, 3 subnets, 4 sequences" in summed.stdout and "another/checkpoint.pt: Kendall tau" in summed.stdout
    assert f"bar {'met' if summary['bar_met'] else 'not met'}" in summed.stdout
    twice = run("summary", "--rankings", tmp_path / "rank" / "ranking.json", tmp_path / "rank" / "ranking.json",
                "--out", tmp_path / "s2")
    assert twice.returncode == 2 and "is ranked twice" in twice.stderr
    (tmp_path / "other.json").write_text(json.dumps({"supernet": "x", "ranking": {}}))
    broken = run("summary", "--rankings", tmp_path / "other.json", "--out", tmp_path / "s2")
    assert broken.returncode == 2 and "other.json: not a ranking.json of the rank step (missing: split" in broken.stderr
    assert "ranking.kendall_tau" in broken.stderr and not (tmp_path / "s2").exists()


def _ranking(supernet: str, tau: float, low: float, fitness_self: float, standalone_ao=(0.5, 0.6)) -> dict:
    """The parts of a ranking.json that summarize_rankings reads."""
    return {"supernet": supernet, "split": "val", "sequences": 8, "macs_alone": {"kendall_tau": -0.2},
            "ranking": {"kendall_tau": tau, "kendall_ci": [tau - 0.2, tau + 0.2], "tau_minus_reference": tau + 0.2,
                        "tau_minus_reference_ci": [low, 1.0]},
            "reliability": {"ceiling_tau": 0.7, "fitness": {"whole_tau": fitness_self}, "standalone": {"whole_tau": 0.5}},
            "subnets": [{"arch": f"a{i}", "standalone_ao": ao} for i, ao in enumerate(standalone_ao)]}


def test_summarize_rankings_applies_the_bar():
    met = summarize_rankings([_ranking("s0", 0.7, 0.1, 0.8), _ranking("s1", 0.5, 0.05, 0.6)])
    assert met["mean_tau"] == pytest.approx(0.6) and met["bar_met"] and met["noisier"] == "stand-alone AO"
    low = summarize_rankings([_ranking("s0", 0.6, 0.1, 0.3), _ranking("s1", 0.5, 0.1, 0.3)])
    assert low["every_interval_above_macs"] and not low["bar_met"] and low["noisier"] == "fitness"
    touching = summarize_rankings([_ranking("s0", 0.9, 0.0, 0.8), _ranking("s1", 0.9, 0.3, 0.8)])
    assert not touching["every_interval_above_macs"] and not touching["bar_met"]  # a lower end at 0 is not above
    assert summarize_rankings([_ranking("s0", 0.7, 0.1, float("nan"))])["noisier"] is None
    with pytest.raises(ValueError, match="different stand-alone sets"):  # same subnets, other scores
        summarize_rankings([_ranking("s0", 0.7, 0.1, 0.8), _ranking("s1", 0.7, 0.1, 0.8, standalone_ao=(0.5, 0.61))])
    with pytest.raises(ValueError, match="s0"):
        summarize_rankings([_ranking("s0", 0.7, 0.1, 0.8), _ranking("s0", 0.6, 0.1, 0.8)])


def test_same_size_architectures_and_crossed_bootstrap(tiny_space):
    table = CostTable(build_supernet(tiny_space))
    target = table.macs(tiny_space.sample(3))
    archs = same_size_architectures(tiny_space, table.macs, target, 4, 0.05, seed=1)
    assert len(set(archs)) == 4 and all(abs(table.macs(a) - target) <= 0.05 * target for a in archs)
    with pytest.raises(ValueError, match="widen the tolerance"):
        same_size_architectures(tiny_space, table.macs, 1.0, 2, 0.05, max_draws=50)
    assert paired_bootstrap(np.full((2, 10), 0.1), resamples=200) == pytest.approx((0.1, 0.1, 0.1))
    row = np.random.default_rng(0).normal(0.0, 0.1, 20)
    # seeds scored on the same sequences are crossed with them: three identical seeds know no more about
    # the sequences than one (a nested resampling would shrink the interval by sqrt(3))
    assert paired_bootstrap([row] * 3, resamples=500) == pytest.approx(paired_bootstrap([row], resamples=500))
    mean, low, high = paired_bootstrap([row, row + 0.05], frames=np.arange(1, 21), resamples=500)
    assert low < mean < high and mean == pytest.approx(np.average(row, weights=np.arange(1, 21)) + 0.025)


def test_controls_end_to_end(micro_config, tmp_path):
    from lighttrack_nas.search.evolution import RandomSearch  # noqa: F401  (the strategy compared)

    search = tmp_path / "search.yaml"
    search.write_text(yaml.safe_dump({"extends": str(micro_config), "search": {
        "population": 4, "generations": 2, "topk": 2, "mutants": 2, "crossovers": 2, "calibration_images": 4,
        "calibration_batch": 4, "finalists": 1, "val_sequences": 1, "budgets": {"latency": "1us"}}}))  # dropped
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"extends": str(micro_config), "train": {
        "epochs": 1, "iters_per_epoch": 1, "freeze_backbone_epochs": 0, "threads": 1}}))
    supernet = tmp_path / "supernet"
    SupernetTrainer(load_experiment(search), supernet, max_iters=1, progress=False).train()
    command = [sys.executable, str(ROOT / "benchmarks" / "controls.py"), "--search-config", str(search),
               "--recipe", str(recipe), "--supernets", str(supernet / "checkpoint.pt"), "--seeds", "1",
               "--flops-budget", "1G", "--randoms", "2", "--tolerance", "0.3", "--out", str(tmp_path / "controls"),
               "--no-progress"]
    # shard 1 of 2 searches and trains jobs 2 and 4 of 4 (random search's winner, the second same-size
    # architecture), then leaves the report to whichever run finds every job trained
    half = subprocess.run(command + ["--shard", "1/2"], capture_output=True, text=True)
    assert half.returncode == 0, half.stderr[-3000:]
    assert "shard 1/2 done" in half.stdout and not (tmp_path / "controls" / "controls.json").exists()
    assert "training random stand-alone (job 2 of 4)" in half.stderr and "training size1 stand-alone (job 4 of 4)" in half.stderr
    assert "training evolution" not in half.stderr and "still to finish: s1 evolution, s1 size0" in half.stderr
    recorded = {p: p.stat().st_mtime_ns for p in (tmp_path / "controls").glob("s1/*/*.json")}
    run = subprocess.run(command, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "training random" not in run.stderr  # shard 1's work reused: its trainings, searches and draw
    assert {p: p.stat().st_mtime_ns for p in recorded} == recorded and len(recorded) >= 3
    report = json.loads((tmp_path / "controls" / "controls.json").read_text())
    assert [r["seed"] for r in report["seeds"]] == [1] and report["supernet_seeds"] == 1
    for row in report["seeds"]:
        assert row["evaluations"]["evolution"] == row["evaluations"]["random"] == 8
        assert len(row["same_size"]) == 2
        evo, rnd = row["winners"]["evolution"], row["winners"]["random"]
        assert row["evolution_minus_random"]["ao"] == pytest.approx(evo["val_ao"] - rnd["val_ao"])
        median = float(np.median([r["val_ao"] for r in row["same_size"]]))
        assert row["evolution_minus_median"]["ao"] == pytest.approx(evo["val_ao"] - median)
    summary = report["evolution_minus_random"]
    assert summary["seeds"] == 1 and summary["ci95"][0] <= summary["per_sequence_mean"] <= summary["ci95"][1]
    # the fitness tracked the first val sequence only: the held-out figure is the other one's difference
    searched, = report["searched_sequences"]
    gaps = report["seeds"][0]["evolution_minus_random"]["per_sequence"]
    other, = set(gaps) - {searched}
    assert summary["held_out"]["sequences"] == 1 and summary["held_out"]["mean"] == pytest.approx(gaps[other])
    assert "held-out" in run.stdout
    assert (tmp_path / "controls" / "controls.png").stat().st_size > 10_000
    assert "evolution - random search: mean" in run.stdout
    assert "seed 1: training evolution stand-alone (job 1 of 4)" in run.stderr  # progress without bars
    trained = json.loads((tmp_path / "controls" / "standalone.json").read_text())["subnets"]
    assert len(trained) == len({r["arch"] for r in trained}) <= 4  # each architecture trained once
    # the small files carry the study: without the supernet (or any checkpoint) a re-run only reads them
    (supernet / "checkpoint.pt").unlink()
    for checkpoint in (tmp_path / "controls").rglob("*.pt"):
        checkpoint.unlink()
    again = subprocess.run(run.args, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((tmp_path / "controls" / "controls.json").read_text()) == report
    args = list(run.args)
    args[args.index("--randoms") + 1] = "3"
    changed = subprocess.run(args, capture_output=True, text=True)
    assert changed.returncode != 0 and "same_size.json: drawn with other settings (count: saved 2, now 3)" in changed.stderr


def test_budgets_score_the_first_frames_of_causal_tracks(micro_config):
    """A KxF budget is scored from whole-sequence boxes cut to F frames: exact, since tracking is causal."""
    from lighttrack_nas.data.sources import load_split
    from lighttrack_nas.evaluate import track_sequences
    from lighttrack_nas.workflows.ranking import parse_budget

    cfg = load_experiment(micro_config)
    whole = load_split(cfg["data"], "val", 1)
    cut = load_split(cfg["data"], "val", 1, frames=5)
    assert len(cut[0]) == 5 and (cut[0].boxes == whole[0].boxes[:5]).all() and cut[0].frames == whole[0].frames[:5]
    model = build_supernet(experiment_space(cfg)).extract(experiment_space(cfg).sample(0)).eval()
    full, _ = track_sequences(model, whole)
    head, _ = track_sequences(model, cut)
    assert np.array_equal(head[whole[0].name], full[whole[0].name][:5])
    assert parse_budget("8x30") == (8, 30)
    for bad in ("8", "8x1", "ax3"):
        with pytest.raises(ValueError, match="KxF|F >= 2"):
            parse_budget(bad)
