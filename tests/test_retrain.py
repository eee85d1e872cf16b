"""Stand-alone subnet retraining (tools/retrain.py) on the micro experiment: scratch and supernet
initialisation end to end, eval.json, best.json input, input errors, resume."""
import json
import runpy
import subprocess
import sys

import pytest
import torch
import yaml

from lighttrack_nas.models import load_supernet
from lighttrack_nas.train import SubnetTrainer, SupernetTrainer
from lighttrack_nas.workflows.retrain import retrain
from lighttrack_nas.config import load_experiment

from conftest import ROOT

TOOL = ROOT / "tools" / "retrain.py"
ARCH = "lighttrack-mobile"
METRICS = ("ao", "sr50", "sr75", "success_auc", "precision20", "norm_precision20")


@pytest.fixture(scope="module")
def micro(micro_config, tmp_path_factory):
    """The micro experiment with a 2-sequence test split, a micro supernet trained for 2 iterations,
    and a search best.json naming ``ARCH``."""
    base = tmp_path_factory.mktemp("retrain")
    config = base / "retrain.yaml"
    # train.threads 1: runs in this process and in tool subprocesses compute alike (resume test)
    config.write_text(yaml.safe_dump({"extends": str(micro_config), "train": {"threads": 1}, "data": {"splits": {
        "test": {"sequences": 2, "frames": 8, "size": [96, 64], "seed": 3}}}}))
    SupernetTrainer(load_experiment(micro_config), base / "supernet", max_iters=2, progress=False).train()
    best = base / "best.json"
    best.write_text(json.dumps({"best": {"arch": ARCH, "fitness": 0.5}, "evaluations": 1}))
    return {"config": config, "supernet": base / "supernet" / "checkpoint.pt", "best": best}


def _args(micro, out, *extra, arch=ARCH):
    return ["--config", str(micro["config"]), "--arch", str(arch), "--out", str(out), "--no-progress", *extra]


def _tool(*args):
    """The tool in a fresh process: (exit code, stdout, stderr)."""
    run = subprocess.run([sys.executable, str(TOOL), *args], cwd=ROOT, capture_output=True, text=True)
    return run.returncode, run.stdout, run.stderr


def _tool_here(monkeypatch, capsys, *args):
    """The tool run in this process (no interpreter start-up): (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", [str(TOOL), *args])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(TOOL), run_name="__main__")
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def _weights(out):
    return torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def scratch(micro, tmp_path_factory):
    """An uninterrupted scratch run of the best.json's architecture through the tool."""
    out = tmp_path_factory.mktemp("scratch")
    code, stdout, stderr = _tool(*_args(micro, out, arch=micro["best"]))
    assert code == 0, stderr
    return out, stdout


def _check_report(report, init):
    for key in METRICS:
        assert 0.0 <= report[key] <= 1.0, key
    assert report["macs"] > 0 and report["params"] > 0 and report["init"] == init
    assert report["iterations"] == report["schedule_iterations"] == 12
    assert report["batch_size"] == 4 and report["samples"] == 48 and report["split"] == "test"
    assert report["sequences"] == 2 and len(report["per_sequence"]) == 2


def test_scratch_end_to_end_from_best_json(micro, scratch, tiny_space):
    out, stdout = scratch
    report = json.loads((out / "eval.json").read_text())
    _check_report(report, "scratch")
    assert tiny_space.decode(report["arch"]) == tiny_space.decode(ARCH)
    assert "AO" in stdout and "eval.json" in stdout
    state = _weights(out)
    assert state["kind"] == "subnet" and state["init"] == "scratch" and state["iteration"] == 12
    assert (out / "loss.png").exists() and (out / "tensorboard").is_dir()
    assert json.loads((out / "log.jsonl").read_text().splitlines()[-1])["iteration"] == 12


def test_supernet_init_end_to_end(micro, tmp_path, monkeypatch, capsys):
    args = _args(micro, tmp_path, "--init", "supernet", "--supernet", str(micro["supernet"]))
    code, stdout, stderr = _tool_here(monkeypatch, capsys, *args)
    assert code == 0, stderr
    assert "init: " + str(micro["supernet"].resolve()) in stdout
    report = json.loads((tmp_path / "eval.json").read_text())
    _check_report(report, str(micro["supernet"].resolve()))


def test_supernet_init_starts_from_inherited_weights(micro, tmp_path):
    cfg = load_experiment(micro["config"])
    supernet = load_supernet(micro["supernet"])
    inherited = supernet.extract(supernet.space.decode(ARCH)).state_dict()
    trainer = SubnetTrainer(cfg, tmp_path, ARCH, init_supernet=micro["supernet"], progress=False)
    own = trainer.model.state_dict()
    assert own.keys() == inherited.keys()
    for name, value in inherited.items():
        assert torch.equal(own[name], value), name
    scratch = SubnetTrainer(cfg, tmp_path / "scratch", ARCH, progress=False).model.state_dict()
    assert any(not torch.equal(scratch[n], v) for n, v in inherited.items() if v.is_floating_point())


