"""The comparison (tools/compare.py, lighttrack_nas.workflows.compare) on a micro config: one seed, two NAS
budgets and one extreme budget, a few iterations per stage; outputs, matched MACs, resume, errors."""
import csv
import json
import runpy
import shutil
import sys
import time
from pathlib import Path

import pytest
import yaml

from lighttrack_nas.workflows.compare import compare, join_2x2, matched_table, prepare
from lighttrack_nas.config import ConfigError
from lighttrack_nas.machine import machine_info
from lighttrack_nas.tracker import TrackerConfig

from conftest import ROOT

TOOL = ROOT / "tools" / "compare.py"
NAS_BUDGETS = ["2.5M", "3.5M"]
EXTREME = 0.1
SHORT = {"epochs": 1, "iters_per_epoch": 2}
# a micro dense CNN a few times larger than the micro space's subnets (crops 32/64 as micro_config)
MICRO_CNN = {"family": "cnn", "template_size": 32, "search_size": 64, "cls_scale": 1.0, "reg_scale": 8,
             "widths": {"stem": 16, "stages": [{"stride": 2, "out": 24, "blocks": [[24]]},
                                               {"stride": 2, "out": 48, "blocks": [[48]]},
                                               {"stride": 2, "out": 64, "blocks": [[64]]}],
                        "neck": 16, "cls_tower": [32, 32], "reg_tower": [32, 32]}}
METRICS = ("ao", "sr50", "sr75", "success_auc", "precision", "norm_precision")


def micro_compare(micro_config) -> dict:
    """The comparison section of the micro run (every stage a couple of iterations)."""
    return {
        "extends": str(micro_config),
        "train": {"epochs": 1, "iters_per_epoch": 2, "checkpoint_every": 2, "threads": 1},  # the supernet
        "data": {"splits": {"test": {"sequences": 2, "frames": 8, "size": [96, 64], "seed": 3}}},
        "search": {"population": 2, "generations": 1, "topk": 1, "mutants": 0, "crossovers": 0,
                   "calibration_images": 4, "calibration_batch": 4, "val_sequences": 1, "finalists": 1,
                   "latency": {"min_run_time": 0.01}},
        "compare": {
            "seeds": [0], "latency": {"min_run_time": 0.01},
            "nas": {"budgets": list(NAS_BUDGETS), "init": "supernet", "train": dict(SHORT)},
            "cnn": {"model": MICRO_CNN, "train": dict(SHORT)},
            "prune": {"criterion": "slimming", "min_width": 2, "extreme_budgets": [EXTREME],
                      "sparsity": {"l1": 1e-3, "train": dict(SHORT)}, "finetune": {"train": dict(SHORT)},
                      "latency": {"threads": 1, "min_run_time": 0.01}},
        },
    }


