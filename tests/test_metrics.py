"""Tracking metrics pinned against hand-computed cases; result files written and read back."""
import os
import stat

import numpy as np
import pytest

from lighttrack_nas.evaluate import (centre_error, clip_boxes, evaluate_got10k, evaluate_ope, frame_rate, iou,
                                     normalized_centre_error, open_results, paired_ao_difference, read_boxes, read_times,
                                     write_results)
from lighttrack_nas.evaluate.metrics import SUCCESS_THRESHOLDS
from lighttrack_nas.evaluate.results import detect_layout


def boxes(n, x=10.0, y=10.0, w=10.0, h=10.0):
    return np.tile([x, y, w, h], (n, 1)).astype(float)


# --- per-frame quantities ------------------------------------------------------------------------

def test_iou_uses_continuous_coordinates():
    gt = np.array([[10.0, 10.0, 10.0, 10.0]])
    # 10x10 shifted 5 px right: intersection 5x10 = 50, union 100 + 100 - 50 = 150 (no +1 pixel terms)
    assert iou(gt + [5, 0, 0, 0], gt)[0] == pytest.approx(50 / 150)
    # diagonal 3, 4 px: intersection 7x6 = 42, union 200 - 42 = 158
    assert iou(gt + [3, 4, 0, 0], gt)[0] == pytest.approx(42 / 158)
    # touching edges (x2 = x + w = 20 = next x) do not overlap
    assert iou(gt + [10, 0, 0, 0], gt)[0] == 0.0
    assert iou(gt, gt)[0] == 1.0
    # NaN prediction, empty boxes: 0
    assert iou(np.array([[np.nan] * 4, [10, 10, 0, 0]]), np.repeat(gt, 2, axis=0)).tolist() == [0.0, 0.0]


def test_clipping_to_the_image():
    gt = np.array([[20.0, 20.0, 12.0, 12.0], [0.0, 0.0, 10.0, 10.0]])
    pred = np.array([[20.0, 20.0, 24.0, 24.0], [-10.0, 0.0, 20.0, 10.0]])
    # unclipped: 144 / 576 and 100 / (200 + 100 - 100)
    assert iou(pred, gt).tolist() == pytest.approx([0.25, 0.5])
    # clipped to the 32x32 image as the GOT-10k toolkit does: the right/bottom overhang is cut
    # (IoU 1); a box over the left border is moved inside keeping its width: [0, 0, 20, 10] -> 100/200
    assert iou(pred, gt, size=(32, 32)).tolist() == pytest.approx([1.0, 0.5])
    outside = clip_boxes(np.array([[40.0, 5.0, 10.0, 10.0], [5.0, -30.0, 10.0, 10.0]]), (32, 24))
    assert outside.tolist() == [[32.0, 5.0, 0.0, 10.0], [5.0, 0.0, 10.0, 10.0]]
    # a non-square image clips x by the width and y by the height
    assert clip_boxes(np.array([[30.0, 20.0, 10.0, 10.0]]), (40, 25)).tolist() == [[30.0, 20.0, 10.0, 5.0]]


def test_centre_errors():
    gt = np.array([[0.0, 0.0, 40.0, 10.0]] * 3)
    pred = gt + [[3, 4, 0, 0], [4, 1, 0, 0], [0, 0, 10, 0]]
    # centre (x + w/2, y + h/2): growing w by 10 moves the centre 5 px
    assert centre_error(pred, gt).tolist() == pytest.approx([5.0, np.sqrt(17.0), 5.0])
    # per axis divided by the ground-truth w = 40, h = 10, then the norm
    assert normalized_centre_error(pred, gt).tolist() == pytest.approx(
        [np.hypot(3 / 40, 4 / 10), np.hypot(0.1, 0.1), 5 / 40])
    assert centre_error(np.full((1, 4), np.nan), gt[:1])[0] == np.inf
    assert normalized_centre_error(gt[:1], np.array([[0.0, 0.0, 0.0, 10.0]]))[0] == np.inf


# --- OPE ---------------------------------------------------------------------------------------------

