"""The synthetic generator: determinism, split hygiene, exact labels, the CLI and ensure_dataset."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from lighttrack_nas.data import (DataError, SHARED_BACKGROUNDS, SOURCE_SPLITS, SPLIT_BACKGROUNDS, SPLITS,
                                 ensure_dataset, generate_dataset, open_dataset, plan_sequence)
from lighttrack_nas.data import synthetic
from lighttrack_nas.data.synthetic import cover_label

ROOT = Path(__file__).resolve().parents[1]
MICRO = dict(sequences=2, frames=6, seed=3, size=(96, 64))


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_bytes_on_rerun_whatever_the_worker_count(tmp_path):
    generate_dataset(tmp_path / "a", "train", workers=1, **MICRO)
    generate_dataset(tmp_path / "b", "train", workers=2, **MICRO)
    a, b = tree(tmp_path / "a"), tree(tmp_path / "b")
    assert len(a) == 2 * (6 + 4) + 2 and a == b
    c = tree(generate_dataset(tmp_path / "c", "train", workers=1, **{**MICRO, "seed": 4}))
    assert c.keys() == a.keys() and c != a


def test_splits_draw_objects_from_disjoint_photographs():
    splits = list(SOURCE_SPLITS.values())
    for i, first in enumerate(splits):
        assert not set(first) & set(SHARED_BACKGROUNDS)
        for second in splits[i + 1:]:
            assert not set(first) & set(second)
    for split, sources in SOURCE_SPLITS.items():
        for index in range(4):
            attributes = plan_sequence(0, split, index, 4, (64, 48)).attributes
            assert set(attributes["object_photos"].split(",")) <= set(sources)
            assert attributes["object_source"] in sources
            assert attributes["background_source"] in sources + SPLIT_BACKGROUNDS[split]


def test_the_test_split_shares_no_photograph_with_train_or_val(tmp_path):
    """The manifests (meta_info.ini) of generated splits: every photograph a test sequence uses, as object,
    distractor, clutter, occluder or background, appears in no train or val sequence."""
    used: dict[str, set[str]] = {}
    for split in SPLITS:
        generate_dataset(tmp_path, split, sequences=24, frames=2, seed=0, size=(64, 48), workers=1)
        used[split] = set()
        for meta in (tmp_path / split).glob("*/meta_info.ini"):
            fields = dict(line.split(": ", 1) for line in meta.read_text().splitlines()[1:])
            used[split] |= set(fields["object_photos"].split(",")) | {fields["background_source"]}
    assert used["test"] and not used["test"] & (used["train"] | used["val"])
    assert "grace_hopper" in used["test"]


def render(challenges, frames=30, index=0, with_target=True):
    plan = plan_sequence(7, "val", index, frames, (160, 120), challenges=challenges)
    return plan, list(plan.render(with_target))


def check_boxes(frames, size=(160, 120)):
    boxes = np.array([f.box for f in frames])
    assert np.isfinite(boxes).all() and (boxes[:, 2:] > 0).all()
    assert (boxes[:, :2] >= 0).all()
    assert (boxes[:, 0] + boxes[:, 2] <= size[0]).all() and (boxes[:, 1] + boxes[:, 3] <= size[1]).all()
    for f in frames:
        assert f.absent == (f.cover == 0) and 0 <= f.cover <= 8
    assert frames[0].cover == 8
    return boxes


def event_frames(plan, key):
    first, last = (int(v) for v in plan.attributes[key].split("-"))
    return range(first - 1, last)


def test_out_of_view_frames_are_absent_and_keep_the_last_box():
    plan, frames = render(("out_of_view",))
    boxes = check_boxes(frames)
    span = event_frames(plan, "out_of_view_frames")
    absent = [t for t, f in enumerate(frames) if f.absent]
    assert absent and set(absent) <= set(span)
    outside = [t for t in absent if np.array_equal(boxes[t], boxes[t - 1])]
    assert outside, "the target never left the image completely"
    before = [t for t in span if t not in absent]
    assert before and any(0 < frames[t].cover < 8 for t in before)  # partly outside on the way
    assert frames[span[-1] + 1].cover > 0


def test_full_occlusion_is_absent_but_keeps_the_true_box():
    plan, frames = render(("occlusion_full",))
    boxes = check_boxes(frames)
    span = event_frames(plan, "occlusion_full_frames")
    absent = [t for t, f in enumerate(frames) if f.absent]
    assert absent and set(absent) <= set(span)
    assert any(0 < frames[t].cover < 8 for t in span)
    _, bare = render(("occlusion_full",), with_target=False)
    for t in absent:  # the hidden target leaves no trace, yet the box moves with it
        assert np.array_equal(frames[t].image, bare[t].image)
    moves = np.abs(np.diff(boxes[absent[0] - 1:absent[-1] + 2], axis=0)).sum(axis=1)
    assert moves.max() < 0.2 * boxes[0, 2:].sum() + 8


def test_target_pixels_sit_exactly_in_the_ground_truth_box():
    for index, challenges in enumerate([("scale_change", "rotation"), ("aspect_change", "motion_blur", "clutter"),
                                        ("camera_motion", "distractor", "motion_abrupt")]):
        plan, frames = render(challenges, frames=12, index=index)
        _, bare = render(challenges, frames=12, index=index, with_target=False)
        check_boxes(frames)
        for frame, background in zip(frames, bare):
            diff = np.abs(frame.image.astype(int) - background.image.astype(int)).max(axis=2)
            x, y, w, h = frame.box.astype(int)
            near = np.zeros_like(diff, bool)
            near[max(y - 1, 0):y + h + 1, max(x - 1, 0):x + w + 1] = True
            assert diff[~near].max(initial=0) <= 26  # outside the box the target's opacity is below 10 %
            rows, cols = np.flatnonzero((diff > 2).any(axis=1)), np.flatnonzero((diff > 2).any(axis=0))
            drawn = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
            assert np.abs(np.subtract(drawn, (x, y, x + w, y + h))).max() <= 2, (challenges, drawn, frame.box)


def test_cover_scale():
    assert [cover_label(f) for f in (0.0, 0.019, 0.02, 0.15, 0.16, 0.45, 0.9, 0.95, 1.0)] == [0, 0, 1, 1, 2, 3, 6, 7, 8]


def test_cli_micro_data_set_reads_back(tmp_path):
    help_text = subprocess.run([sys.executable, "tools/make_dataset.py", "--help"], cwd=ROOT, check=True,
                               capture_output=True, text=True).stdout
    for flag in ("--out", "--split", "--sequences", "--frames", "--seed", "--size", "--workers"):
        assert flag in help_text
    run = subprocess.run([sys.executable, "tools/make_dataset.py", "--out", str(tmp_path), "--split", "test",
                          "--sequences", "2", "--frames", "5", "--seed", "1", "--size", "96x64", "--workers", "1"],
                         cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    seqs = open_dataset("got10k", tmp_path, "test")
    assert [s.name for s in seqs] == ["test_000001", "test_000002"]
    for seq in seqs:
        assert len(seq) == 5 and seq.load_frame(4).shape == (64, 96, 3)
        assert seq.attributes["resolution"] == "(96, 64)" and seq.attributes["challenges"]
        assert np.isfinite(seq.boxes).all() and seq.visible[0] and seq.cover[0] == 8
        assert (seq.visible == (seq.cover > 0)).all()
    bad = subprocess.run([sys.executable, "tools/make_dataset.py", "--out", str(tmp_path), "--split", "test",
                          "--size", "96by64"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "WIDTHxHEIGHT" in bad.stderr


def test_ensure_dataset_reuses_a_complete_generation(tmp_path, monkeypatch):
    root = ensure_dataset(tmp_path, "val", workers=1, **MICRO)
    before = tree(root / "val")
    monkeypatch.setattr(synthetic, "generate_dataset", lambda *a, **k: pytest.fail("regenerated"))
    assert ensure_dataset(tmp_path, "val", workers=1, **MICRO) == tmp_path
    monkeypatch.undo()
    ensure_dataset(tmp_path, "val", workers=1, **{**MICRO, "frames": 4})
    assert len(open_dataset("got10k", tmp_path, "val")[0]) == 4 and tree(root / "val") != before


def test_a_split_made_with_other_image_libraries_is_reused_with_a_warning(tmp_path, monkeypatch, caplog):
    ensure_dataset(tmp_path, "val", workers=1, **MICRO)
    marker = tmp_path / "val" / synthetic.MARKER
    recorded = json.loads(marker.read_text())
    assert recorded["libraries"] == synthetic.image_libraries() and recorded["libraries"]["opencv"] == cv2.__version__
    monkeypatch.setattr(synthetic, "generate_dataset", lambda *a, **k: pytest.fail("regenerated"))
    ensure_dataset(tmp_path, "val", workers=1, **MICRO)
    assert not caplog.records
    marker.write_text(json.dumps({**recorded, "libraries": {**recorded["libraries"], "opencv": "4.0.0"}}))
    with caplog.at_level("WARNING", logger=synthetic.__name__):
        ensure_dataset(tmp_path, "val", workers=1, **MICRO)
    assert "'opencv': '4.0.0'" in caplog.text and str(tmp_path / "val") in caplog.text


def test_interrupted_generation_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    real = synthetic._write_sequence

    def fail_on_second(job):
        if job[3] == 1:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(synthetic, "_write_sequence", fail_on_second)
    with pytest.raises(KeyboardInterrupt):
        ensure_dataset(tmp_path, "train", workers=1, **MICRO)
    assert [p.name for p in tmp_path.iterdir()] == [".train.lock"]  # the generation lock's file, nothing else
    monkeypatch.undo()
    ensure_dataset(tmp_path, "train", workers=1, **MICRO)
    complete = tree(tmp_path)
    monkeypatch.setattr(synthetic, "_write_sequence", fail_on_second)
    with pytest.raises(KeyboardInterrupt):  # a failed regeneration keeps the old complete split
        ensure_dataset(tmp_path, "train", workers=1, **{**MICRO, "seed": 9})
    assert tree(tmp_path) == complete


def test_refuses_to_replace_a_foreign_folder_and_bad_parameters(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="not written by this generator"):
        generate_dataset(tmp_path, "train", workers=1, **MICRO)
    with pytest.raises(ValueError, match="unknown split 'holdout'"):
        generate_dataset(tmp_path, "holdout", workers=1, **MICRO)
    with pytest.raises(ValueError, match="at least 32x32"):
        generate_dataset(tmp_path, "val", 1, 2, 0, size=(16, 16), workers=1)