def test_input_errors_are_clear(micro, tmp_path, tiny_space, monkeypatch, capsys):
    unknown_op = tiny_space.encode(tiny_space.decode(ARCH)).replace("s1:k7e4", "s1:k9e9", 1)
    code, _, stderr = _tool_here(monkeypatch, capsys, *_args(micro, tmp_path / "a", arch=unknown_op))
    assert code == 2
    assert stderr.strip() == "error: s1.0: 'k9e9' is not allowed; allowed values: k3e4, k3e6, k5e4, k5e6, k7e4, k7e6"
    with pytest.raises(ValueError, match="--init supernet needs a supernet checkpoint"):
        retrain(micro["config"], ARCH, tmp_path / "b", init="supernet", progress=False)
    with pytest.raises(ValueError, match="only used with --init supernet"):
        retrain(micro["config"], ARCH, tmp_path / "b", supernet=micro["supernet"], progress=False)
    with pytest.raises(ValueError, match="no entry for split 'tset'"):  # before any training
        retrain(micro["config"], ARCH, tmp_path / "d", split="tset", progress=False)
    assert not (tmp_path / "d" / "checkpoint.pt").exists()
    unfinished = tmp_path / "unfinished.json"
    unfinished.write_text(json.dumps({"best": None, "note": "none of the finalists met the latency budget"}))
    with pytest.raises(ValueError, match="best is null: none of the finalists"):
        retrain(micro["config"], str(unfinished), tmp_path / "c", progress=False)
    with pytest.raises(FileNotFoundError, match="search result not found"):
        retrain(micro["config"], str(tmp_path / "missing.json"), tmp_path / "c", progress=False)


def test_resume_equals_uninterrupted_and_checkpoint_is_protected(micro, scratch, tmp_path, tiny_space):
    partial = retrain(micro["config"], ARCH, tmp_path, max_iters=5, progress=False)
    assert partial["iterations"] == 5 and _weights(tmp_path)["iteration"] == 5
    with pytest.raises(ValueError, match="exists: pass --resume"):
        retrain(micro["config"], ARCH, tmp_path, progress=False)
    other = tiny_space.encode(tiny_space.decode(ARCH)).replace("s1:k7e4", "s1:k3e4", 1)
    with pytest.raises(ValueError, match="holds subnet"):
        retrain(micro["config"], other, tmp_path, resume=True, progress=False)
    with pytest.raises(ValueError, match="resume with the same --init"):
        retrain(micro["config"], ARCH, tmp_path, init="supernet", supernet=micro["supernet"], resume=True,
                progress=False)
    done = retrain(micro["config"], ARCH, tmp_path, resume=True, progress=False)
    assert done["iterations"] == 12 and json.loads((tmp_path / "eval.json").read_text()) == done
    resumed, reference = _weights(tmp_path), _weights(scratch[0])  # reference: an uninterrupted tool run
    assert resumed["iteration"] == 12
    for name, value in reference["model"].items():
        assert (value.float() - resumed["model"][name].float()).abs().max() <= 1e-6, name


def test_one_path_tracks_and_scores_a_checkpoint(micro, scratch, tmp_path):
    """evaluate_checkpoint is the one track-and-score path: the retraining's eval.json is its report, the
    result files it writes score to the same numbers, and its score is the one type with the fitness."""
    from lighttrack_nas.data.sources import load_split
    from lighttrack_nas.evaluate import TrackerScore, evaluate_checkpoint, open_results, score_results
    from lighttrack_nas.tracker import TrackerConfig, tracker_settings

    out, _ = scratch
    report = json.loads((out / "eval.json").read_text())
    cfg = load_experiment(micro["config"])
    sequences = load_split(cfg["data"], "test")
    evaluated = evaluate_checkpoint(out / "checkpoint.pt", sequences, TrackerConfig.from_dict(tracker_settings(cfg)),
                                    threads=1, results=tmp_path / "mine")
    assert isinstance(evaluated.score, TrackerScore)
    assert evaluated.score.fitness == pytest.approx((report["ao"] + report["sr50"]) / 2) == report["fitness"]
    assert {k: evaluated.to_dict()[k] for k in ("ao", "sr50", "macs", "params")} == \
        {k: report[k] for k in ("ao", "sr50", "macs", "params")}
    assert score_results(sequences, open_results(tmp_path / "mine")).ao == pytest.approx(report["ao"], abs=1e-3)
