"""Synthetic tracking sequences cut from real photographs, written in the GOT-10k layout.

Targets, distractors, occluders, clutter and backgrounds are transformed sub-crops of the real
photographs that scikit-image and matplotlib ship (readable offline). Every photograph belongs to
exactly one split (``SOURCE_SPLITS``), so test objects are never seen in training. Backgrounds come
from the split's own photographs and its textures (``SPLIT_BACKGROUNDS``): train and val share three
texture photographs, the test split a photograph of its own, so nothing of the test split (objects
or backgrounds) appears in any other split (``tests/test_synthetic.py`` checks the manifests).

Ground truth is exact: the box is the tight box of every pixel where the target, as pasted, has
an opacity of at least 10 % (anti-aliased edges, thin parts and motion-blur streaks included),
not reduced by occluders, clipped to the image; when the target is entirely outside the image
the row repeats the previous row. ``cover`` is the visible fraction of the target's alpha
(occluders and the image border removed) on GOT-10k's 0..8 scale; below 2 % the target counts as
absent (``absence = 1``, ``cover = 0``). See docs/data.md.

Every sequence is seeded from ``(seed, split, index)`` alone, so output bytes do not depend on
the number of worker processes.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
from tqdm import tqdm

from ..io import locked
from .sequence import DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
SOURCE_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("astronaut", "coffee", "motorcycle_left", "motorcycle_right", "hubble_deep_field",
              "camera", "coins", "page"),
    "val": ("chelsea", "immunohistochemistry", "moon", "text"),
    "test": ("rocket", "retina", "cell", "clock"),
}
SHARED_BACKGROUNDS = ("brick", "grass", "gravel")
SPLIT_BACKGROUNDS: dict[str, tuple[str, ...]] = {
    "train": SHARED_BACKGROUNDS, "val": SHARED_BACKGROUNDS,
    "test": ("grace_hopper",),   # matplotlib's sample photograph, test-only: the test split shares no photograph
}
CHALLENGES = ("motion_smooth", "motion_abrupt", "scale_change", "aspect_change", "rotation", "motion_blur",
              "illumination", "occlusion_partial", "occlusion_full", "out_of_view", "distractor", "clutter",
              "camera_motion")
# probability of each optional challenge per sequence (motion_abrupt replaces motion_smooth)
_CHANCE = {"motion_abrupt": 0.35, "scale_change": 0.5, "aspect_change": 0.35, "rotation": 0.3,
           "motion_blur": 0.3, "illumination": 0.35, "occlusion_partial": 0.4, "occlusion_full": 0.25,
           "out_of_view": 0.2, "distractor": 0.35, "clutter": 0.4, "camera_motion": 0.4}
MASKS = ("ellipse", "blob", "round", "rect", "horse")
GENERATOR = "lighttrack_nas.data.synthetic"
VERSION = 1
SPLIT_VERSIONS = {"train": VERSION, "val": VERSION, "test": 2}  # test v2: backgrounds of its own (2026-12-06)
MARKER = ".complete.json"  # written last into a split folder: parameters of a finished generation
ABSENT_BELOW = 0.02  # visible fraction of the target below which a frame is absent (cover 0)
BOX_ALPHA = 0.1  # opacity from which a pixel belongs to the target's box
JPEG_QUALITY = 90


class SyntheticFrame(NamedTuple):
    """One rendered frame: RGB image, exact box (x, y, w, h), GOT-10k cover label, absence."""

    image: np.ndarray
    box: np.ndarray
    cover: int
    absent: bool


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    """A scikit-image (or matplotlib) sample photograph as uint8, (H, W, 3) RGB or (H, W) grayscale."""
    from skimage import data

    if name.startswith("motorcycle_"):
        image = data.stereo_motorcycle()[0 if name == "motorcycle_left" else 1]
    elif name == "grace_hopper":  # matplotlib's sample photograph
        from matplotlib import cbook

        image = cv2.cvtColor(cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))),
                             cv2.COLOR_BGR2RGB)
    else:
        image = getattr(data, name)()
    image = np.asarray(image)
    return np.ascontiguousarray(image[..., :3] if image.ndim == 3 else image, dtype=np.uint8)


@functools.lru_cache(maxsize=1)
def _horse() -> np.ndarray:
    """The horse silhouette of scikit-image cropped to its bounding box, float32 in 0..1."""
    from skimage import data

    shape = ~np.asarray(data.horse(), dtype=bool)
    rows, cols = np.flatnonzero(shape.any(1)), np.flatnonzero(shape.any(0))
    return shape[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].astype(np.float32)


@dataclass(frozen=True)
class _Look:
    """How an appearance is cut from a photograph: crop, flip, per-channel affine colour, mask."""

    source: str
    crop: tuple[int, int, int, int]
    flip: bool
    scale: tuple[float, float, float]
    offset: tuple[float, float, float]
    mask: str = "rect"
    shape: tuple[float, ...] = ()


def _new_look(rng: np.random.Generator, sources: tuple[str, ...], aspect: float, frac: tuple[float, float],
              masks: tuple[str, ...] = ("rect",)) -> _Look:
    """A random textured sub-crop of one of ``sources`` with colour jitter and a mask shape."""
    source = str(rng.choice(sources))
    photo = _photo(source)
    ph, pw = photo.shape[:2]
    side = rng.uniform(*frac) * min(ph, pw)
    cw = int(np.clip(round(side * math.sqrt(aspect)), 24, pw))
    ch = int(np.clip(round(side / math.sqrt(aspect)), 24, ph))
    best, best_score = None, -1.0
    for _ in range(6):  # prefer textured crops over flat sky or black space
        x, y = int(rng.integers(0, pw - cw + 1)), int(rng.integers(0, ph - ch + 1))
        step = max(1, min(cw, ch) // 32)
        score = float(photo[y:y + ch:step, x:x + cw:step].std())
        if score > best_score:
            best, best_score = (x, y, cw, ch), score
        if score >= 24:
            break
    if photo.ndim == 2:  # grayscale photographs get a random two-colour map
        low, high = rng.uniform(0, 100, 3), rng.uniform(150, 255, 3)
        scale, offset = (high - low) / 255.0, low
    else:
        scale, offset = rng.uniform(0.75, 1.25, 3), rng.uniform(-20, 20, 3)
    mask = str(rng.choice(masks))
    if mask == "blob":
        shape = tuple(rng.uniform(0, 0.13, 3)) + tuple(rng.uniform(0, 2 * math.pi, 3))
    elif mask == "round":
        shape = (float(rng.uniform(0.1, 0.35)),)
    else:
        shape = ()
    return _Look(source, best, bool(rng.random() < 0.5), tuple(scale), tuple(offset), mask, shape)


def _similar_look(rng: np.random.Generator, look: _Look) -> _Look:
    """A distractor's look: the same photo region shifted, rescaled and recoloured slightly."""
    ph, pw = _photo(look.source).shape[:2]
    x, y, cw, ch = look.crop
    f = rng.uniform(0.9, 1.1)
    nw, nh = int(min(pw, max(24, cw * f))), int(min(ph, max(24, ch * f)))
    nx = int(np.clip(x + rng.uniform(-0.1, 0.1) * cw, 0, pw - nw))
    ny = int(np.clip(y + rng.uniform(-0.1, 0.1) * ch, 0, ph - nh))
    scale = tuple(np.asarray(look.scale) * rng.uniform(0.92, 1.08, 3))
    offset = tuple(np.asarray(look.offset) + rng.uniform(-8, 8, 3))
    return _Look(look.source, (nx, ny, nw, nh), look.flip, scale, offset, look.mask, look.shape)