def _write(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def run(micro_config, tmp_path_factory):
    """One full micro comparison: (config, out, summary, seconds)."""
    base = tmp_path_factory.mktemp("compare")
    config = _write(base / "compare.yaml", micro_compare(micro_config))
    out = base / "out"
    start = time.perf_counter()
    summary = compare(config, out, progress=False)
    return config, out, summary, time.perf_counter() - start


def _rows(out: Path) -> list[dict]:
    with open(out / "results.csv") as f:
        return list(csv.DictReader(f))


def test_results_have_a_row_per_tracker_with_valid_metrics(run):
    _, out, summary, seconds = run
    rows = _rows(out)
    assert not summary["missing"]
    kinds = sorted((r["family"], r["kind"], r["budget"]) for r in rows)
    matched = [("cnn", "matched", b) for b in NAS_BUDGETS if not any(u["budget"] == b for u in summary["unmatched"])]
    assert kinds == sorted([("nas", "nas", b) for b in NAS_BUDGETS] + [("cnn", "dense", "dense")] + matched
                           + [("cnn", "extreme", f"x{EXTREME:g}")])
    for r in rows:
        for key in METRICS:
            assert 0.0 <= float(r[key]) <= 1.0, (r["budget"], key)
        assert int(r["macs"]) > 0 and int(r["params"]) > 0 and float(r["latency_ms"]) > 0
        assert int(r["train_iterations"]) == 2 and int(r["train_batch"]) == 4 and r["seed"] == "0"
    print(f"micro comparison: {seconds:.1f} s")


def test_matched_budgets_match_the_nas_macs(run):
    _, out, summary, _ = run
    rows = _rows(out)
    nas = {r["budget"]: int(r["macs"]) for r in rows if r["family"] == "nas"}
    dense = next(int(r["macs"]) for r in rows if r["kind"] == "dense")
    report = (out / "report.md").read_text()
    machine = machine_info()
    assert f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}." in report
    for budget in NAS_BUDGETS:
        assert nas[budget] <= float(budget[:-1]) * 1e6  # the search met its budget
        cnn = [r for r in rows if r["kind"] == "matched" and r["matched_to"] == budget]
        if cnn:
            assert abs(int(cnn[0]["macs"]) / nas[budget] - 1) <= 0.10, budget
            assert abs(float(cnn[0]["macs_vs_nas"])) <= 0.10
            match = json.loads((Path(cnn[0]["folder"]) / "match.json").read_text())
            assert match["nas_macs"] == nas[budget] and match["tried"]
            assert match["macs"] == int(cnn[0]["macs"])  # the dry run predicted the pruning exactly
        else:  # the report must say why
            reason = next(u["reason"] for u in summary["unmatched"] if u["budget"] == budget)
            assert "cannot be met" in reason or "larger than the dense network" in reason
            assert reason in report
        assert f"**{budget}** vs pruned CNN:" in report
    extreme = next(r for r in rows if r["kind"] == "extreme")
    assert int(extreme["macs"]) <= EXTREME * dense
    for entry in summary["matched"]:
        assert entry["verdict"].startswith(("NAS ahead of pruned CNN", "NAS behind pruned CNN", "tie: NAS vs pruned CNN",
                                            "no verdict"))


def test_report_and_plots(run):
    _, out, _, _ = run
    report = (out / "report.md").read_text()
    for heading in ("## Matched MACs", "## Compute and starting weights", "## Every tracker", "## Plots",
                    "## Stage times"):
        assert heading in report
    assert "The bar (NAS >= pruned CNN in mean AO" in report and "Shown by the 95 % interval" in report
    for r in (json.loads(p.read_text()) for p in out.rglob("test.json")):  # compute honesty, per tracker
        assert all(phase["imagenet"] in (True, False) for phase in r["training"])
        assert (r["selection_evaluations"] > 0) == (r["family"] == "nas")
    for name in ["ao_vs_macs", "ao_vs_latency", "stability", "success_extreme"] + [f"success_{b}" for b in NAS_BUDGETS]:
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"({name}.png)" in report
    for seed_dir in ("nas/seed0/retrain_2.5M", "cnn/seed0/dense"):
        assert (out / seed_dir / "test").is_dir()


