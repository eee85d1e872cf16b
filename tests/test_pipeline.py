"""The main job (tools/demo.py's pipeline) end to end on a micro config, its resumption, and its
supernet-evaluation stage as tools/eval_supernet.py runs it."""
import json
import subprocess
import sys

import torch
import yaml
from conftest import ROOT
from test_compare import micro_compare

from lighttrack_nas.data.sources import load_split
from lighttrack_nas.models import build_supernet
from lighttrack_nas.search.fitness import static_baseline
from lighttrack_nas.config import load_experiment
from lighttrack_nas.space import experiment_space

MICRO_SEARCH = {"population": 4, "generations": 2, "topk": 2, "mutants": 2, "crossovers": 2, "calibration_images": 4,
                "calibration_batch": 4, "val_sequences": 1, "finalists": 2, "budgets": {"latency": "1s"},
                "latency": {"lut_min_run_time": 0.002, "lut_fit_subnets": 2, "min_run_time": 0.01}}


def test_main_job_runs_end_to_end_and_skips_finished_stages(micro_config, tmp_path):
    config = tmp_path / "micro_search.yaml"
    config.write_text(yaml.safe_dump({"extends": str(micro_config), "space": str(ROOT / "search_spaces" / "lighttrack_tiny.yaml"),
                                      "search": MICRO_SEARCH}))
    comparison = micro_compare(micro_config)
    comparison["compare"]["nas"]["budgets"] = ["3.5M"]
    comparison["compare"]["prune"]["extreme_budgets"] = []
    compare_config = tmp_path / "micro_compare.yaml"
    compare_config.write_text(yaml.safe_dump(comparison))
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "tools" / "demo.py"), "--config", str(config), "--out", str(out),
           "--calibration-images", "8", "--no-progress", "--compare", str(compare_config)]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"] == {"train": 3, "val": 2}
    ev = summary["supernet_eval"]
    for name in ("largest", "median"):
        assert 0.0 <= ev[name]["trained"]["ao"] <= 1.0 and 0.0 <= ev[name]["untrained"]["ao"] <= 1.0
    assert ev["largest"]["macs"] >= ev["median"]["macs"]
    assert 0.0 < ev["static_baseline"]["ao"] < 1.0
    assert (out / "supernet" / "loss.png").exists() and (out / "costs.csv").exists()
    assert "static-box baseline" in first.stdout
    found = summary["search"]
    assert found["evaluations"] == 8 and found["budgets"]["latency"] == 1.0
    assert found["best"]["latency_ms"] is not None and 0.0 <= found["best"]["ao"] <= 1.0
    assert (out / "search" / "pareto.png").exists() and (out / "search" / "latency_lut.json").exists()
    # the comparison ran last, on the supernet trained here (no supernet of its own)
    assert summary["compare"]["trackers"] >= 2 and summary["compare"]["missing"] == 0
    assert list(summary["compare"]["verdicts"]) == ["3.5M"] and "compare 3.5M:" in first.stdout
    assert (out / "compare" / "report.md").exists() and not (out / "compare" / "supernet").exists()
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads((out / "summary.json").read_text())
    assert again["supernet_eval"] == ev and again["search"] == found  # evaluation and search reused
    assert "train supernet" in again["seconds"] and again["seconds"]["train supernet"] < summary["seconds"]["train supernet"]


def test_eval_supernet_tool_scores_reference_and_extra_subnets(micro_config, tmp_path):
    """The issue-4 measurement tool: a checkpoint of the supernet the config's seed builds scores exactly
    like the untrained baseline (same weights), and every row is a real score of its own architecture."""
    cfg = load_experiment(micro_config)
    space = experiment_space(cfg)
    torch.manual_seed(cfg["seed"])
    checkpoint = tmp_path / "supernet.pt"
    torch.save({"kind": "supernet", "space": space.to_dict(), "model": build_supernet(space).state_dict()}, checkpoint)
    mobile = str(space.presets["lighttrack-mobile"])
    report_path = tmp_path / "eval.json"
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "eval_supernet.py"), "--config", str(micro_config),
                             "--supernet", str(checkpoint), "--calibration-images", "4", "--sequences", "1",
                             "--arch", mobile, "--threads", "1", "--out", str(report_path)],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["split"] == "val" and report["sequences"] == 1
    assert report["static_baseline"] == static_baseline(load_split(cfg["data"], "val", 1)).to_dict(per_sequence=False)
    assert report["arch0"]["arch"] == mobile and set(report) >= {"largest", "median", "arch0"}
    assert report["largest"]["macs"] >= max(report["median"]["macs"], report["arch0"]["macs"])
    for name in ("largest", "median", "arch0"):
        row = report[name]
        scores = [{k: v for k, v in row[label].items() if k != "fps"} for label in ("trained", "untrained")]
        assert scores[0] == scores[1] and 0.0 < scores[0]["ao"] < 1.0 and row["ao_gain"] == 1.0
        assert f"{name:<8} AO {row['trained']['ao']:.3f} trained" in result.stdout
