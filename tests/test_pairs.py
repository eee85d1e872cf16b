"""Training pairs: determinism per (seed, index), DataLoader workers, boxes, unreadable frames."""
import logging

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from lighttrack_nas.config import ConfigError
from lighttrack_nas.data.crop import IMAGENET_MEAN, IMAGENET_STD
from lighttrack_nas.data.pairs import PairDataset, valid_frames
from lighttrack_nas.data.sequence import DataError, Sequence

NO_PHOTOMETRIC = {"color": 0.0, "blur": 0.0, "gray": 0.0}


def _write_sequence(folder, name, frames=6, size=(120, 90), seed=0):
    """A white rectangle drifting over a dark noisy background, as jpg frames."""
    rng = np.random.default_rng(seed)
    d = folder / name
    d.mkdir(parents=True)
    paths, boxes = [], []
    for i in range(frames):
        image = rng.integers(0, 40, size=(size[1], size[0], 3), dtype=np.uint8)
        x, y, w, h = 30 + 3 * i, 25 + 2 * i, 24, 16
        image[y:y + h, x:x + w] = 255
        path = d / f"{i + 1:08d}.jpg"
        cv2.imwrite(str(path), image)
        paths.append(path)
        boxes.append([x, y, w, h])
    return Sequence(name, paths, np.array(boxes, float), np.ones(frames, bool))


@pytest.fixture()
def sequences(tmp_path):
    return [_write_sequence(tmp_path, f"seq{k}", seed=k) for k in range(3)]


def _dataset(sequences, **kw):
    args = dict(template_size=32, search_size=64, samples_per_epoch=16, max_gap=3, seed=7)
    args.update(kw)
    return PairDataset(sequences, **args)


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_item_shapes_and_determinism(sequences):
    ds = _dataset(sequences)
    item = ds[3]
    assert item["template"].shape == (3, 32, 32) and item["search"].shape == (3, 64, 64)
    assert item["search_box"].shape == (4,) and item["template"].dtype == torch.float32
    assert _equal(item, ds[3]) and _equal(item, _dataset(sequences)[3])
    assert not _equal(item, ds[4])
    assert not _equal(item, _dataset(sequences, seed=8)[3])


def test_dataloader_workers_match_single_process(sequences):
    ds = _dataset(sequences)
    single = list(DataLoader(ds, batch_size=4, num_workers=0))
    multi = list(DataLoader(ds, batch_size=4, num_workers=2))
    assert len(single) == len(multi) == 4
    assert all(_equal(a, b) for a, b in zip(single, multi))


def test_search_box_without_augmentation_is_centred(sequences):
    aug = {"template_shift": 0, "template_scale": 0, "search_shift": 0, "search_scale": 0, **NO_PHOTOMETRIC}
    box = _dataset(sequences, augmentation=aug)[0]["search_box"].numpy()
    # target 24x16: s_z = sqrt(44 * 36), search side 2 s_z -> 64 px, so w = 24 * 32 / s_z
    s_z = np.sqrt(44 * 36)
    assert np.allclose((box[:2] + box[2:]) / 2, 32, atol=1e-4)
    assert np.allclose(box[2:] - box[:2], np.array([24, 16]) * 32 / s_z, atol=1e-4)


def test_search_box_matches_pixels_under_shift_and_scale(sequences):
    ds = _dataset(sequences, augmentation=NO_PHOTOMETRIC)
    mean = np.array(IMAGENET_MEAN)[:, None, None]
    std = np.array(IMAGENET_STD)[:, None, None]
    centres = []
    for index in range(8):
        item = ds[index]
        search = (item["search"].numpy() * std + mean) * 255
        ys, xs = np.nonzero(search.mean(axis=0) > 150)
        x1, y1, x2, y2 = item["search_box"].numpy()
        assert abs(xs.min() - x1) <= 1.5 and abs(ys.min() - y1) <= 1.5
        assert abs(xs.max() + 1 - x2) <= 1.5 and abs(ys.max() + 1 - y2) <= 1.5
        centres.append([(x1 + x2) / 2, (y1 + y2) / 2])
    shift = 64 * 64 / 256                          # 64 px at a 256 crop, scaled to the 64 px crop
    offsets = np.abs(np.array(centres) - 32)
    assert offsets.max() <= shift + 1e-6 and offsets.max() > 1