def test_the_2x2_joins_an_imagenet_and_a_random_start_run_and_refuses_mixed_ones(run, tmp_path):
    _, out, _, _ = run
    matched = json.loads((out / "matched.json").read_text())
    assert matched["starts"] == {"nas": False, "cnn": False}  # the micro config has no ImageNet start
    assert [e["budget"] for e in matched["matched"]] == NAS_BUDGETS
    with pytest.raises(ValueError, match="the nas trackers of the ImageNet start row start from random weights"):
        join_2x2(out, out, tmp_path / "2x2", "cnn", "cnn")
    imagenet = tmp_path / "imagenet"  # the same trackers recorded as ImageNet-started: the join's mechanics
    imagenet.mkdir()
    (imagenet / "matched.json").write_text(json.dumps({**matched, "starts": {"nas": True, "cnn": True}}))
    record = join_2x2(imagenet, out, tmp_path / "2x2", "cnn", "cnn")
    assert [t["budget"] for t in record["table"]] == NAS_BUDGETS
    ahead = sum(e.get("outcome") == "ahead" for e in matched["matched"])
    assert record["ahead"] == {"imagenet": ahead, "scratch": ahead} and record["ahead_in_both"] == ahead
    assert record["claim"].startswith("no claim: 1 (ImageNet row) and 1 (random row) seed(s), the rule needs 3")
    assert record["dense_ao"]["scratch"] == pytest.approx(matched["dense_ao"]["cnn"])
    (imagenet / "matched.json").write_text(json.dumps({**matched, "starts": {"nas": True, "cnn": True},
                                                       "seeds": [0, 1, 2]}))
    (tmp_path / "scratch").mkdir()
    (tmp_path / "scratch" / "matched.json").write_text(json.dumps({**matched, "seeds": [0, 1, 2]}))
    record = join_2x2(imagenet, tmp_path / "scratch", tmp_path / "2x2", "cnn", "cnn")
    assert record["claim"].startswith("NAS beats pruning" if ahead >= 2 else "no claim: NAS ahead at")
    table = (tmp_path / "2x2" / "2x2.md").read_text()
    assert "| 2.5M |" in table and "**Claim**" in table and record["claim"] in table
    assert "pruned (`cnn` vs `cnn`) " in table
    (tmp_path / "renamed").mkdir()  # the random row's pruned side another family: the start effect says so
    (tmp_path / "renamed" / "matched.json").write_text(json.dumps({
        **matched, "starts": {"nas": False, "cnn_scratch": False},
        "dense_ao": {"cnn_scratch": matched["dense_ao"]["cnn"]}, "matched": [{**e, "family": "cnn_scratch"} for e in matched["matched"]]}))
    join_2x2(imagenet, tmp_path / "renamed", tmp_path / "2x2", "cnn", "cnn_scratch")
    table = (tmp_path / "2x2" / "2x2.md").read_text()
    assert "pruned (`cnn` vs `cnn_scratch`: two families, not the start alone) " in table
    with pytest.raises(ValueError, match="no pruned family 'lite0'; it has \\['cnn'\\]"):
        join_2x2(imagenet, out, tmp_path / "2x2", "lite0", "cnn")
    (imagenet / "matched.json").write_text(json.dumps({**matched, "starts": {"nas": True, "cnn": True},
                                                       "split_id": "another"}))
    with pytest.raises(ValueError, match="tracked different test splits"):
        join_2x2(imagenet, out, tmp_path / "2x2", "cnn", "cnn")
    with pytest.raises(FileNotFoundError, match="tools/compare.py --report-only"):
        join_2x2(tmp_path, out, tmp_path / "2x2", "cnn", "cnn")


def test_each_seed_trains_its_own_supernet_unless_one_is_given(run, tmp_path):
    """A NAS seed retrains the supernet (the config's training with seed: S, into OUT/supernet/seedS); a given
    supernet is shared by every seed; the layout before per-seed supernets is refused with what to do."""
    import torch
    from lighttrack_nas.models.build import read_checkpoint
    from lighttrack_nas.workflows.compare.runner import StageLog, _supernet
    config, out, summary, _ = run
    work = tmp_path / "out"
    shutil.copytree(out, work, ignore=shutil.ignore_patterns("nas", "cnn"))
    exp, stages = prepare(config, work), StageLog(work / "stages.json")
    path, phase = _supernet(exp, work, 1, None, stages, progress=False)
    assert path == work / "supernet" / "seed1" / "checkpoint.pt" and "seed1/supernet" in stages.records
    assert phase["shared"] == "every NAS tracker of seed 1" and phase["iterations"] == 2
    seeds = [read_checkpoint(work / "supernet" / f"seed{s}" / "checkpoint.pt") for s in (0, 1)]
    assert [c["config"]["seed"] for c in seeds] == [0, 1]
    assert any(not torch.equal(a, seeds[1]["model"][k]) for k, a in seeds[0]["model"].items() if a.is_floating_point())
    nas_rows = [r for r in summary["rows"] if r["family"] == "nas"]
    assert nas_rows and all(r["training"][0]["shared"] == "every NAS tracker of seed 0" for r in nas_rows)
    shutil.copytree(work / "supernet" / "seed1", work / "supernet" / "seed2")
    with pytest.raises(ValueError, match=r"seed2/checkpoint.pt: trained with seed 1, not 2: remove it or move it to "
                                         r".*seed1/"):
        _supernet(exp, work, 2, None, stages, progress=False)
    shutil.rmtree(work / "supernet" / "seed2")
    given, phase = _supernet(exp, work, 2, path, stages, progress=False)
    assert given == path and phase["shared"] == "every NAS tracker of every seed"
    assert not (work / "supernet" / "seed2").exists()
    shutil.move(work / "supernet" / "seed0" / "checkpoint.pt", work / "supernet" / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"a supernet shared by every seed .*: move it into .*seed3/ or pass it as "
                                         r"--supernet"):
        _supernet(exp, work, 0, None, stages, progress=False)