def test_perfect_tracker_ope():
    gt = np.array([[1.0, 2.0, 10.0, 20.0], [3.0, 4.0, 11.0, 19.0], [5.0, 6.0, 12.0, 18.0]])
    result = evaluate_ope({"a": gt, "b": gt[:2]}, {"a": gt.copy(), "b": gt[:2].copy()})
    # IoU 1 > t for the 20 thresholds 0..0.95 but not for t = 1: the curve is 1 except its last
    # point, so the AUC (mean of the 21 points) is 20/21
    assert result.success_curve.tolist() == [1.0] * 20 + [0.0]
    assert result.success_auc == pytest.approx(20 / 21)
    assert result.precision20 == 1.0 and result.norm_precision20 == 1.0
    assert result.precision_curve.min() == 1.0  # centre error 0 <= every threshold, 0 px included
    assert result.per_sequence["b"] == {"success_auc": pytest.approx(20 / 21), "precision20": 1.0,
                                        "norm_precision20": 1.0, "frames": 2}


def test_constant_offset_tracker_ope():
    gt = boxes(6)
    result = evaluate_ope({"s": gt}, {"s": gt + [5, 0, 0, 0]})
    # IoU 1/3 > t for t = 0, 0.05, ..., 0.30 (7 thresholds): AUC 7/21
    assert result.success_curve.tolist() == [1.0] * 7 + [0.0] * 14
    assert result.success_auc == pytest.approx(7 / 21)
    # centre error 5 px: fails thresholds 0..4, succeeds from 5 (<=) on
    assert result.precision_curve.tolist() == [0.0] * 5 + [1.0] * 46
    assert result.precision20 == 1.0
    # normalised error 5 / 10 = 0.5: fails at 0.20, succeeds only at the last threshold 0.5
    assert result.norm_precision20 == 0.0 and result.norm_precision_curve.tolist() == [0.0] * 50 + [1.0]


def test_success_is_strictly_greater_than_the_threshold():
    gt = boxes(4)
    half = gt * [1, 1, 1, 0.5]  # 10x5 inside 10x10: IoU exactly 0.5
    result = evaluate_ope({"s": gt}, {"s": half})
    assert result.success_curve[SUCCESS_THRESHOLDS == 0.5].item() == 0.0
    assert result.success_curve[10] == 0.0 and result.success_curve[9] == 1.0
    assert evaluate_got10k({"s": gt}, {"s": half}).sr50 == 0.0


def test_normalised_precision_at_020():
    gt = np.array([[0.0, 0.0, 40.0, 10.0]] * 4)
    # errors per frame: (4, 1) px -> 0.141; (8, 0) -> exactly 0.20 (succeeds, <=); (0, 8) -> 0.80; (0, 0)
    pred = gt + [[4, 1, 0, 0], [8, 0, 0, 0], [0, 8, 0, 0], [0, 0, 0, 0]]
    result = evaluate_ope({"s": gt}, {"s": pred})
    assert result.norm_precision20 == pytest.approx(3 / 4)
    # pixel errors 4.12, 8, 8, 0: all within 20 px, half within 5 px
    assert result.precision20 == 1.0 and result.precision_curve[5] == pytest.approx(0.5)


def test_absent_frames_count_as_ope_failures():
    gt = boxes(4)
    visible = np.array([True, True, False, False])
    result = evaluate_ope({"s": gt}, {"s": gt.copy()}, visible={"s": visible})
    # absent frames stay in the divisor and never succeed, even for a tracker reporting the box:
    # the curve is 2/4 where a perfect tracker scores 1
    assert result.success_auc == pytest.approx(0.5 * 20 / 21)
    assert result.precision20 == 0.5 and result.norm_precision20 == 0.5
    assert result.precision_curve[0] == 0.5
    # without visibility flags an empty ground-truth box (w = h = 0, LaSOT style) marks the target absent
    empty = gt.copy()
    empty[2:] = 0.0
    assert evaluate_ope({"s": empty}, {"s": gt.copy()}).precision20 == 0.5


def test_unknown_ground_truth_is_excluded():
    gt = boxes(4)
    gt[2:] = np.nan  # unknown, not absent: dropped from numerator and divisor
    pred = boxes(4)
    pred[1] = np.nan  # a lost prediction fails
    result = evaluate_ope({"s": gt}, {"s": pred})
    assert result.per_sequence["s"]["frames"] == 2
    assert result.precision20 == 0.5 and result.success_auc == pytest.approx(0.5 * 20 / 21)
    with pytest.raises(ValueError, match="'e': no frame has a ground-truth box"):
        evaluate_ope({"e": np.full((3, 4), np.nan)}, {"e": boxes(3)})


def test_ope_averages_sequences_not_frames():
    long_gt, short_gt = boxes(9), boxes(1)
    far = short_gt + [100, 0, 0, 0]
    result = evaluate_ope({"long": long_gt, "short": short_gt}, {"long": long_gt.copy(), "short": far})
    # sequence-weighted: (1 + 0) / 2, not 9/10
    assert result.precision20 == 0.5


