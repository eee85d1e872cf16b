"""tools/eval.py end to end on a tiny GOT-10k-layout data set written here, with hand-computed scores."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from lighttrack_nas.evaluate import write_results

from conftest import ROOT

GT = {
    "seqA": np.array([[4, 4, 10, 10], [6, 6, 10, 10], [8, 8, 10, 10], [10, 10, 10, 10]], dtype=float),
    "seqB": np.array([[20, 20, 12, 12]] * 4, dtype=float),  # touches the right and bottom border
}
COVER = {"seqA": [8, 8, 8, 8], "seqB": [8, 8, 0, 4]}
ABSENCE = {"seqA": [0, 0, 0, 0], "seqB": [0, 0, 1, 0]}


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    base = tmp_path_factory.mktemp("eval")
    split = base / "got10k" / "val"
    split.mkdir(parents=True)
    (split / "list.txt").write_text("seqA\nseqB\n")
    for name, gt in GT.items():
        seq = split / name
        seq.mkdir()
        for k in range(len(gt)):
            cv2.imwrite(str(seq / f"{k + 1:08d}.jpg"), np.full((32, 32, 3), 40 * k, np.uint8))
        (seq / "groundtruth.txt").write_text("".join(",".join(f"{v:.4f}" for v in row) + "\n" for row in gt))
        (seq / "cover.label").write_text("".join(f"{c}\n" for c in COVER[name]))
        (seq / "absence.label").write_text("".join(f"{a}\n" for a in ABSENCE[name]))
        (seq / "meta_info.ini").write_text("[METAINFO]\nobject_class: box\nresolution: (32, 32)\n")
    # a perfect tracker in the GOT-10k layout, 0.1 s per frame
    perfect = base / "results" / "perfect"
    for name, gt in GT.items():
        write_results(perfect, name, gt, times=np.full(len(gt), 0.1))
    # another toolkit's OTB-layout, tab-separated results: seqA shifted 5 px, seqB 24x24 (past the border)
    other = base / "results" / "other"
    other.mkdir()
    (other / "seqA.txt").write_text("".join("\t".join(str(v) for v in row + [5, 0, 0, 0]) + "\n" for row in GT["seqA"]))
    (other / "seqB.txt").write_text("20\t20\t24\t24\n" * 4)
    return base


def run_eval(base, *args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "eval.py"), "--dataset", "got10k",
                           "--root", str(base / "got10k"), *args], capture_output=True, text=True, timeout=120)


def test_json_scores_of_one_tracker(fixture):
    out = run_eval(fixture, "--split", "val", "--results", str(fixture / "results" / "perfect"), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report) == {"ao", "sr50", "sr75", "fitness", "success_auc", "precision20", "norm_precision20", "fps",
                           "per_sequence"}
    # GOT-10k: frames 2..4 of seqA and frames 2, 4 of seqB (cover 0 at frame 3), all IoU 1
    assert (report["ao"], report["sr50"], report["sr75"]) == (1.0, 1.0, 1.0)
    # OPE: seqB's absent frame 3 fails, so seqB scores 3/4 of a perfect sequence; sequences averaged
    assert report["success_auc"] == pytest.approx((1 + 0.75) / 2 * 20 / 21)
    assert report["precision20"] == pytest.approx(0.875) and report["norm_precision20"] == pytest.approx(0.875)
    assert report["fps"] == pytest.approx(10.0)  # 8 frames in 0.8 s
    assert report["per_sequence"]["seqB"] == pytest.approx(
        {"ao": 1.0, "sr50": 1.0, "sr75": 1.0, "success_auc": 15 / 21, "precision20": 0.75,
         "norm_precision20": 0.75, "ao_frames": 2, "fps": 10.0})  # AO counts frames 2 and 4


def test_several_trackers_json_and_plot(fixture, tmp_path):
    png = tmp_path / "plots" / "ope.png"
    out = run_eval(fixture, "--results", str(fixture / "results" / "perfect"),
                   "--results", str(fixture / "results" / "other"), "--json", "--plot", str(png))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert list(report) == ["perfect", "other"]
    other = report["other"]
    # GOT-10k: seqA IoU 50/150 on 3 frames; seqB 24x24 clipped to the 32x32 image equals the ground
    # truth (IoU 1) on 2 frames; pooled over 5 frames
    assert other["ao"] == pytest.approx((3 / 3 + 2) / 5)
    assert other["sr50"] == pytest.approx(2 / 5) and other["sr75"] == pytest.approx(2 / 5)
    # OPE (no clipping): seqA IoU 1/3 succeeds at 7 thresholds; seqB IoU 144/576 = 0.25 succeeds at
    # 5 thresholds (0, 0.05, ..., 0.20) on its 3 visible frames of 4
    assert other["success_auc"] == pytest.approx((7 / 21 + 0.75 * 5 / 21) / 2)
    # centre errors 5 px (seqA) and 6*sqrt(2) = 8.5 px (seqB); normalised 0.5 and 0.71
    assert other["precision20"] == pytest.approx((1 + 0.75) / 2) and other["norm_precision20"] == 0.0
    assert other["fps"] is None and other["per_sequence"]["seqA"]["ao"] == pytest.approx(1 / 3)
    # AO minus the first tracker's: seqA loses 2/3 on 3 frames, seqB nothing on 2; a bootstrap
    # draw lies between all-seqA (-2/3) and all-seqB (0)
    gap = other["ao_difference"]
    assert gap["versus"] == "perfect" and gap["difference"] == pytest.approx(-0.4)
    assert -2 / 3 - 1e-9 <= gap["ci95"][0] < -0.4 < gap["ci95"][1] <= 1e-9
    assert "ao_difference" not in report["perfect"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_text_table(fixture):
    out = run_eval(fixture, "--results", str(fixture / "results" / "perfect"), "--per-sequence")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "got10k (val): 2 sequences"
    assert lines[1].split() == ["tracker", "AO", "SR0.5", "SR0.75", "AUC", "P@20", "NP@0.2", "FPS"]
    assert lines[2].split() == ["perfect", "1.000", "1.000", "1.000", "0.833", "0.875", "0.875", "10.0"]
    assert any(line.split()[:2] == ["seqB", "1.000"] for line in lines[3:])


def test_missing_result_file_names_sequence_and_path(fixture, tmp_path):
    partial = tmp_path / "partial"
    write_results(partial, "seqA", GT["seqA"])
    out = run_eval(fixture, "--results", str(partial), "--json")
    assert out.returncode == 2
    expected = partial / "seqB" / "seqB_001.txt"
    assert out.stderr.strip() == f"error: tracker 'partial' has no result for sequence 'seqB': expected {expected}"


def test_help_explains_every_flag():
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "eval.py"), "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for flag in ("--dataset", "--root", "--split", "--results", "--json", "--plot", "--per-sequence"):
        assert flag in out.stdout
