"""Readers of the standard layouts, on tiny fixture directories written by the tests themselves."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from lighttrack_nas.data import DataError, open_dataset

BOXES = [(1, 2, 10, 12), (2, 3, 10, 11), (3, 4, 9, 11)]


def write_frames(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    image = np.zeros((32, 32, 3), np.uint8)
    image[..., 2] = 255  # red in OpenCV's BGR order
    for name in names:
        cv2.imwrite(str(folder / name), image)


def write_rows(path: Path, rows, sep: str = ",") -> None:
    path.write_text("".join(sep.join(str(v) for v in row) + "\n" for row in rows))


def numbered(count: int, width: int, start: int = 1) -> list[str]:
    return [f"{i:0{width}d}.jpg" for i in range(start, start + count)]


def got10k_sequence(root: Path, split: str, name: str, rows=BOXES, labels: bool = True) -> Path:
    seq = root / split / name
    write_frames(seq, numbered(3, 8))
    write_rows(seq / "groundtruth.txt", rows)
    if labels:
        (seq / "absence.label").write_text("0\n1\n0\n")
        (seq / "cover.label").write_text("8\n0\n0\n")
        (seq / "meta_info.ini").write_text("[METAINFO]\nresolution: (32, 32)\nobject_class: cat\n")
    with open(root / split / "list.txt", "a") as listing:
        listing.write(name + "\n")
    return seq


def test_got10k_boxes_labels_and_meta(tmp_path):
    got10k_sequence(tmp_path, "train", "GOT-10k_Train_000001")
    (seq,) = open_dataset("got10k", tmp_path, "train")
    assert seq.name == "GOT-10k_Train_000001" and len(seq) == 3
    np.testing.assert_array_equal(seq.boxes, BOXES)
    assert seq.visible.tolist() == [True, False, False]  # absent, then cover 0
    assert seq.cover.tolist() == [8, 0, 0]
    assert seq.attributes == {"resolution": "(32, 32)", "object_class": "cat"}
    image = seq.load_frame(0)
    assert image.shape == (32, 32, 3) and image[0, 0, 0] > 240 and image[0, 0, 1:].max() < 15  # RGB


def test_got10k_test_split_has_only_the_first_box(tmp_path):
    got10k_sequence(tmp_path, "test", "GOT-10k_Test_000001", rows=BOXES[:1], labels=False)
    (seq,) = open_dataset("GOT-10k", tmp_path, "test")
    np.testing.assert_array_equal(seq.boxes[0], BOXES[0])
    assert np.isnan(seq.boxes[1:]).all()
    assert seq.visible.tolist() == [True, False, False] and seq.cover is None


def test_got10k_first_row_only_is_an_error_outside_the_test_split(tmp_path):
    got10k_sequence(tmp_path, "val", "a", rows=BOXES[:1])
    with pytest.raises(DataError, match=r"groundtruth.txt: 1 annotation rows but 3 frames in .*a"):
        open_dataset("got10k", tmp_path, "val")


def test_malformed_box_line_names_file_and_line(tmp_path):
    seq = got10k_sequence(tmp_path, "train", "a")
    (seq / "groundtruth.txt").write_text("1,2,3,4\n5,6,7,8\na,b\n")
    with pytest.raises(DataError, match=r"groundtruth.txt line 3: expected 4 numbers, got 'a,b'"):
        open_dataset("got10k", tmp_path, "train")
    (seq / "groundtruth.txt").write_text("1,2,3,4\n\n5,6,7,8\n")
    with pytest.raises(DataError, match=r"groundtruth.txt line 2: expected 4 numbers, got ''"):
        open_dataset("got10k", tmp_path, "train")


def test_bad_label_and_meta_lines_are_named(tmp_path):
    seq = got10k_sequence(tmp_path, "train", "a")
    (seq / "cover.label").write_text("8\nx\n8\n")
    with pytest.raises(DataError, match=r"cover.label line 2: expected an integer label, got 'x'"):
        open_dataset("got10k", tmp_path, "train")
    (seq / "cover.label").write_text("8\n8\n")
    with pytest.raises(DataError, match=r"cover.label: 2 labels but 3 frames"):
        open_dataset("got10k", tmp_path, "train")
    (seq / "cover.label").write_text("8\n8\n8\n")
    (seq / "meta_info.ini").write_text("[METAINFO]\nno colon here\n")
    with pytest.raises(DataError, match=r"meta_info.ini line 2: expected 'key: value'"):
        open_dataset("got10k", tmp_path, "train")


def test_missing_files_are_named(tmp_path):
    seq = got10k_sequence(tmp_path, "train", "a")
    (seq / "00000002.jpg").unlink()
    with pytest.raises(DataError, match=r"00000002.jpg: missing frame file"):
        open_dataset("got10k", tmp_path, "train")
    write_frames(seq, ["00000002.jpg"])
    (seq / "groundtruth.txt").unlink()
    with pytest.raises(DataError, match=r"groundtruth.txt: annotation file not found"):
        open_dataset("got10k", tmp_path, "train")
    with open(tmp_path / "train" / "list.txt", "a") as listing:
        listing.write("\nghost\n")
    write_rows(seq / "groundtruth.txt", BOXES)
    with pytest.raises(DataError, match=r"list.txt line 3: sequence folder .*ghost not found"):
        open_dataset("got10k", tmp_path, "train")


def test_frame_count_disagreeing_with_annotations_names_both(tmp_path):
    seq = got10k_sequence(tmp_path, "train", "a")
    write_frames(seq, ["00000004.jpg"])
    with pytest.raises(DataError, match=r"groundtruth.txt: 3 annotation rows but 4 frames in .*a$"):
        open_dataset("got10k", tmp_path, "train")


def test_unknown_data_set_root_and_split(tmp_path):
    with pytest.raises(DataError, match="choose one of: got10k, lasot, otb, trackingnet, vot"):
        open_dataset("imagenet-vid", tmp_path)
    with pytest.raises(DataError, match="data set root not found"):
        open_dataset("otb", tmp_path / "nowhere")
    got10k_sequence(tmp_path, "val", "a")
    with pytest.raises(DataError, match="got10k needs a split; folders found: val"):
        open_dataset("got10k", tmp_path)
    with pytest.raises(DataError, match="got10k has no split 'train'"):
        open_dataset("got10k", tmp_path, "train")


def lasot_sequence(root: Path, name: str) -> Path:
    seq = root / name.rsplit("-", 1)[0] / name
    write_frames(seq / "img", numbered(3, 8))
    write_rows(seq / "groundtruth.txt", BOXES)
    (seq / "full_occlusion.txt").write_text("0,1,0")
    (seq / "out_of_view.txt").write_text("0,0,1\n")
    (seq / "nlp.txt").write_text("white airplane landing\n")
    return seq


def test_lasot_visibility_from_occlusion_and_out_of_view(tmp_path):
    lasot_sequence(tmp_path, "airplane-1")
    lasot_sequence(tmp_path, "airplane-10")
    lasot_sequence(tmp_path, "airplane-2")
    seqs = open_dataset("lasot", tmp_path)
    assert [s.name for s in seqs] == ["airplane-1", "airplane-2", "airplane-10"]
    np.testing.assert_array_equal(seqs[0].boxes, BOXES)
    assert seqs[0].visible.tolist() == [True, False, False]
    assert seqs[0].attributes == {"class": "airplane", "nlp": "white airplane landing"}
    listing = tmp_path / "testing_set.txt"
    listing.write_text("airplane-2\n")
    assert [s.name for s in open_dataset("lasot", tmp_path, str(listing))] == ["airplane-2"]
    listing.write_text("airplane-2\nairplane-3\n")
    with pytest.raises(DataError, match=r"testing_set.txt line 2: sequence folder .*airplane-3 not found"):
        open_dataset("lasot", tmp_path, str(listing))


def test_lasot_bad_flag_and_missing_flag_file(tmp_path):
    seq = lasot_sequence(tmp_path, "bird-1")
    (seq / "out_of_view.txt").write_text("0,?,1")
    with pytest.raises(DataError, match=r"out_of_view.txt value 2: expected an integer label, got '\?'"):
        open_dataset("lasot", tmp_path)
    (seq / "out_of_view.txt").unlink()
    with pytest.raises(DataError, match=r"out_of_view.txt: annotation file not found"):
        open_dataset("lasot", tmp_path)


@pytest.mark.parametrize("sep", [",", " ", "\t", ", "])
def test_otb_comma_or_whitespace_delimiters(tmp_path, sep):
    seq = tmp_path / "Basketball"
    write_frames(seq / "img", numbered(3, 4))
    write_rows(seq / "groundtruth_rect.txt", BOXES, sep)
    (seq_read,) = open_dataset("otb", tmp_path)
    assert seq_read.name == "Basketball" and seq_read.frames[0].name == "0001.jpg"
    np.testing.assert_array_equal(seq_read.boxes, BOXES)
    assert seq_read.visible.all() and seq_read.cover is None


def test_otb_numbered_annotations_and_empty_boxes(tmp_path):
    seq = tmp_path / "Jogging"
    write_frames(seq / "img", numbered(3, 4))
    write_rows(seq / "groundtruth_rect.1.txt", BOXES)
    write_rows(seq / "groundtruth_rect.2.txt", [BOXES[0], (0, 0, 0, 0), BOXES[2]], "\t")
    seqs = open_dataset("otb", tmp_path)
    assert [s.name for s in seqs] == ["Jogging-1", "Jogging-2"]
    assert seqs[1].visible.tolist() == [True, False, True]
    write_rows(seq / "groundtruth_rect.2.txt", [BOXES[0], (1, 2, 3), BOXES[2]])
    with pytest.raises(DataError, match=r"groundtruth_rect.2.txt line 2: expected 4 numbers, got '1,2,3'"):
        open_dataset("otb", tmp_path)


def test_trackingnet_natural_frame_order_and_test_split(tmp_path):
    rows = [(i, i, 5, 5) for i in range(12)]
    write_frames(tmp_path / "TRAIN_0" / "frames" / "vid_a", [f"{i}.jpg" for i in range(12)])
    (tmp_path / "TRAIN_0" / "anno").mkdir()
    write_rows(tmp_path / "TRAIN_0" / "anno" / "vid_a.txt", rows)
    (seq,) = open_dataset("trackingnet", tmp_path, "TRAIN_0")
    assert [f.name for f in seq.frames[9:]] == ["9.jpg", "10.jpg", "11.jpg"]
    np.testing.assert_array_equal(seq.boxes, rows)
    write_frames(tmp_path / "TEST" / "frames" / "vid_b", [f"{i}.jpg" for i in range(3)])
    (tmp_path / "TEST" / "anno").mkdir()
    write_rows(tmp_path / "TEST" / "anno" / "vid_b.txt", rows[:1])
    (seq,) = open_dataset("trackingnet", tmp_path, "TEST")
    assert np.isnan(seq.boxes[1:]).all() and seq.visible.tolist() == [True, False, False]
    (tmp_path / "TRAIN_0" / "frames" / "vid_a" / "4.jpg").unlink()
    with pytest.raises(DataError, match=r"vid_a/4.jpg: missing frame file"):
        open_dataset("trackingnet", tmp_path, "TRAIN_0")


def test_vot_rectangles_polygons_and_both_frame_folders(tmp_path):
    write_frames(tmp_path / "ball" / "color", numbered(3, 8))
    write_rows(tmp_path / "ball" / "groundtruth.txt", [BOXES[0], (10, 5, 20, 5, 20, 15, 10, 15), BOXES[2]])
    write_frames(tmp_path / "car", numbered(3, 8))
    write_rows(tmp_path / "car" / "groundtruth.txt", BOXES)
    (tmp_path / "list.txt").write_text("ball\ncar\n")
    ball, car = open_dataset("vot", tmp_path)
    np.testing.assert_array_equal(ball.boxes[1], (10, 5, 10, 10))
    assert ball.frames[0].parent.name == "color" and car.frames[0].parent.name == "car"
    np.testing.assert_array_equal(car.boxes, BOXES)
    write_rows(tmp_path / "car" / "groundtruth.txt", [BOXES[0], (1, 2, 3, 4, 5, 6), BOXES[2]])
    with pytest.raises(DataError, match=r"car/groundtruth.txt line 2: expected 4 or 8 numbers"):
        open_dataset("vot", tmp_path)
    (tmp_path / "list.txt").unlink()
    with pytest.raises(DataError, match=r"list.txt: sequence list not found"):
        open_dataset("vot", tmp_path)