def test_nas_rows_agree_with_the_retraining_evaluation(run):
    _, out, _, _ = run
    for budget in NAS_BUDGETS:
        folder = out / "nas" / "seed0" / f"retrain_{budget}"
        ours, retrained = (json.loads((folder / name).read_text()) for name in ("test.json", "eval.json"))
        assert ours["ao"] == pytest.approx(retrained["ao"], abs=1e-9) and ours["macs"] == retrained["macs"]


def test_rerun_skips_every_finished_stage(run, monkeypatch, capsys):
    config, out, _, seconds = run
    outputs = [p for pattern in ("**/best.json", "**/eval.json", "**/prune.json", "**/test.json", "**/checkpoint.pt")
               for p in out.glob(pattern)]
    assert len(outputs) >= 15
    before = {p: p.stat().st_mtime_ns for p in outputs}
    monkeypatch.setattr(sys, "argv", [str(TOOL), "--config", str(config), "--out", str(out), "--no-progress"])
    start = time.perf_counter()
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(TOOL), run_name="__main__")
    assert exit_.value.code == 0
    assert time.perf_counter() - start < seconds
    assert {p: p.stat().st_mtime_ns for p in outputs} == before
    stages = json.loads((out / "stages.json").read_text())
    assert {k: v["last"] for k, v in stages.items() if k != "data"} == {k: "skipped" for k in stages if k != "data"}
    assert all(v["seconds"] is not None for v in stages.values())  # the times of the run that did them stay
    printed = capsys.readouterr().out
    assert "results.csv" in printed and all(f"{b}: " in printed for b in NAS_BUDGETS)


def test_an_evaluation_on_another_version_of_the_split_is_done_again(run):
    config, out, _, _ = run
    dense = next(out.rglob("dense/test.json"))
    stale = {**json.loads(dense.read_text()), "split_id": "another split", "ao": -1.0}
    dense.write_text(json.dumps(stale))
    compare(config, out, progress=False)
    again = json.loads(dense.read_text())
    assert again["split_id"] != "another split" and 0.0 <= again["ao"] <= 1.0
    assert json.loads((out / "stages.json").read_text())["seed0/eval/cnn_dense"]["last"] == "ran"


def _tool_error(monkeypatch, capsys, *args) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", [str(TOOL), *args])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(TOOL), run_name="__main__")
    return exit_.value.code, capsys.readouterr().err


@pytest.mark.parametrize("section, key, expected", [
    ("compare", "seedz", r"compare: unknown key\(s\) \['seedz'\]"),
    ("nas", "budgetz", r"compare.nas: unknown key\(s\) \['budgetz'\]"),
    ("cnn_train", "epochz", r"compare.cnn.train: unknown key\(s\) \['epochz'\]"),
    ("prune", "criterium", r"compare.prune: unknown key\(s\) \['criterium'\]"),
])
def test_a_bad_config_key_is_named(micro_config, tmp_path, section, key, expected):
    cfg = micro_compare(micro_config)
    target = {"compare": cfg["compare"], "nas": cfg["compare"]["nas"], "prune": cfg["compare"]["prune"],
              "cnn_train": cfg["compare"]["cnn"]["train"]}[section]
    target[key] = 1
    config = _write(tmp_path / "bad.yaml", cfg)
    with pytest.raises(ConfigError, match=expected):
        prepare(config, tmp_path / "out")


