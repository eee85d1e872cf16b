"""The tracker runtime: LightTrack inference for any model with ``template``/``track``.

Per frame: a search crop around the previous target (side ``s_x``), classification scores
(sigmoid), one box per score cell from the regressed l, t, r, b at the cell's grid point, a
scale/ratio change penalty, a cosine window, the best cell, and a smoothed size update.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import Field, check_section, load_yaml
from ..data.crop import CropWindow, crop, grid_points, search_window, template_window, to_tensor
from ..data.sequence import DataError, Sequence


TRACKER_BOUNDS = {"window_influence": Field(low=0, high=1), "min_size": Field(low=0, low_open=True),
                  "context_amount": Field(low=0)}


@dataclass
class TrackerConfig:
    """Inference hyper-parameters (LightTrack defaults; VOT-2019 tuned: 0.007 / 0.225 / 0.616)."""

    penalty_k: float = 0.062
    window_influence: float = 0.38
    lr: float = 0.765
    context_amount: float = 0.5
    min_size: float = 10.0

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, where: str = "tracker config") -> "TrackerConfig":
        """Build from a mapping; unknown keys or ill-typed values raise ConfigError naming them."""
        data = dict(data or {})
        check_section(data, {**{f.name: Field() for f in fields(cls)}, **TRACKER_BOUNDS}, where)
        return cls(**{key: float(value) for key, value in data.items()})

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrackerConfig":
        """Read a YAML mapping of the fields above (``yaml.safe_load``)."""
        return cls.from_dict(load_yaml(path), str(path))

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def tracker_settings(cfg: dict[str, Any], override: str | None = None) -> dict[str, float]:
    """Tracker hyper-parameters: ``override`` (a YAML path), else the experiment's ``tracker:``
    (a YAML path, already resolved by :func:`~lighttrack_nas.config.load_yaml`, or a mapping), else the defaults."""
    source = override or cfg.get("tracker")
    if source is None:
        return TrackerConfig().to_dict()
    if isinstance(source, dict):
        return TrackerConfig.from_dict(source, "tracker").to_dict()
    return TrackerConfig.from_yaml(source).to_dict()


@dataclass
class Timing:
    """Accumulated seconds per stage of :meth:`Tracker.update` over ``frames`` frames, plus ``init``."""

    preprocess: float = 0.0
    network: float = 0.0
    postprocess: float = 0.0
    init: float = 0.0
    frames: int = 0

    def per_frame_ms(self) -> dict[str, float]:
        """Mean milliseconds per updated frame for each stage."""
        n = max(self.frames, 1)
        return {"preprocess": 1e3 * self.preprocess / n, "network": 1e3 * self.network / n,
                "postprocess": 1e3 * self.postprocess / n}


def _change(r: np.ndarray) -> np.ndarray:
    return np.maximum(r, 1.0 / r)


class Tracker:
    """Single-object tracker around a model with ``template(z)`` and ``track(x) -> (cls, reg)``.

    The model needs int attributes ``template_size``, ``search_size``, ``stride`` and
    ``score_size``; ``cls`` is ``(1, 1, H, W)`` logits and ``reg`` ``(1, 4, H, W)`` l, t, r, b in
    search-crop pixels from each cell's grid point. The model is put in eval mode.
    """

    def __init__(self, model: nn.Module, config: TrackerConfig | None = None):
        self.model = model.eval()
        self.config = config or TrackerConfig()
        self.timing = Timing()
        self._geometry: tuple[int, int, int, int] | None = None
        self.center = np.zeros(2)
        self.size = np.zeros(2)
        self.image_size = np.zeros(2)
        self._initialised = False

    def _prepare(self) -> None:
        """(Re)build the grid points and cosine window when the model's geometry changes."""
        m = self.model
        key = (int(m.template_size), int(m.search_size), int(m.stride), int(m.score_size))
        if key == self._geometry:
            return
        self._geometry = key
        _, search_size, stride, score_size = key
        points = grid_points(search_size, score_size, stride)
        self._px = np.tile(points, score_size)            # x of cell (i, j) at i * W + j
        self._py = np.repeat(points, score_size)
        self._window = np.outer(np.hanning(score_size), np.hanning(score_size)).reshape(-1)
        param = next(iter(m.parameters()), None)
        self._device = param.device if param is not None else torch.device("cpu")

    def reset_timing(self) -> None:
        """Zero the accumulated timing breakdown."""
        self.timing = Timing()

    def init(self, image: np.ndarray, box_xywh: np.ndarray) -> None:
        """Start tracking the target ``x, y, w, h`` in ``image``: crop the template once and cache
        its features in the model."""
        box = np.asarray(box_xywh, dtype=np.float64).reshape(-1)
        if box.shape != (4,) or not np.isfinite(box).all() or box[2] <= 0 or box[3] <= 0:
            raise ValueError(f"init box must be finite x, y, w, h with w, h > 0, got {box_xywh!r}")
        start = time.perf_counter()
        self._prepare()
        img = np.asarray(image)
        self.image_size = np.array([img.shape[1], img.shape[0]], dtype=np.float64)
        self.center = box[:2] + box[2:] / 2.0
        self.size = box[2:].copy()
        window = template_window(box, self.model.template_size, self.config.context_amount)
        with torch.inference_mode():
            self.model.template(to_tensor(crop(img, window)).to(self._device))
        self._initialised = True
        self.timing.init += time.perf_counter() - start

    def update(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Track the target in the next frame; returns the box ``x, y, w, h`` and its score."""
        if not self._initialised:
            raise RuntimeError("call init(image, box) before update(image)")
        cfg, m = self.config, self.model
        t0 = time.perf_counter()
        img = np.asarray(image)
        self.image_size = np.array([img.shape[1], img.shape[0]], dtype=np.float64)
        box = np.concatenate([self.center - self.size / 2.0, self.size])
        window: CropWindow = search_window(box, m.template_size, m.search_size, cfg.context_amount)
        x = to_tensor(crop(img, window)).to(self._device)
        t1 = time.perf_counter()
        with torch.inference_mode():
            cls, reg = m.track(x)
        t2 = time.perf_counter()
        result = self._postprocess(cls, reg, window)
        t3 = time.perf_counter()
        self.timing.preprocess += t1 - t0
        self.timing.network += t2 - t1
        self.timing.postprocess += t3 - t2
        self.timing.frames += 1
        return result

    def _postprocess(self, cls: torch.Tensor, reg: torch.Tensor, window: CropWindow) -> tuple[np.ndarray, float]:
        cfg = self.config
        n = self._px.size
        if cls.shape[-2] * cls.shape[-1] != n or reg.shape[-3] != 4:
            raise ValueError(f"model output cls {tuple(cls.shape)} / reg {tuple(reg.shape)} does not match its "
                             f"score_size {self._geometry[3]}")
        score = torch.sigmoid(cls.float()).reshape(-1).cpu().numpy()
        left, top, right, bottom = reg.float().reshape(4, -1).cpu().numpy().astype(np.float64)
        x1, y1 = self._px - left, self._py - top
        x2, y2 = self._px + right, self._py + bottom
        eps = 1e-6
        pred_w, pred_h = np.maximum(x2 - x1, eps), np.maximum(y2 - y1, eps)
        # change penalty, in crop scale against the current target size
        target_w, target_h = self.size * window.scale
        s_c = _change(_size(pred_w, pred_h) / _size(target_w, target_h))
        r_c = _change((target_w / target_h) / (pred_w / pred_h))
        penalty = np.exp(-(r_c * s_c - 1.0) * cfg.penalty_k)
        pscore = penalty * score * (1.0 - cfg.window_influence) + self._window * cfg.window_influence
        best = int(np.argmax(pscore))
        # back to image pixels
        dx = ((x1[best] + x2[best]) / 2.0 - window.out_size / 2.0) / window.scale
        dy = ((y1[best] + y2[best]) / 2.0 - window.out_size / 2.0) / window.scale
        lr = penalty[best] * score[best] * cfg.lr
        new_size = self.size * (1.0 - lr) + np.array([pred_w[best], pred_h[best]]) / window.scale * lr
        self.center = np.clip(self.center + np.array([dx, dy]), 0.0, self.image_size)
        self.size = np.clip(new_size, cfg.min_size, np.maximum(self.image_size, cfg.min_size))
        return np.concatenate([self.center - self.size / 2.0, self.size]), float(score[best])

    def track_sequence(self, seq: Sequence) -> tuple[np.ndarray, np.ndarray]:
        """Track ``seq`` from its first ground-truth box. Returns boxes ``(N, 4)`` x, y, w, h (row 0
        is the given first box) and seconds per frame ``(N,)`` (row 0: init; frame reading excluded)."""
        first = seq.boxes[0]
        if not (np.isfinite(first).all() and first[2] > 0 and first[3] > 0):
            raise DataError(f"sequence {seq.name!r}: the first frame has no usable box ({first})")
        boxes = np.zeros((len(seq), 4))
        times = np.zeros(len(seq))
        boxes[0] = first
        start = time.perf_counter()
        self.init(seq.load_frame(0), first)
        times[0] = time.perf_counter() - start
        for i in range(1, len(seq)):
            image = seq.load_frame(i)
            start = time.perf_counter()
            boxes[i], _ = self.update(image)
            times[i] = time.perf_counter() - start
        return boxes, times


def _size(w: np.ndarray | float, h: np.ndarray | float) -> np.ndarray:
    """LightTrack's size measure ``sqrt((w + p)(h + p))`` with ``p = (w + h) / 2``."""
    p = (w + h) / 2.0
    return np.sqrt((w + p) * (h + p))