def test_ope_input_errors():
    gt = boxes(3)
    with pytest.raises(ValueError, match="no predictions for sequence.*'?b"):
        evaluate_ope({"a": gt, "b": gt}, {"a": gt})
    with pytest.raises(ValueError, match="run 1 has 2 boxes but the ground truth has 3"):
        evaluate_ope({"a": gt}, {"a": gt[:2]})


# --- GOT-10k -------------------------------------------------------------------------------------------

def test_perfect_tracker_got10k():
    gt = boxes(5) + np.arange(5)[:, None]
    result = evaluate_got10k({"a": gt}, {"a": gt.copy()}, sizes={"a": (64, 64)})
    assert (result.ao, result.sr50, result.sr75, result.frames) == (1.0, 1.0, 1.0, 4)


def test_constant_offset_tracker_got10k():
    gt = boxes(5)
    result = evaluate_got10k({"a": gt}, {"a": gt + [5, 0, 0, 0]})
    assert result.ao == pytest.approx(1 / 3) and result.sr50 == 0.0 and result.sr75 == 0.0
    diagonal = evaluate_got10k({"a": gt}, {"a": gt + [1, 0, 0, 0]})
    # 9x10 overlap of two 10x10 boxes: 90 / 110 = 0.818 > 0.75
    assert diagonal.ao == pytest.approx(90 / 110) and diagonal.sr75 == 1.0


def test_got10k_excludes_the_first_frame():
    gt = boxes(4)
    pred = gt.copy()
    pred[0] = [100.0, 100.0, 5.0, 5.0]
    assert evaluate_got10k({"a": gt}, {"a": pred}).ao == 1.0
    # OPE scores the first frame: 3 of 4 frames succeed
    assert evaluate_ope({"a": gt}, {"a": pred}).precision20 == 0.75


def test_got10k_excludes_cover_zero_frames():
    gt = boxes(5)
    pred = gt.copy()
    pred[[2, 4]] += [50, 0, 0, 0]  # wrong exactly where the target is fully covered
    covers = {"a": np.array([8, 8, 0, 3, 0])}
    result = evaluate_got10k({"a": gt}, {"a": pred}, covers=covers)
    assert (result.ao, result.frames) == (1.0, 2)
    assert evaluate_got10k({"a": gt}, {"a": pred}).ao == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no frame after the first"):
        evaluate_got10k({"a": gt}, {"a": pred}, covers={"a": np.array([8, 0, 0, 0, 0])})


def test_got10k_clips_to_the_image():
    gt = boxes(3, x=20, y=20, w=12, h=12)
    pred = boxes(3, x=20, y=20, w=24, h=24)
    assert evaluate_got10k({"a": gt}, {"a": pred}).ao == pytest.approx(0.25)
    assert evaluate_got10k({"a": gt}, {"a": pred}, sizes={"a": (32, 32)}).ao == pytest.approx(1.0)


def test_got10k_concatenates_three_runs_and_weighs_frames():
    gt = boxes(5)
    runs = [gt.copy(), gt + [5, 0, 0, 0], gt + [50, 0, 0, 0]]  # IoU 1, 1/3, 0 on 4 frames each
    result = evaluate_got10k({"a": gt}, {"a": runs})
    assert result.frames == 12
    assert result.ao == pytest.approx((4 * 1 + 4 / 3 + 0) / 12)
    assert result.sr50 == pytest.approx(4 / 12)
    with pytest.raises(ValueError, match="at most 3"):
        evaluate_got10k({"a": gt}, {"a": runs + [gt]})
    # frame-weighted: 3 perfect frames and 1 failed frame give AO 0.75, not the sequence mean 0.5
    pooled = evaluate_got10k({"long": boxes(4), "short": boxes(2)},
                             {"long": boxes(4), "short": boxes(2) + [50, 0, 0, 0]})
    assert pooled.ao == pytest.approx(0.75)
    assert pooled.per_sequence["short"] == {"ao": 0.0, "sr50": 0.0, "sr75": 0.0, "frames": 1}


# --- speed ---------------------------------------------------------------------------------------------

def test_frame_rate_includes_the_first_frame_and_pools_frames():
    assert frame_rate(np.array([0.5, 0.1, 0.1, 0.1, 0.2])) == pytest.approx(5 / 1.0)
    # untimed entries (NaN, 0) are skipped; several sequences pool their frames
    assert frame_rate([np.array([0.25, np.nan, 0.0]), np.array([0.25, 0.5])]) == pytest.approx(3 / 1.0)
    assert frame_rate([]) is None and frame_rate(np.array([0.0])) is None