def test_only_visible_frames_are_used(sequences):
    seq = sequences[0]
    seq.visible[:2] = False
    seq.boxes[3] = np.nan
    seq.boxes[4, 2] = 1.0                           # too thin
    assert valid_frames(seq).tolist() == [2, 5]
    seq.visible[5] = False
    assert valid_frames(seq).tolist() == [2]
    ds = _dataset([seq], augmentation={"search_shift": 0, "search_scale": 0, **NO_PHOTOMETRIC})
    s_z = np.sqrt(44 * 36)
    for index in range(4):
        box = ds[index]["search_box"].numpy()
        assert np.allclose(box[2:] - box[:2], np.array([24, 16]) * 32 / s_z, atol=1e-4)
    seq.visible[:] = False
    with pytest.raises(DataError, match="visible"):
        _dataset([seq])


def test_unreadable_frames_are_skipped_and_counted(sequences, caplog):
    bad = sequences[1]
    bad.frames[2].write_bytes(b"not a jpeg")
    bad.frames[3].unlink()
    ds = _dataset(sequences, samples_per_epoch=40)
    with caplog.at_level(logging.WARNING, logger="lighttrack_nas.data.pairs"):
        items = [ds[i] for i in range(40)]
    assert ds.skipped > 0
    assert sum(int(item["skipped"]) for item in items) == ds.skipped
    assert str(bad.frames[2]) in caplog.text or str(bad.frames[3]) in caplog.text
    assert _equal(items[5], ds[5])                  # still deterministic
    batches = list(DataLoader(ds, batch_size=8, num_workers=2))
    assert int(sum(b["skipped"].sum() for b in batches)) == sum(int(item["skipped"]) for item in items)


def test_all_frames_unreadable_raises_after_capped_attempts(sequences):
    for path in sequences[0].frames:
        path.unlink()
    ds = _dataset(sequences[:1], max_attempts=5)
    with pytest.raises(DataError, match="5 pairs in a row"):
        ds[0]
    assert ds.skipped == 5


def test_grayscale_files_and_unknown_augmentation_key(sequences):
    seq = sequences[0]
    for path in seq.frames:
        cv2.imwrite(str(path), cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))
    item = _dataset([seq])[0]
    assert item["search"].shape == (3, 64, 64)
    with pytest.raises(ConfigError, match="colour"):
        _dataset([seq], augmentation={"colour": 0.5})


def test_search_scale_sets_the_range_of_target_sizes_and_bad_values_are_named(sequences):
    fixed = {"template_shift": 0, "template_scale": 0, "search_shift": 0, **NO_PHOTOMETRIC}
    usual = 24 * 32 / np.sqrt(44 * 36)                # the target's width in the 64 px crop without jitter

    def widths(scale):
        ds = _dataset(sequences, samples_per_epoch=200, augmentation={**fixed, "search_scale": scale})
        return np.array([float(ds[i]["search_box"][2] - ds[i]["search_box"][0]) for i in range(200)]) / usual

    for scale in (0.1, 0.4):                        # crop side times 1 + U(-s, s): the target's size over it
        w = widths(scale)
        assert w.min() > 1 / (1 + scale) - 1e-4 and w.max() < 1 / (1 - scale) + 1e-4
        assert w.min() < 1 / (1 + 0.8 * scale) and w.max() > 1 / (1 - 0.8 * scale)
    with pytest.raises(ConfigError, match=r"search_scale must be a number in \[0, 1\) \(crop side"):
        _dataset(sequences, augmentation={"search_scale": 1.0})
    with pytest.raises(ConfigError, match=r"gray must be a number in \[0, 1\] \(a probability\)"):
        _dataset(sequences, augmentation={"gray": -0.1})
    with pytest.raises(ConfigError, match="search_shift must be a number, got '40px'"):
        _dataset(sequences, augmentation={"search_shift": "40px"})