def test_bad_values_are_clear_errors_before_any_work(micro_config, tmp_path, monkeypatch, capsys):
    cfg = micro_compare(micro_config)
    cfg["compare"]["nas"]["budgets"] = ["25X"]
    code, err = _tool_error(monkeypatch, capsys, "--config", str(_write(tmp_path / "a.yaml", cfg)),
                            "--out", str(tmp_path / "out"))
    assert code == 2 and "compare.nas.budgets: '25X' is not a positive count" in err
    cfg = micro_compare(micro_config)
    cfg["compare"]["prune"]["extreme_budgets"] = [1.5]
    with pytest.raises(ConfigError, match=r"compare.prune.extreme_budgets must be a number in \(0, 1\], got 1.5"):
        prepare(_write(tmp_path / "b.yaml", cfg), tmp_path / "out")
    cfg = micro_compare(micro_config)
    cfg["compare"]["nas"]["init"] = "imagenet"
    with pytest.raises(ConfigError, match=r"compare.nas.init: 'imagenet' is not one of"):
        prepare(_write(tmp_path / "c.yaml", cfg), tmp_path / "out")
    assert not (tmp_path / "out" / "stages.json").exists()


def test_a_resume_with_changed_settings_is_refused_with_the_difference(micro_config, tmp_path):
    cfg = micro_compare(micro_config)
    prepare(_write(tmp_path / "a.yaml", cfg), tmp_path / "out")
    cfg["compare"]["prune"]["min_width"] = 1  # before any stage ran, the configs are rewritten
    prepare(_write(tmp_path / "a.yaml", cfg), tmp_path / "out")
    (tmp_path / "out" / "stages.json").write_text("{}")  # a stage ran
    cfg["train"]["threads"] = 2  # no result depends on it: the resume goes on
    prepare(_write(tmp_path / "a.yaml", cfg), tmp_path / "out")
    cfg["compare"]["prune"]["normalizer"] = "mean"
    with pytest.raises(ConfigError, match=r"cnn.yaml: the comparison in .* was prepared with other settings "
                                          r"\(prune.normalizer: saved '<absent>', now 'mean'\)"):
        prepare(_write(tmp_path / "a.yaml", cfg), tmp_path / "out")
    cfg["compare"]["prune"]["normalizer"] = "median"
    with pytest.raises(ConfigError, match=r"compare.prune.normalizer: 'median' is not one of"):
        prepare(_write(tmp_path / "b.yaml", cfg), tmp_path / "out2")


def test_verdicts(micro_config, tmp_path):
    exp = prepare(_write(tmp_path / "c.yaml", micro_compare(micro_config)), tmp_path / "out")

    def rows(nas_ao, cnn_ao, cnn_macs, spread=(0.0, 0.0)):
        """Two test sequences per tracker, AO +- spread[k] around the tracker's AO (NAS: +, pruned: -)."""
        out = []
        for seed, (a, c) in enumerate(zip(nas_ao, cnn_ao)):
            per = lambda ao, sign: {f"s{k}": {"ao": ao + sign * (-1) ** k * spread[k]} for k in range(2)}
            out += [{"family": "nas", "kind": "nas", "budget": "2.5M", "seed": seed, "ao": a, "macs": 2_000_000,
                     "per_sequence": per(a, 1)},
                    {"family": "cnn", "method": "pruned-slimming", "kind": "matched", "matched_to": "2.5M",
                     "budget": "2.5M", "seed": seed, "ao": c, "macs": cnn_macs, "per_sequence": per(c, -1)}]
        return out

    ahead = matched_table(exp, rows([0.5, 0.6], [0.4, 0.55], 1_950_000), [])[0]
    assert ahead["verdict"].startswith("NAS ahead of pruned CNN within 10% MACs") and ahead["outcome"] == "ahead"
    assert ahead["margin"][0] == pytest.approx(0.075) and ahead["margin"][1] == pytest.approx(0.03536, abs=1e-4)
    assert ahead["margin_ci"][0] == pytest.approx(0.05) and ahead["margin_ci"][1] == pytest.approx(0.1)
    tie = matched_table(exp, rows([0.5, 0.6], [0.4, 0.55], 1_950_000, spread=(0.2, 0.2)), [])[0]
    assert tie["outcome"] == "tie" and tie["verdict"].startswith("tie: NAS vs pruned CNN within 10% MACs")
    assert tie["margin_ci"][0] < 0 < tie["margin_ci"][1] and tie["margin"][0] == pytest.approx(0.075)
    behind = matched_table(exp, rows([0.3], [0.4], 2_100_000), [])[0]
    assert behind["verdict"].startswith("NAS behind pruned CNN") and "1 seed: no spread" in behind["verdict"]
    off = matched_table(exp, rows([0.5], [0.4], 1_500_000), [])[0]
    assert off["verdict"].startswith("no verdict: the pruned CNN's MACs differ from the NAS subnet's by -25.0%")
    reason = {"seed": 0, "budget": "3.5M", "reason": "budget 0.01 of the dense macs cannot be met"}
    missing = matched_table(exp, [], [reason])[1]
    assert missing["verdict"] == "no verdict: budget 0.01 of the dense macs cannot be met"


