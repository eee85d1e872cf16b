"""Tracker runtime with fake models: following a moving square, update maths, robustness, config."""
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from lighttrack_nas.config import ConfigError
from lighttrack_nas.data.crop import IMAGENET_MEAN, IMAGENET_STD, grid_points
from lighttrack_nas.data.sequence import Sequence
from lighttrack_nas.tracker import Tracker, TrackerConfig

ROOT = Path(__file__).resolve().parents[1]


class SquareModel(nn.Module):
    """Finds the bright square in the search crop: cls peaks at its centre, reg gives its exact l,t,r,b."""

    def __init__(self, template_size=64, search_size=128, stride=16):
        super().__init__()
        self.template_size, self.search_size, self.stride = template_size, search_size, stride
        self.score_size = search_size // stride
        self.templates = 0
        points = torch.from_numpy(grid_points(search_size, self.score_size, stride)).float()
        self.px, self.py = points.view(1, -1), points.view(-1, 1)

    def template(self, z):
        assert z.shape == (1, 3, self.template_size, self.template_size)
        self.templates += 1

    def track(self, x):
        assert x.shape == (1, 3, self.search_size, self.search_size)
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        bright = ((x[0] * std + mean) * 255).mean(0) > 128
        ys, xs = torch.nonzero(bright, as_tuple=True)
        n = self.score_size
        if len(xs) == 0:
            return torch.full((1, 1, n, n), -5.0), torch.zeros(1, 4, n, n)
        x1, y1, x2, y2 = xs.min().float(), ys.min().float(), xs.max() + 1.0, ys.max() + 1.0
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        cls = 4.0 - ((self.px - cx).abs() + (self.py - cy).abs()) / self.stride
        reg = torch.stack([(self.px - x1).expand(n, n), (self.py - y1).expand(n, n),
                           (x2 - self.px).expand(n, n), (y2 - self.py).expand(n, n)])
        return cls.view(1, 1, n, n), reg.unsqueeze(0)


class FixedModel(nn.Module):
    """Constant outputs, for hand-checking one update."""

    def __init__(self, cls, reg, template_size=64, search_size=128, stride=16):
        super().__init__()
        self.template_size, self.search_size, self.stride = template_size, search_size, stride
        self.score_size = search_size // stride
        self.cls, self.reg = cls, reg

    def template(self, z):
        pass

    def track(self, x):
        return self.cls, self.reg


def _frame(box, size=(160, 120), gray=False):
    image = np.zeros((size[1], size[0], 3), np.uint8)
    x, y, w, h = (int(round(v)) for v in box)
    image[max(y, 0):max(y + h, 0), max(x, 0):max(x + w, 0)] = 255
    return image[..., 0] if gray else image


def _iou(a, b):
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _truth(i):
    return [40 + 5 * i, 30 + 3 * i, 20, 20]


@pytest.mark.parametrize("gray", [False, True])
@pytest.mark.parametrize("stride", [16, 8])
def test_follows_a_moving_square(gray, stride):
    model = SquareModel(stride=stride)
    tracker = Tracker(model)
    tracker.init(_frame(_truth(0), gray=gray), _truth(0))
    for i in range(1, 9):
        box, score = tracker.update(_frame(_truth(i), gray=gray))
        assert _iou(box, _truth(i)) > 0.9, (i, box)
        assert 0.0 < score <= 1.0
    assert model.templates == 1
    assert tracker.timing.frames == 8 and tracker.timing.network > 0


def test_track_sequence_from_files(tmp_path):
    paths, boxes = [], []
    for i in range(6):
        path = tmp_path / f"{i + 1:08d}.jpg"
        cv2.imwrite(str(path), _frame(_truth(i)))
        paths.append(path)
        boxes.append(_truth(i))
    seq = Sequence("square", paths, np.array(boxes, float), np.ones(6, bool))
    tracker = Tracker(SquareModel())
    out, times = tracker.track_sequence(seq)
    assert out.shape == (6, 4) and times.shape == (6,) and np.all(times > 0)
    assert np.array_equal(out[0], seq.boxes[0])
    assert all(_iou(out[i], boxes[i]) > 0.9 for i in range(6))
    ms = tracker.timing.per_frame_ms()
    assert set(ms) == {"preprocess", "network", "postprocess"} and tracker.timing.frames == 5


def test_one_update_by_hand():
    cfg = TrackerConfig(penalty_k=0.062, window_influence=0.0, lr=0.765)
    n = 8                                        # 128 crop, stride 16, points 8 + 16 j
    cls = torch.zeros(1, 1, n, n)
    cls[0, 0, 2, 5] = 10.0                       # best cell: point (x=88, y=40)
    box = np.array([100.0, 50.0, 40.0, 20.0])    # centre (120, 60)
    s_z = math.sqrt(70 * 50)                     # p = 30
    scale = 128 / (2 * s_z)                      # crop px per image px of the search crop
    half_w, half_h = 40 * scale, 20 * scale      # predicted box twice the current size
    reg = torch.tensor([half_w, half_h, half_w, half_h], dtype=torch.float32).view(1, 4, 1, 1).expand(1, 4, n, n)
    tracker = Tracker(FixedModel(cls, reg.clone()), cfg)
    tracker.init(np.zeros((200, 300, 3), np.uint8), box)
    out, score = tracker.update(np.zeros((200, 300, 3), np.uint8))
    sigmoid = 1 / (1 + math.exp(-10.0))
    penalty = math.exp(-(2.0 - 1.0) * 0.062)     # r_c = 1, s_c = 2
    lr = penalty * sigmoid * 0.765
    size = np.array([40.0, 20.0]) * (1 - lr) + np.array([80.0, 40.0]) * lr
    centre = np.array([120 + (88 - 64) / scale, 60 + (40 - 64) / scale])
    assert score == pytest.approx(sigmoid)
    assert np.allclose(out, np.concatenate([centre - size / 2, size]), atol=1e-4)