# --- result files --------------------------------------------------------------------------------------

def test_got10k_layout_round_trip(tmp_path):
    folder = tmp_path / "mytracker"
    pred = np.array([[1.23456, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    path = write_results(folder, "seq1", pred, times=np.array([0.1, 0.05]))
    write_results(folder, "seq1", pred + 1, run=2)
    assert path == folder / "seq1" / "seq1_001.txt"
    assert path.read_text().splitlines() == ["1.235,2.000,3.000,4.000", "5.000,6.000,7.000,8.000"]
    assert sorted(p.name for p in (folder / "seq1").iterdir()) == ["seq1_001.txt", "seq1_002.txt", "seq1_time.txt"]
    results = open_results(folder)
    assert (results.name, results.layout) == ("mytracker", "got10k")
    runs = results.runs("seq1")
    assert len(runs) == 2 and np.allclose(runs[0], np.round(pred, 3)) and np.allclose(runs[1], np.round(pred, 3) + 1)
    assert results.times("seq1").tolist() == [0.1, 0.05]


def test_otb_layout_tabs_and_missing_sequence(tmp_path):
    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "Basketball.txt").write_text("198\t214\t34\t81\n197.5\t213\t34\t82\n\n")
    (folder / "Basketball_time.txt").write_text("0.01\n0.02\n")
    (folder / "Bolt.txt").write_text("1 2 3 4\n5, 6, 7, nan\n")
    assert detect_layout(folder) == "otb"
    results = open_results(folder)
    assert results.runs("Basketball")[0].tolist() == [[198, 214, 34, 81], [197.5, 213, 34, 82]]
    assert np.isnan(results.runs("Bolt")[0][1, 3])
    assert results.times("Basketball").tolist() == [0.01, 0.02] and results.times("Bolt") is None
    with pytest.raises(FileNotFoundError, match=r"sequence 'Car4': expected .*other/Car4\.txt"):
        results.runs("Car4")


def test_malformed_files_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("1,2,3,4\n1,2,3\n")
    with pytest.raises(ValueError, match=r"bad\.txt line 2: expected 4 numbers"):
        read_boxes(bad)
    bad.write_text("1,2,3,4\n1,2,3,4\n1,2,x,4\n")
    with pytest.raises(ValueError, match=r"bad\.txt line 3: not a number"):
        read_boxes(bad)
    bad.write_text("1,2,3,4\n\n1,2,3,4\n")
    with pytest.raises(ValueError, match=r"bad\.txt line 2"):  # a blank line inside the file is malformed
        read_boxes(bad)
    bad.write_text("0.1\nfast\n")
    with pytest.raises(ValueError, match=r"bad\.txt line 2: not a number"):
        read_times(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no result files"):
        open_results(tmp_path / "empty")


def test_writes_are_atomic(tmp_path, monkeypatch):
    folder = tmp_path / "t"
    write_results(folder, "s", boxes(2), layout="otb")
    before = (folder / "s.txt").read_text()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("lighttrack_nas.io.os.replace", broken)
    with pytest.raises(OSError, match="disk full"):
        write_results(folder, "s", boxes(2) + 1, layout="otb")
    # the old file is intact and no temporary file is left behind
    assert (folder / "s.txt").read_text() == before
    assert [p.name for p in folder.iterdir()] == ["s.txt"]


def test_atomic_writes_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_results(tmp_path, "s", boxes(2), layout="otb")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "s.txt").stat().st_mode) == 0o644


def test_paired_ao_difference_interval():
    gts = {f"s{i}": boxes(11) for i in range(8)}
    base = evaluate_got10k(gts, {n: gt.copy() for n, gt in gts.items()})
    shifted = {n: gt + ([5, 0, 0, 0] if n in ("s0", "s1") else 0) for n, gt in gts.items()}
    other = evaluate_got10k(gts, shifted)
    gap, low, high = paired_ao_difference(base, other, resamples=2000)
    # two sequences of eight lose 1 - 1/3 on every frame
    assert gap == pytest.approx(2 / 8 * (1 / 3 - 1)) and low < gap < high <= 0.0
    assert paired_ao_difference(base, base) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="different sequences"):
        paired_ao_difference(base, evaluate_got10k({"s0": gts["s0"]}, {"s0": gts["s0"]}))