def test_stability_plot_draws_a_spread_band_over_seeds(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    from lighttrack_nas.workflows.compare.report import plot_stability

    bands = []
    monkeypatch.setattr(Axes, "fill_between", lambda self, x, low, high, **kw: bands.append((list(low), list(high))))
    rows = [{"family": "cnn", "method": "dense", "kind": "dense", "seed": s, "budget": "dense", "macs": 1e8, "ao": 0.5}
            for s in range(3)]
    rows += [{"family": "cnn", "method": "pruned-slimming", "kind": "matched", "seed": s, "budget": b,
              "macs": 1e8 * f, "ao": 0.4 + 0.05 * s} for s in range(3) for b, f in (("A", 0.3), ("B", 0.1))]
    assert plot_stability(rows, tmp_path / "s.png").stat().st_size > 0
    (low, high), = bands
    assert low == pytest.approx([0.8] * 2) and high == pytest.approx([1.0] * 2)  # retained 0.8 / 0.9 / 1.0: 0.9 +- 0.1
    assert plot_stability(rows[:1] + rows[3:5], tmp_path / "one.png").stat().st_size > 0 and len(bands) == 1


def test_tracker_tuning_per_family_on_val_is_used_for_every_tracker_of_the_family(run, micro_config, tmp_path):
    pytest.importorskip("ray")
    _, finished_out, _, _ = run
    out = tmp_path / "out"
    shutil.copytree(finished_out, out)  # everything trained: only the tunings and the re-evaluations run
    cfg = micro_compare(micro_config)
    cfg["compare"]["tune"] = {"trials": 2, "sequences": 1, "workers": 1}
    compare(_write(tmp_path / "tuned.yaml", cfg), out, progress=False)
    for family in ("nas", "cnn"):
        folder = out / "tune" / family / "seed0"
        record = json.loads((folder / "tune.json").read_text())
        assert record["split"] == "val" and record["sequences"] == 1 and record["trials"] == 2
        tuned = TrackerConfig.from_yaml(folder / "tracker.yaml").to_dict()
        results = [json.loads(p.read_text()) for p in out.rglob("test.json")]
        own = [r for r in results if r["family"] == family]
        assert own and all(r["tracker"] == tuned for r in own)  # re-tracked where the tuning moved them
    stages = json.loads((out / "stages.json").read_text())
    assert stages["seed0/tune/nas"]["last"] == "ran" and stages["seed0/tune/cnn"]["last"] == "ran"
    cfg["compare"]["tune"]["trials"] = 3  # a resume with other tuning settings is refused, not reused
    with pytest.raises(ValueError, match=r"tuned with .*'trials_requested': 2.*not compare.tune's"):
        compare(_write(tmp_path / "changed.yaml", cfg), out, progress=False)
    with pytest.raises(ConfigError, match=r"compare.tune.trials must be an integer >= 0, got -1"):
        cfg["compare"]["tune"]["trials"] = -1
        prepare(_write(tmp_path / "bad.yaml", cfg), tmp_path / "bad")
