"""Crop geometry and input normalisation, shared by supernet training and the tracker.

Coordinates are continuous: pixel ``(row i, column j)`` covers ``[j, j + 1) x [i, i + 1)``, so a
box ``x, y, w, h`` spans ``x .. x + w`` (``x2 = x + w``, the GOT-10k toolkit's convention) and the
centre of an ``S``-pixel crop is ``S / 2``.

Crops (LightTrack): with context ``p = context_amount * (w + h)`` (0.5 by default) the template
side is ``s_z = sqrt((w + p)(h + p))`` image pixels, resized to ``template_size``; the search side
is ``s_x = s_z * search_size / template_size``, resized to ``search_size``. Both are centred on the
target; areas outside the image are filled with the image's mean colour. One
``cv2.warpAffine`` makes each crop. A :class:`CropWindow` records where a crop came from and maps
boxes between image and crop pixels.

Score-grid convention (used by the label builder and the tracker): cell ``(i, j)`` of an
``H x W`` score map corresponds to the search-crop point ``(offset + j * stride,
offset + i * stride)`` with ``offset = (search_size - (score_size - 1) * stride) / 2``, i.e. the
grid is centred in the crop (256/16/16: points 8, 24, ..., 248).
"""
from __future__ import annotations

import math
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass

import cv2
import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_MEAN_255 = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0
_STD_255 = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0
MIN_SIDE = 1.0
"""Smallest crop side in image pixels (guards degenerate boxes)."""


@dataclass(frozen=True)
class CropWindow:
    """A square image region of side ``side`` centred at ``(cx, cy)``, resampled to
    ``out_size x out_size`` pixels."""

    cx: float
    cy: float
    side: float
    out_size: int

    @property
    def scale(self) -> float:
        """Crop pixels per image pixel."""
        return self.out_size / self.side

    def to_crop(self, boxes: np.ndarray) -> np.ndarray:
        """Map ``(..., 4)`` x1,y1,x2,y2 boxes from image to crop pixels."""
        b = np.asarray(boxes, dtype=np.float64)
        c = np.array([self.cx, self.cy, self.cx, self.cy])
        return (b - c) * self.scale + self.out_size / 2.0

    def to_image(self, boxes: np.ndarray) -> np.ndarray:
        """Map ``(..., 4)`` x1,y1,x2,y2 boxes from crop to image pixels."""
        b = np.asarray(boxes, dtype=np.float64)
        c = np.array([self.cx, self.cy, self.cx, self.cy])
        return (b - self.out_size / 2.0) / self.scale + c

    def affine(self) -> np.ndarray:
        """The 2x3 image-to-crop matrix in OpenCV's pixel-index convention (centres at integers)."""
        s = self.scale
        half = self.out_size / 2.0 - 0.5
        return np.array([[s, 0.0, half + (0.5 - self.cx) * s],
                         [0.0, s, half + (0.5 - self.cy) * s]])


def xywh_to_xyxy(box: np.ndarray) -> np.ndarray:
    """``(..., 4)`` x,y,w,h -> x1,y1,x2,y2."""
    b = np.asarray(box, dtype=np.float64)
    return np.concatenate([b[..., :2], b[..., :2] + b[..., 2:]], axis=-1)


def xyxy_to_xywh(box: np.ndarray) -> np.ndarray:
    """``(..., 4)`` x1,y1,x2,y2 -> x,y,w,h."""
    b = np.asarray(box, dtype=np.float64)
    return np.concatenate([b[..., :2], b[..., 2:] - b[..., :2]], axis=-1)


def as_rgb(image: np.ndarray) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 view of ``image``; grayscale ``(H, W)`` / ``(H, W, 1)`` is expanded."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3):
        raise ValueError(f"expected an (H, W), (H, W, 1) or (H, W, 3) image, got shape {img.shape}")
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return img


def mean_colour(image: np.ndarray) -> tuple[float, float, float]:
    """Per-channel mean of an RGB image (the padding colour)."""
    r, g, b, _ = cv2.mean(image)
    return (r, g, b)


def context_side(w: float, h: float, context_amount: float = 0.5) -> float:
    """Template crop side ``s_z = sqrt((w + p)(h + p))`` with ``p = context_amount * (w + h)``."""
    p = context_amount * (w + h)
    return math.sqrt(max(w + p, 0.0) * max(h + p, 0.0))


def template_window(box_xywh: SequenceABC[float], template_size: int, context_amount: float = 0.5) -> CropWindow:
    """The template crop window of a target box ``x, y, w, h``."""
    x, y, w, h = (float(v) for v in box_xywh)
    side = max(context_side(w, h, context_amount), MIN_SIDE)
    return CropWindow(x + w / 2.0, y + h / 2.0, side, int(template_size))


def search_window(box_xywh: SequenceABC[float], template_size: int, search_size: int,
                  context_amount: float = 0.5) -> CropWindow:
    """The search crop window of a target box: ``s_x = s_z * search_size / template_size``."""
    x, y, w, h = (float(v) for v in box_xywh)
    side = max(context_side(w, h, context_amount), MIN_SIDE) * search_size / template_size
    return CropWindow(x + w / 2.0, y + h / 2.0, side, int(search_size))


def crop(image: np.ndarray, window: CropWindow, pad: SequenceABC[float] | None = None) -> np.ndarray:
    """Resample ``window`` of ``image`` to an ``(out, out, 3)`` uint8 crop with one warpAffine.

    ``pad`` is the colour outside the image (default: the image's mean colour)."""
    img = as_rgb(image)
    colour = tuple(float(c) for c in (pad if pad is not None else mean_colour(img)))
    return cv2.warpAffine(img, window.affine(), (window.out_size, window.out_size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=colour)


def grid_offset(search_size: int, score_size: int, stride: int) -> float:
    """Search-crop coordinate of score cell 0 (the grid is centred in the crop)."""
    return (search_size - (score_size - 1) * stride) / 2.0


def grid_points(search_size: int, score_size: int, stride: int) -> np.ndarray:
    """``(score_size,)`` search-crop coordinates of the cells along one axis."""
    return grid_offset(search_size, score_size, stride) + stride * np.arange(score_size, dtype=np.float64)


def to_tensor(crops: np.ndarray | SequenceABC[np.ndarray]) -> torch.Tensor:
    """RGB crops ``(H, W, 3)`` or ``(N, H, W, 3)`` in 0..255 -> float32 ``(N, 3, H, W)`` tensor,
    ``(x / 255 - mean) / std`` with the ImageNet mean and std."""
    arr = np.asarray(crops)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected (H, W, 3) or (N, H, W, 3) crops, got shape {arr.shape}")
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(0, 3, 1, 2)
    return ((t - _MEAN_255) / _STD_255).contiguous()
