"""The main job (tools/demo.py's pipeline) end to end on a micro config, and its resumption."""
import json
import subprocess
import sys

from conftest import ROOT


def test_main_job_runs_end_to_end_and_skips_finished_stages(micro_config, tmp_path):
    cmd = [sys.executable, str(ROOT / "tools" / "demo.py"), "--config", str(micro_config), "--out", str(tmp_path),
           "--calibration-images", "8", "--no-progress"]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["data"] == {"train": 3, "val": 2}
    ev = summary["supernet_eval"]
    for name in ("largest", "median"):
        assert 0.0 <= ev[name]["trained"]["ao"] <= 1.0 and 0.0 <= ev[name]["untrained"]["ao"] <= 1.0
    assert ev["largest"]["macs"] >= ev["median"]["macs"]
    assert 0.0 < ev["static_baseline"]["ao"] < 1.0
    assert (tmp_path / "supernet" / "loss.png").exists() and (tmp_path / "costs.csv").exists()
    assert "static-box baseline" in first.stdout
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads((tmp_path / "summary.json").read_text())
    assert again["supernet_eval"] == ev  # evaluation reused, training not repeated
    assert "train supernet" in again["seconds"] and again["seconds"]["train supernet"] < summary["seconds"]["train supernet"]