def _appearance(look: _Look, width: int, height: int) -> np.ndarray:
    """The look's pixels resized to ``(height, width, 3)`` float32 RGB in 0..255."""
    x, y, cw, ch = look.crop
    region = _photo(look.source)[y:y + ch, x:x + cw]
    if look.flip:
        region = region[:, ::-1]
    interpolation = cv2.INTER_AREA if width < cw else cv2.INTER_LINEAR
    region = cv2.resize(np.ascontiguousarray(region), (width, height), interpolation=interpolation)
    region = region.astype(np.float32)
    if region.ndim == 2:
        region = region[..., None]
    rgb = region * np.float32(look.scale) + np.float32(look.offset)
    return np.clip(rgb, 0, 255, out=rgb)


def _mask(kind: str, shape: tuple[float, ...], width: int, height: int) -> np.ndarray:
    """A soft-edged alpha mask of the given kind, ``(height, width)`` float32 in 0..1."""
    if kind == "horse":
        alpha = cv2.resize(_horse(), (width, height), interpolation=cv2.INTER_AREA)
    else:
        canvas = np.zeros((height, width), np.uint8)
        cx, cy, rx, ry = (width - 1) / 2, (height - 1) / 2, (width - 1) / 2, (height - 1) / 2
        if kind == "rect":
            canvas[:] = 255
        elif kind == "round":
            r = max(1, int(shape[0] * min(width, height)))
            cv2.rectangle(canvas, (r, 0), (width - 1 - r, height - 1), 255, -1)
            cv2.rectangle(canvas, (0, r), (width - 1, height - 1 - r), 255, -1)
            for px, py in ((r, r), (width - 1 - r, r), (r, height - 1 - r), (width - 1 - r, height - 1 - r)):
                cv2.circle(canvas, (px, py), r, 255, -1, cv2.LINE_AA)
        else:
            theta = np.linspace(0, 2 * math.pi, 96, endpoint=False)
            radius = np.ones_like(theta)
            if kind == "blob":
                amps, phases = shape[:3], shape[3:]
                for k, (a, p) in enumerate(zip(amps, phases), start=2):
                    radius += a * np.cos(k * theta + p)
                radius /= radius.max()
            points = np.stack([cx + rx * radius * np.cos(theta), cy + ry * radius * np.sin(theta)], axis=1)
            cv2.fillPoly(canvas, [np.round(points * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
        alpha = canvas.astype(np.float32) / 255.0
    return cv2.GaussianBlur(alpha, (0, 0), 0.8, borderType=cv2.BORDER_CONSTANT)


def _sprite(look: _Look, width: float, height: float) -> list[np.ndarray]:
    """Premultiplied RGBA float32 sprite at ``width x height`` plus halved levels (a mip chain)."""
    w, h = max(4, math.ceil(width)), max(4, math.ceil(height))
    alpha = _mask(look.mask, look.shape, w, h)
    levels = [np.dstack([_appearance(look, w, h) * alpha[..., None], alpha])]
    while min(levels[-1].shape[:2]) >= 24:
        lh, lw = levels[-1].shape[:2]
        levels.append(cv2.resize(levels[-1], (lw // 2, lh // 2), interpolation=cv2.INTER_AREA))
    return levels


@dataclass
class _Layer:
    """A sprite moving over the frames; ``world`` layers are fixed to the (panning) background."""

    levels: list[np.ndarray]
    cx: np.ndarray
    cy: np.ndarray
    w: np.ndarray
    h: np.ndarray
    angle: np.ndarray | None = None
    blur: np.ndarray | None = None
    gain: np.ndarray | None = None
    active: np.ndarray | None = None
    world: bool = False


def _line_kernel(dx: float, dy: float) -> np.ndarray:
    """A normalised motion-blur kernel along the vector (dx, dy)."""
    length = math.hypot(dx, dy)
    k = 2 * int(math.ceil(length / 2)) + 1
    kernel = np.zeros((k, k), np.float32)
    c = k // 2
    ends = [(round((c - dx / 2) * 16), round((c - dy / 2) * 16)), (round((c + dx / 2) * 16), round((c + dy / 2) * 16))]
    cv2.line(kernel, ends[0], ends[1], 1.0, 1, cv2.LINE_AA, shift=4)
    return kernel / kernel.sum()


def _place(layer: _Layer, t: int, view: np.ndarray | None) -> tuple[np.ndarray, int, int] | None:
    """Render ``layer`` at frame ``t``: premultiplied RGBA patch and its top-left in the frame."""
    if layer.active is not None and not layer.active[t]:
        return None
    cx, cy, w, h = layer.cx[t], layer.cy[t], layer.w[t], layer.h[t]
    if layer.world and view is not None:
        ox, oy, zoom = view
        cx, cy, w, h = (cx - ox) * zoom, (cy - oy) * zoom, w * zoom, h * zoom
    sprite = layer.levels[0]
    for level in layer.levels[1:]:
        if level.shape[1] < w or level.shape[0] < h:
            break
        sprite = level
    sh, sw = sprite.shape[:2]
    theta = math.radians(layer.angle[t]) if layer.angle is not None else 0.0
    c, s = math.cos(theta), math.sin(theta)
    a = np.array([[c * w / sw, -s * h / sh], [s * w / sw, c * h / sh]])
    # OpenCV puts pixel centres on integers; box coordinates put pixel j on [j, j + 1)
    shift = np.array([cx - 0.5, cy - 0.5]) - a @ np.array([(sw - 1) / 2, (sh - 1) / 2])
    corners = a @ np.array([[-0.5, sw - 0.5, sw - 0.5, -0.5], [-0.5, -0.5, sh - 0.5, sh - 0.5]]) + shift[:, None]
    blur = layer.blur[t] if layer.blur is not None else (0.0, 0.0)
    pad = 2 + int(math.ceil(math.hypot(*blur) / 2))
    x0, y0 = int(math.floor(corners[0].min())) - pad, int(math.floor(corners[1].min())) - pad
    x1, y1 = int(math.ceil(corners[0].max())) + pad + 1, int(math.ceil(corners[1].max())) + pad + 1
    matrix = np.hstack([a, (shift - (x0, y0))[:, None]])
    patch = cv2.warpAffine(sprite, matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if math.hypot(*blur) >= 1.0:
        patch = cv2.filter2D(patch, -1, _line_kernel(*blur), borderType=cv2.BORDER_CONSTANT)
    if layer.gain is not None:
        patch[..., :3] *= layer.gain[t]
    return patch, x0, y0


def _window(shape: tuple[int, int], patch: np.ndarray, x0: int, y0: int) -> tuple[slice, slice, slice, slice] | None:
    """Overlap of a patch at (x0, y0) with an image: image rows/cols then patch rows/cols."""
    height, width = shape
    ph, pw = patch.shape[:2]
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + pw, width), min(y0 + ph, height)
    if ix1 <= ix0 or iy1 <= iy0:
        return None
    return slice(iy0, iy1), slice(ix0, ix1), slice(iy0 - y0, iy1 - y0), slice(ix0 - x0, ix1 - x0)


def _paste(image: np.ndarray, patch: np.ndarray, x0: int, y0: int) -> None:
    """Alpha-composite a premultiplied RGBA patch over ``image`` in place."""
    window = _window(image.shape[:2], patch, x0, y0)
    if window is None:
        return
    rows, cols, prows, pcols = window
    p = patch[prows, pcols]
    out = image[rows, cols].astype(np.float32) * (1.0 - p[..., 3:]) + p[..., :3]
    image[rows, cols] = np.clip(out + 0.5, 0, 255).astype(np.uint8)


def cover_label(fraction: float) -> int:
    """GOT-10k cover label of a visible fraction: 0 hidden, 1..7 in 15 % steps, 8 fully visible."""
    if fraction < ABSENT_BELOW:
        return 0
    if fraction >= 0.999:
        return 8
    if fraction > 0.9:
        return 7
    return max(1, math.ceil(fraction / 0.15 - 1e-9))


@dataclass
class SequencePlan:
    """Every random decision of one synthetic sequence; :meth:`render` is deterministic."""

    name: str
    size: tuple[int, int]
    frames: int
    challenges: tuple[str, ...]
    attributes: dict[str, str]
    background: np.ndarray
    view: np.ndarray | None
    light: np.ndarray | None
    behind: list[_Layer]
    target: _Layer
    front: list[_Layer]

    def render(self, with_target: bool = True) -> Iterator[SyntheticFrame]:
        """Yield the frames in order; ``with_target=False`` leaves the target out but keeps labels."""
        width, height = self.size
        last = None
        for t in range(self.frames):
            view = None if self.view is None else self.view[t]
            if view is None:
                image = self.background.copy()
            else:
                ox, oy, zoom = view
                matrix = np.array([[zoom, 0, -zoom * ox], [0, zoom, -zoom * oy]])
                image = cv2.warpAffine(self.background, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_REFLECT)
            for layer in self.behind:
                placed = _place(layer, t, view)
                if placed is not None:
                    _paste(image, *placed)
            patch, x0, y0 = _place(self.target, t, None)
            if with_target:
                _paste(image, patch, x0, y0)
            alpha = patch[..., 3]
            window = _window(image.shape[:2], patch, x0, y0)
            visible = alpha[window[2], window[3]].copy() if window is not None else None
            for layer in self.front:
                placed = _place(layer, t, None)
                if placed is None:
                    continue
                _paste(image, *placed)
                if visible is not None:
                    _hide(visible, (window[0].start, window[1].start), *placed)
            if self.light is not None:
                lut = np.clip(np.arange(256, dtype=np.float32)[:, None] * self.light[t] + 0.5, 0, 255)
                image = cv2.LUT(image, lut.astype(np.uint8).reshape(256, 1, 3))
            fraction = float(visible.sum() / alpha.sum()) if visible is not None else 0.0
            box = _tight_box(alpha, x0, y0, width, height)
            last = box if box is not None else last
            cover = cover_label(fraction)
            yield SyntheticFrame(image, np.asarray(last, dtype=np.float64), cover, cover == 0)


def _hide(visible: np.ndarray, origin: tuple[int, int], patch: np.ndarray, x0: int, y0: int) -> None:
    """Remove from ``visible`` (an alpha window whose top-left is ``origin``) what a patch covers."""
    top, left = origin
    window = _window(visible.shape, patch, x0 - left, y0 - top)
    if window is not None:
        rows, cols, prows, pcols = window
        visible[rows, cols] *= 1.0 - patch[prows, pcols, 3]


def _tight_box(alpha: np.ndarray, x0: int, y0: int, width: int, height: int) -> tuple[float, ...] | None:
    """Box of the pixels with opacity >= ``BOX_ALPHA``, clipped to the image; None when wholly outside."""
    solid = alpha >= min(BOX_ALPHA, float(alpha.max()) / 2)
    cols, rows = np.flatnonzero(solid.any(axis=0)), np.flatnonzero(solid.any(axis=1))
    left, top = max(x0 + cols[0], 0), max(y0 + rows[0], 0)
    right, bottom = min(x0 + cols[-1] + 1, width), min(y0 + rows[-1] + 1, height)
    if right <= left or bottom <= top:
        return None
    return float(left), float(top), float(right - left), float(bottom - top)


def _wave(rng: np.random.Generator, n: int, amplitude: float) -> np.ndarray:
    """A smooth random curve ``amplitude * sin`` with random period and phase, starting at 0."""
    t = np.arange(n)
    period = rng.uniform(0.5, 2.0) * max(n, 2)
    phase = rng.uniform(0, 2 * math.pi)
    curve = amplitude * np.sin(2 * math.pi * t / period + phase)
    return curve - curve[0]


def _interval(rng: np.random.Generator, n: int, fraction: tuple[float, float]) -> tuple[int, int] | None:
    """A random event interval [start, stop) of at least 3 frames, starting after the first tenth."""
    first = max(1, n // 10)
    if n - first < 3:
        return None
    length = int(np.clip(round(rng.uniform(*fraction) * n), 3, n - first))
    start = int(rng.integers(first, n - length + 1))
    return start, start + length


def _ramp(length: int) -> np.ndarray:
    """Weights 0 -> 1 (enter), 1 (hold, at least one frame), 1 -> 0 (leave) over ``length`` frames."""
    enter = leave = max(1, length // 3)
    hold = length - enter - leave
    return np.concatenate([np.linspace(0, 1, enter + 2)[1:-1], np.ones(hold), np.linspace(1, 0, leave + 2)[1:-1]])


def _wander(rng: np.random.Generator, n: int, start: np.ndarray, speed: float, low: np.ndarray,
            high: np.ndarray, pull: np.ndarray | None = None) -> np.ndarray:
    """A smooth random walk (damped velocity) reflected into per-frame bounds ``low..high``."""
    path = np.empty((n, 2))
    path[0] = start
    velocity = rng.normal(size=2) * speed
    noise = rng.normal(size=(n, 2)) * speed * 0.4
    for t in range(1, n):
        velocity = 0.92 * velocity + noise[t]
        if pull is not None:
            velocity += 0.02 * (pull[t - 1] - path[t - 1])
        p = path[t - 1] + velocity
        for k in range(2):
            lo, hi = low[t, k], high[t, k]
            if hi <= lo:
                p[k] = (lo + hi) / 2
                continue
            if p[k] < lo or p[k] > hi:
                p[k] = 2 * lo - p[k] if p[k] < lo else 2 * hi - p[k]
                velocity[k] = -velocity[k]
            p[k] = min(max(p[k], lo), hi)
        path[t] = p
    return path


def _draw_challenges(rng: np.random.Generator) -> tuple[str, ...]:
    """Each optional challenge with its own probability; at least two besides the motion type."""
    drawn = [name for name in _CHANCE if rng.random() < _CHANCE[name]]
    optional = [name for name in _CHANCE if name != "motion_abrupt"]
    while len([name for name in drawn if name != "motion_abrupt"]) < 2:
        extra = str(rng.choice(optional))
        if extra not in drawn:
            drawn.append(extra)
    if "motion_abrupt" not in drawn:
        drawn.append("motion_smooth")
    return tuple(name for name in CHALLENGES if name in drawn)


class _Planner:
    """Draws the random decisions of one sequence in a fixed order from one generator."""

    def __init__(self, rng: np.random.Generator, split: str, frames: int, size: tuple[int, int],
                 challenges: tuple[str, ...]) -> None:
        self.rng, self.n, self.size, self.on = rng, frames, np.array(size, dtype=float), set(challenges)
        self.unit = math.sqrt(size[0] * size[1])
        self.objects = SOURCE_SPLITS[split]
        self.backgrounds = SPLIT_BACKGROUNDS[split]
        self.photos: set[str] = set()
        self.events: dict[str, tuple[int, int]] = {}

    def look(self, aspect: float, frac: tuple[float, float], masks: tuple[str, ...]) -> _Look:
        look = _new_look(self.rng, self.objects, aspect, frac, masks)
        self.photos.add(look.source)
        return look

    def target_shape(self) -> None:
        """Size, scale and aspect-ratio change, rotation; the bounds that keep the target inside."""
        rng, n, on = self.rng, self.n, self.on
        self.side = math.exp(rng.uniform(math.log(0.07), math.log(0.22))) * self.unit
        self.aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
        if "scale_change" not in on:
            scale = np.exp(_wave(rng, n, 0.04))
        elif rng.random() < 0.5:
            scale = np.exp(_wave(rng, n, rng.uniform(0.3, 0.6)))
        else:
            scale = np.exp(np.linspace(0, rng.choice([-1, 1]) * rng.uniform(0.35, 0.7), n))
        stretch = np.exp(_wave(rng, n, rng.uniform(0.2, 0.4)) if "aspect_change" in on else np.zeros(n))
        w = self.side * math.sqrt(self.aspect) * scale * np.sqrt(stretch)
        h = self.side / math.sqrt(self.aspect) * scale / np.sqrt(stretch)
        min_side = max(4.0, 16.0 * self.size.min() / 480)  # 16 px at 640x480
        grow = np.maximum(1.0, min_side / np.minimum(w, h))
        shrink = np.minimum(1.0, np.minimum(0.4 * self.unit / np.sqrt(w * h), 0.7 * self.size.min() / np.maximum(w, h)))
        self.w, self.h = w * grow * shrink, h * grow * shrink
        self.diag = np.hypot(self.w, self.h)
        self.angle = None
        half = np.stack([self.w, self.h], axis=1) / 2
        if "rotation" in on:
            spin = rng.choice([-1, 1]) * rng.uniform(1.5, 4.0) * np.arange(n)
            self.angle = (_wave(rng, n, rng.uniform(20, 60)) if rng.random() < 0.5 else spin) + rng.uniform(-20, 20)
            half = np.repeat(self.diag[:, None] / 2, 2, axis=1)
        self.low, self.high = half, np.maximum(half, self.size - half)
        self.blur_max = 0.4 * np.minimum(self.w, self.h)

    def target_path(self) -> None:
        """Centre path: a smooth damped walk, abrupt jumps, then an out-of-view excursion."""
        rng, n = self.rng, self.n
        abrupt = "motion_abrupt" in self.on
        self.speed = rng.uniform(0.012, 0.03) * self.unit if abrupt else rng.uniform(0.003, 0.012) * self.unit
        path = _wander(rng, n, rng.uniform(self.low[0], self.high[0]), self.speed, self.low, self.high)
        if abrupt and n > 1:
            jumps = np.flatnonzero(rng.random(n) < 1 / 15)
            for t in jumps[jumps > 0] if np.any(jumps > 0) else [int(rng.integers(1, n))]:
                direction = rng.normal(size=2)
                path[t:] += direction / np.linalg.norm(direction) * rng.uniform(0.7, 1.6) * max(self.w[t], self.h[t])
                path[t:] = np.clip(path[t:], self.low[t:], self.high[t:])
        if "out_of_view" in self.on and (span := _interval(rng, n, (0.15, 0.3))):
            a, b = span
            near_edge = np.minimum(path[a], self.size - path[a]) / self.size
            axis = int(np.argmin(near_edge))
            extent = 0.5 * self.diag[a:b].max() + self.blur_max.max() + 4
            outside = -extent if path[a, axis] < self.size[axis] / 2 else self.size[axis] + extent
            weight = _ramp(b - a)
            path[a:b, axis] = (1 - weight) * path[a:b, axis] + weight * outside
            self.events["out_of_view"] = span
        self.path = path

    def target(self) -> _Layer:
        """The target layer: shape, path, motion blur along the motion and a passing shadow."""
        rng, n = self.rng, self.n
        self.target_shape()
        self.target_path()
        blur = gain = None
        if "motion_blur" in self.on:
            velocity = np.vstack([np.zeros((1, 2)), np.diff(self.path, axis=0)]) * rng.uniform(0.8, 1.4)
            shaken = (rng.random(n) < 0.1)[:, None]  # camera shake: a random streak on some frames
            blur = velocity + shaken * rng.normal(size=(n, 2)) * (0.15 * np.sqrt(self.w * self.h))[:, None]
            length = np.maximum(np.hypot(blur[:, 0], blur[:, 1]), 1e-9)
            blur *= (np.minimum(length, self.blur_max) / length)[:, None]
            blur[0] = 0
        if "illumination" in self.on and rng.random() < 0.5 and (span := _interval(rng, n, (0.15, 0.35))):
            gain = np.ones(n, np.float32)
            gain[span[0]:span[1]] = 1 - _ramp(span[1] - span[0]) * rng.uniform(0.4, 0.65)
        self.target_look = self.look(self.aspect, (0.15, 0.6), MASKS)
        return _Layer(_sprite(self.target_look, self.w.max(), self.h.max()), self.path[:, 0], self.path[:, 1],
                      self.w, self.h, self.angle, blur, gain)

    def camera(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Background canvas and per-frame view (left, top, zoom); a larger canvas when panning."""
        rng, n = self.rng, self.n
        view = None
        canvas = self.size
        if "camera_motion" in self.on:
            canvas = np.ceil(1.6 * self.size)
            zoom = np.exp(_wave(rng, n, rng.uniform(0.08, 0.2)) + rng.uniform(-0.1, 0.1))
            ends = rng.uniform(0, 1, (2, 2))
            progress = 0.5 - 0.5 * np.cos(np.linspace(0, math.pi, n))
            half_view = self.size[None, :] / (2 * zoom[:, None])
            centre = half_view + (ends[0] + (ends[1] - ends[0]) * progress[:, None]) * (canvas - 2 * half_view)
            view = np.column_stack([centre - half_view, zoom])
        self.canvas = canvas
        width, height = int(canvas[0]), int(canvas[1])
        self.background_look = _new_look(rng, self.objects + self.backgrounds, width / height, (0.5, 1.0))
        return np.ascontiguousarray(_appearance(self.background_look, width, height).astype(np.uint8)), view

    def clutter(self) -> list[_Layer]:
        """Patches fixed to the background (a few drift), many when ``clutter`` is on."""
        rng, n = self.rng, self.n
        layers = []
        for _ in range(int(rng.integers(6, 15)) if "clutter" in self.on else int(rng.integers(0, 4))):
            ratio = math.exp(rng.uniform(-0.7, 0.7))
            side = self.side * rng.uniform(0.4, 1.4)
            w, h = side * math.sqrt(ratio), side / math.sqrt(ratio)
            look = self.look(ratio, (0.1, 0.5), MASKS)
            bounds = np.tile(self.canvas, (n, 1))
            drift = _wander(rng, n, rng.uniform(0, 1, 2) * self.canvas, 0.003 * self.unit if rng.random() < 0.3 else 0,
                            np.zeros((n, 2)), bounds)
            layers.append(_Layer(_sprite(look, w, h), drift[:, 0], drift[:, 1], np.full(n, w), np.full(n, h),
                                 np.full(n, rng.uniform(-30, 30)), world=True))
        return layers

    def distractors(self) -> list[_Layer]:
        """One or two jittered copies of the target's photo region wandering near the target."""
        rng, n = self.rng, self.n
        layers = []
        for _ in range(int(rng.integers(1, 3)) if "distractor" in self.on else 0):
            f = rng.uniform(0.85, 1.15)
            w, h = self.w * f, self.h * f
            candidates = rng.uniform(self.low[0], self.high[0], (20, 2))
            far = np.linalg.norm(candidates - self.path[0], axis=1)
            ok = np.flatnonzero(far > 1.5 * max(self.w[0], self.h[0]))
            start = candidates[ok[0]] if len(ok) else candidates[np.argmax(far)]
            route = _wander(rng, n, start, self.speed, self.low, self.high, pull=self.path)
            turn = None if self.angle is None else self.angle + rng.uniform(-30, 30)
            sprite = _sprite(_similar_look(rng, self.target_look), w.max(), h.max())
            layers.append(_Layer(sprite, route[:, 0], route[:, 1], w, h, turn))
        return layers

    def occluders(self) -> list[_Layer]:
        """Opaque patches in front of the target: one passing partly over it, one hiding it fully."""
        rng, n = self.rng, self.n
        layers = []
        for kind in ("occlusion_partial", "occlusion_full"):
            if kind not in self.on or not (span := _interval(rng, n, (0.1, 0.25))):
                continue
            a, b = span
            diag = self.diag[a:b].max()
            direction = rng.normal(size=2)
            direction /= np.linalg.norm(direction)
            if kind == "occlusion_full":  # a square larger than the target's diagonal, centred on it
                ow = oh = 1.3 * diag + 2 * self.blur_max.max() + 6
                reach = 0.5 * (diag + ow * math.sqrt(2)) + 2
                offsets = direction * reach * (1 - _ramp(b - a))[:, None]
                masks = ("rect",)
            else:  # a smaller patch crossing beside the centre
                ow, oh = rng.uniform(0.4, 0.8, 2) * max(self.w[a:b].max(), self.h[a:b].max())
                reach = 0.5 * (diag + math.hypot(ow, oh))
                across = np.array([-direction[1], direction[0]]) * rng.uniform(0.1, 0.3) * diag
                offsets = across + direction * reach * np.linspace(1, -1, b - a)[:, None]
                masks = ("rect", "round", "ellipse", "blob")
            centre = np.zeros((n, 2))
            centre[a:b] = self.path[a:b] + offsets
            active = np.zeros(n, bool)
            active[a:b] = True
            look = self.look(ow / oh, (0.2, 0.6), masks)
            layers.append(_Layer(_sprite(look, ow, oh), centre[:, 0], centre[:, 1], np.full(n, ow), np.full(n, oh),
                                 active=active))
            self.events[kind] = span
        return layers

    def lighting(self) -> np.ndarray | None:
        """Per-frame RGB gain of the whole image: a slow swing or a sudden switch, with a tint drift."""
        rng, n = self.rng, self.n
        if "illumination" not in self.on:
            return None
        if rng.random() < 0.5:
            level = _wave(rng, n, rng.uniform(0.25, 0.5))
        else:
            level = np.zeros(n)
            factor = rng.uniform(0.45, 0.65) if rng.random() < 0.5 else rng.uniform(1.4, 1.7)
            level[int(rng.integers(1, n)) if n > 1 else 0:] = math.log(factor)
        tint = rng.uniform(-0.1, 0.1, 3) * np.linspace(0, 1, n)[:, None]
        return np.exp(level[:, None] + tint).astype(np.float32)


def plan_sequence(seed: int, split: str, index: int, frames: int, size: tuple[int, int] = (640, 480),
                  challenges: tuple[str, ...] | None = None) -> SequencePlan:
    """Plan sequence ``index`` of ``split``, seeded only by ``(seed, split, index)``.

    ``challenges`` overrides the seeded choice (names from ``CHALLENGES``; the motion type
    defaults to ``motion_smooth``).
    """
    _check(split, 1, frames, seed, size)
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    if challenges is None:
        challenges = _draw_challenges(rng)
    else:
        unknown = sorted(set(challenges) - set(CHALLENGES))
        if unknown:
            raise ValueError(f"unknown challenges {unknown}; choose from {', '.join(CHALLENGES)}")
        if "motion_abrupt" not in challenges:
            challenges = ("motion_smooth", *challenges)
        challenges = tuple(name for name in CHALLENGES if name in challenges)
    planner = _Planner(rng, split, frames, size, challenges)
    target = planner.target()
    background, view = planner.camera()
    behind = planner.clutter() + planner.distractors()
    front = planner.occluders()
    light = planner.lighting()
    attributes = {
        "resolution": f"({size[0]}, {size[1]})",
        "object_class": "synthetic",
        "challenges": ",".join(challenges),
        "object_source": planner.target_look.source,
        "object_mask": planner.target_look.mask,
        "background_source": planner.background_look.source,
        "object_photos": ",".join(sorted(planner.photos)),
        **{f"{k}_frames": f"{a + 1}-{b}" for k, (a, b) in planner.events.items()},
        "generator": f"{GENERATOR} v{SPLIT_VERSIONS[split]}",
        "seed": str(seed),
        "index": str(index),
    }
    return SequencePlan(sequence_name(split, index), (int(size[0]), int(size[1])), frames, challenges, attributes,
                        background, view, light, behind, target, front)


def sequence_name(split: str, index: int) -> str:
    """Folder name of sequence ``index`` (0-based) of ``split``, e.g. ``train_000001``."""
    return f"{split}_{index + 1:06d}"


def _check(split: str, sequences: int, frames: int, seed: int, size: tuple[int, int]) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    if sequences < 1 or frames < 1:
        raise ValueError(f"need at least one sequence and one frame, got {sequences} x {frames}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if len(size) != 2 or min(size) < 32:
        raise ValueError(f"frame size must be at least 32x32, got {size}")


def _write_sequence(job: tuple[str, int, str, int, int, tuple[int, int]]) -> str:
    """Render one sequence and write its GOT-10k files under ``job[0]``; returns its name."""
    folder, seed, split, index, frames, size = job
    plan = plan_sequence(seed, split, index, frames, size)
    out = Path(folder) / plan.name
    out.mkdir()
    boxes, absence, cover = [], [], []
    for number, frame in enumerate(plan.render(), start=1):
        path = out / f"{number:08d}.jpg"
        if not cv2.imwrite(str(path), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise OSError(f"{path}: could not write the frame")
        boxes.append("%.3f,%.3f,%.3f,%.3f" % tuple(frame.box))
        absence.append(str(int(frame.absent)))
        cover.append(str(frame.cover))
    (out / "groundtruth.txt").write_text("\n".join(boxes) + "\n")
    (out / "absence.label").write_text("\n".join(absence) + "\n")
    (out / "cover.label").write_text("\n".join(cover) + "\n")
    meta = "".join(f"{key}: {value}\n" for key, value in plan.attributes.items())
    (out / "meta_info.ini").write_text("[METAINFO]\n" + meta)
    return plan.name


def _init_worker() -> None:
    cv2.setNumThreads(1)


def _parameters(split: str, sequences: int, frames: int, seed: int, size: tuple[int, int]) -> dict:
    return {"generator": GENERATOR, "version": SPLIT_VERSIONS[split], "split": split, "sequences": sequences,
            "frames": frames, "seed": seed, "size": list(size)}


def image_libraries(split: str | None = None) -> dict[str, str]:
    """Versions of the libraries whose output ends up in ``split``'s frames (photographs, warps, JPEG
    coding; matplotlib where the split uses its sample photograph).

    Recorded in each split's completion marker: a different version can change the frames' bytes,
    so results on data generated elsewhere are only comparable when these agree.
    """
    import PIL
    import skimage
    versions = {"opencv": cv2.__version__, "scikit-image": skimage.__version__, "numpy": np.__version__,
                "pillow": PIL.__version__}
    if split is not None and "grace_hopper" in SPLIT_BACKGROUNDS[split]:
        import matplotlib

        versions["matplotlib"] = matplotlib.__version__
    return versions


def generate_dataset(out: str | Path, split: str, sequences: int, frames: int, seed: int,
                     size: tuple[int, int] = (640, 480), workers: int | None = None) -> Path:
    """Write ``sequences`` synthetic sequences of ``frames`` frames to ``out/<split>`` (GOT-10k layout).

    The split is built in a hidden sibling folder and renamed into place when complete, with a
    completion marker holding the parameters; a split folder left by an earlier generation is
    replaced, any other existing non-empty folder is refused. ``workers`` defaults to
    ``min(2, cpu count)``; output bytes do not depend on it. Returns the data-set root ``out``,
    ready for ``open_dataset("got10k", out, split)``.
    """
    size = (int(size[0]), int(size[1]))
    _check(split, sequences, frames, seed, size)
    workers = workers or min(2, os.cpu_count() or 1)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    root = Path(out)
    final = root / split
    if final.is_dir() and not (final / MARKER).is_file() and any(final.iterdir()):
        raise DataError(f"{final}: exists and was not written by this generator; refusing to replace it")
    root.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{split}.partial-", dir=root))
    partial.chmod(0o755)
    try:
        jobs = [(str(partial), seed, split, i, frames, size) for i in range(sequences)]
        bar = tqdm(total=sequences, desc=f"synthetic {split}", unit="seq")
        if workers == 1:
            for job in jobs:
                _write_sequence(job)
                bar.update()
        else:
            context = multiprocessing.get_context("spawn")
            with context.Pool(min(workers, sequences), initializer=_init_worker) as pool:
                for _ in pool.imap_unordered(_write_sequence, jobs):
                    bar.update()
        bar.close()
        names = [sequence_name(split, i) for i in range(sequences)]
        (partial / "list.txt").write_text("\n".join(names) + "\n")
        marker = {**_parameters(split, sequences, frames, seed, size), "libraries": image_libraries(split)}
        (partial / MARKER).write_text(json.dumps(marker, indent=1))
        if final.exists():
            stale = Path(tempfile.mkdtemp(prefix=f".{split}.old-", dir=root))
            final.rename(stale / split)
            partial.rename(final)
            shutil.rmtree(stale)
        else:
            partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return root


def ensure_dataset(root: str | Path, split: str, sequences: int, frames: int, seed: int,
                   size: tuple[int, int] = (640, 480), workers: int | None = None) -> Path:
    """Return ``root`` once ``root/<split>`` holds a complete generation with these parameters.

    Generates (see :func:`generate_dataset`) only when the completion marker is missing or
    records different parameters; a split made with other image-library versions
    (:func:`image_libraries`) is reused with a warning naming them.
    """
    _check(split, sequences, frames, seed, size)
    marker = Path(root) / split / MARKER
    wanted = _parameters(split, sequences, frames, seed, (int(size[0]), int(size[1])))
    with locked(Path(root) / f".{split}.lock", wait=True):  # a second process waits, then finds the split made
        if _complete(marker, wanted, split):
            return Path(root)
        return generate_dataset(root, split, sequences, frames, seed, size, workers)


def _complete(marker: Path, wanted: dict[str, Any], split: str) -> bool:
    """Whether ``marker`` records a finished generation with the ``wanted`` parameters (warning when
    it was made with other image-library versions)."""
    try:
        found = json.loads(marker.read_text()) if marker.is_file() else None
    except json.JSONDecodeError:
        found = None
    if not isinstance(found, dict) or {k: v for k, v in found.items() if k != "libraries"} != wanted:
        return False
    made_with, here = found.get("libraries"), image_libraries(split)
    if made_with is not None and made_with != here:
        log.warning("%s was generated with %s; this environment has %s: a fresh generation here may "
                    "give other frames (delete the folder to regenerate)", marker.parent, made_with, here)
    return True