def test_window_picks_the_centre_on_flat_scores():
    n = 8
    tracker = Tracker(FixedModel(torch.zeros(1, 1, n, n), torch.full((1, 4, n, n), 10.0)))
    tracker.init(np.zeros((100, 100, 3), np.uint8), [40, 40, 20, 20])
    box, _ = tracker.update(np.zeros((100, 100, 3), np.uint8))
    # hanning peak cells are 3 and 4 (points 56 and 72, symmetric about 64); argmax takes (3, 3)
    s_x = 2 * math.sqrt(40 * 40)
    assert np.allclose(box[:2] + box[2:] / 2, 50 + (56 - 64) * s_x / 128)


def test_border_tiny_and_huge_targets_do_not_crash():
    tracker = Tracker(SquareModel())
    # the square leaves the image to the right
    tracker.init(_frame([120, 50, 20, 20]), [120, 50, 20, 20])
    for i in range(1, 8):
        box, _ = tracker.update(_frame([120 + 8 * i, 50, 20, 20]))
        cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
        assert np.isfinite(box).all() and 0 <= cx <= 160 and 0 <= cy <= 120
        assert 10 <= box[2] <= 160 and 10 <= box[3] <= 120
    # a 2x2 target: sizes are clamped to min_size after the first update
    tracker.init(_frame([70, 50, 2, 2]), [70, 50, 2, 2])
    box, _ = tracker.update(_frame([71, 50, 2, 2]))
    assert box[2] >= 10 and box[3] >= 10
    # a box larger than the image
    tracker.init(_frame([0, 0, 160, 120]), [-50, -50, 300, 250])
    box, _ = tracker.update(_frame([0, 0, 160, 120], gray=True))
    assert np.isfinite(box).all() and box[2] <= 160 and box[3] <= 120


def test_init_validation():
    tracker = Tracker(SquareModel())
    with pytest.raises(RuntimeError, match="init"):
        tracker.update(_frame(_truth(0)))
    with pytest.raises(ValueError, match="init box"):
        tracker.init(_frame(_truth(0)), [1, 2, float("nan"), 4])
    with pytest.raises(ValueError, match="init box"):
        tracker.init(_frame(_truth(0)), [1, 2, 0, 4])


def test_config_yaml_defaults_and_errors(tmp_path):
    # the shipped file: LightTrack's defaults except the size update rate tuned on the generated data
    assert TrackerConfig.from_yaml(ROOT / "experiments" / "tracker.yaml") == TrackerConfig(lr=0.2)
    bad = tmp_path / "bad.yaml"
    bad.write_text("penalty_k: 0.007\nwindow_influnce: 0.2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*window_influnce"):
        TrackerConfig.from_yaml(bad)
    with pytest.raises(ConfigError, match="lr must be a number, got"):
        TrackerConfig.from_dict({"lr": "fast"})
    assert TrackerConfig.from_dict({"penalty_k": 0.007, "window_influence": 0.225, "lr": 0.616}).lr == 0.616


def test_tools_test_writes_got10k_and_otb_results(tmp_path, monkeypatch):
    import importlib.util

    import lighttrack_nas.models

    split = tmp_path / "data" / "val"
    for name, shift in (("seq_a", 0), ("seq_b", 7)):
        folder = split / name
        folder.mkdir(parents=True)
        boxes = [[b[0] + shift, b[1], b[2], b[3]] for b in (_truth(i) for i in range(5))]
        for i, box in enumerate(boxes):
            cv2.imwrite(str(folder / f"{i + 1:08d}.jpg"), _frame(box))
        (folder / "groundtruth.txt").write_text("".join(",".join(map(str, b)) + "\n" for b in boxes))
    (split / "list.txt").write_text("seq_a\nseq_b\n")
    calls = []
    monkeypatch.setattr(lighttrack_nas.models, "load_tracking_model",
                        lambda checkpoint, arch, space: calls.append((checkpoint, arch, space)) or SquareModel())
    spec = importlib.util.spec_from_file_location("tools_test", ROOT / "tools" / "test.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    base = ["test.py", "--checkpoint", "ckpt.pt", "--arch", "ARCH", "--dataset", "got10k",
            "--root", str(tmp_path / "data"), "--split", "val", "--out", str(tmp_path / "results")]
    monkeypatch.setattr("sys.argv", base + ["--name", "square"])
    assert tool.main() == 0
    # with a checkpoint and no --space, the checkpoint's own space (with its space_settings) is used
    assert calls[0] == ("ckpt.pt", "ARCH", None)
    rows = (tmp_path / "results" / "square" / "seq_b" / "seq_b_001.txt").read_text().splitlines()
    assert len(rows) == 5 and rows[0] == "47.000,30.000,20.000,20.000"
    boxes = np.array([[float(v) for v in r.split(",")] for r in rows])
    assert all(_iou(boxes[i], [_truth(i)[0] + 7, *_truth(i)[1:]]) > 0.9 for i in range(5))
    assert len((tmp_path / "results" / "square" / "seq_b" / "seq_b_time.txt").read_text().split()) == 5
    monkeypatch.setattr("sys.argv", base + ["--name", "square_otb", "--format", "otb", "--sequences", "1"])
    assert tool.main() == 0
    assert sorted(p.name for p in (tmp_path / "results" / "square_otb").iterdir()) == ["seq_a.txt", "seq_a_time.txt"]
