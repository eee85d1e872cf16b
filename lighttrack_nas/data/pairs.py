"""Training pairs for the tracking supernet: template/search crops with augmentation.

Every sample is a pure function of ``(seed, index)``: its random generator is seeded from that pair
and nothing else (no global RNG), so a DataLoader with any number of workers yields the same
batches as a single process, and a resumed run sees the same data.

Augmentation (``augmentation`` dict, defaults in :data:`DEFAULT_AUGMENTATION`): the crop window is
jittered so that the target centre moves by up to ``*_shift`` crop pixels along each axis and its
size changes by a factor in ``1 +- *_scale``; shifts are given at LightTrack's 128/256 crops and
scaled with the configured crop sizes. Then, per crop, colour jitter (probability ``color``,
brightness/contrast/saturation factors in ``1 +- color_strength``) and Gaussian blur (probability
``blur``), and for the pair together, conversion to grayscale (probability ``gray``).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import Field, check_section
from .crop import CropWindow, context_side, crop, to_tensor, xywh_to_xyxy
from .sequence import DataError, Sequence

log = logging.getLogger(__name__)

DEFAULT_AUGMENTATION: dict[str, float] = {
    "template_shift": 4.0,     # crop pixels at a 128 template crop
    "template_scale": 0.05,
    "search_shift": 64.0,      # crop pixels at a 256 search crop
    "search_scale": 0.18,
    "color": 1.0,              # probability of colour jitter, per crop
    "color_strength": 0.2,
    "blur": 0.1,               # probability of Gaussian blur, per crop
    "gray": 0.05,              # probability of a grayscale pair
}
AUGMENTATION_FIELDS: dict[str, Field] = {
    **{key: Field() for key in DEFAULT_AUGMENTATION},
    **{key: Field(low=0, high=1, high_open=True, note="(crop side times 1 +- it)")
       for key in ("template_scale", "search_scale")},
    **{key: Field(low=0, high=1, note="(a probability)") for key in ("color", "blur", "gray")},
}
REFERENCE_TEMPLATE, REFERENCE_SEARCH = 128, 256
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def valid_frames(seq: Sequence) -> np.ndarray:
    """Indices of frames with a visible target and a finite box with ``w, h > 1``."""
    b = seq.boxes
    ok = seq.visible & np.isfinite(b).all(axis=1)
    ok[ok] &= (b[ok, 2] > 1) & (b[ok, 3] > 1)
    return np.flatnonzero(ok)


class PairDataset(Dataset):
    """Template/search pairs from ``sequences``, deterministic per ``(seed, index)``.

    An item is a dict: ``template`` (3, Tz, Tz) and ``search`` (3, S, S) normalised float tensors,
    ``search_box`` (4,) x1,y1,x2,y2 of the target in search-crop pixels, and ``skipped`` (int64
    scalar): unreadable pairs passed over while drawing this item. ``skipped`` (attribute) counts
    them in this process.
    """

    def __init__(self, sequences: list[Sequence], template_size: int, search_size: int, samples_per_epoch: int,
                 max_gap: int, seed: int, augmentation: Mapping[str, float] | None = None,
                 context_amount: float = 0.5, max_attempts: int = 20):
        if max_gap < 0 or samples_per_epoch < 1 or max_attempts < 1:
            raise ValueError("PairDataset: need max_gap >= 0, samples_per_epoch >= 1 and max_attempts >= 1")
        check_section(augmentation or {}, AUGMENTATION_FIELDS, "augmentation")
        self.aug = {**DEFAULT_AUGMENTATION, **{k: float(v) for k, v in (augmentation or {}).items()}}
        self.template_size, self.search_size = int(template_size), int(search_size)
        self.samples_per_epoch, self.max_gap, self.seed = int(samples_per_epoch), int(max_gap), int(seed)
        self.context_amount, self.max_attempts = float(context_amount), int(max_attempts)
        usable = [(seq, valid_frames(seq)) for seq in sequences]
        self.sequences = [seq for seq, v in usable if len(v)]
        self.valid = [v for _, v in usable if len(v)]
        if not self.sequences:
            raise DataError(f"PairDataset: none of {len(sequences)} sequences has a frame with a visible target")
        self.skipped = 0

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if index < 0:
            raise IndexError(f"PairDataset index must be >= 0, got {index}")
        rng = np.random.default_rng([self.seed, int(index)])
        skipped = 0
        last_error: DataError | None = None
        for _ in range(self.max_attempts):
            k = int(rng.integers(len(self.sequences)))
            seq, valid = self.sequences[k], self.valid[k]
            t = int(rng.choice(valid))
            lo, hi = np.searchsorted(valid, [t - self.max_gap, t + self.max_gap + 1])
            s = int(valid[rng.integers(lo, hi)])
            try:
                frames = self._load(seq, (t, s))
            except DataError as err:
                last_error = err
                skipped += 1
                self.skipped += 1
                continue
            return self._make_pair(frames[t], seq.boxes[t], frames[s], seq.boxes[s], rng, skipped)
        raise DataError(f"PairDataset: {self.max_attempts} pairs in a row failed to load for sample {index}; "
                        f"last error: {last_error}")

    @staticmethod
    def _load(seq: Sequence, indices: tuple[int, int]) -> dict[int, np.ndarray]:
        frames: dict[int, np.ndarray] = {}
        for i in indices:
            if i not in frames:
                try:
                    frames[i] = seq.load_frame(i)
                except DataError as err:
                    log.warning("skipping a training pair: cannot read frame %d of %r (%s): %s",
                                i, seq.name, seq.frames[i], err)
                    raise
        return frames

    def _window(self, box_xywh: np.ndarray, out_size: int, base_size: int, shift_px: float, scale: float,
                rng: np.random.Generator) -> CropWindow:
        """A crop window around the target, jittered by a crop-pixel shift and a size factor."""
        x, y, w, h = (float(v) for v in box_xywh)
        side = context_side(w, h, self.context_amount) * out_size / self.template_size
        side *= 1.0 + rng.uniform(-scale, scale)
        shift = shift_px * out_size / base_size
        dx, dy = rng.uniform(-shift, shift, size=2)
        s = out_size / side
        return CropWindow(x + w / 2.0 - dx / s, y + h / 2.0 - dy / s, side, out_size)

    def _photometric(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Colour jitter and blur on one uint8 crop; returns float32 in 0..255."""
        out = image.astype(np.float32)
        if rng.random() < self.aug["color"]:
            k = self.aug["color_strength"]
            brightness, contrast, saturation = rng.uniform(1.0 - k, 1.0 + k, size=3)
            out *= brightness
            gray = out @ _LUMA
            out = (out - gray.mean()) * contrast + gray.mean()
            gray = out @ _LUMA
            out = gray[..., None] + (out - gray[..., None]) * saturation
            np.clip(out, 0.0, 255.0, out=out)
        if rng.random() < self.aug["blur"]:
            out = cv2.GaussianBlur(out, (0, 0), sigmaX=float(rng.uniform(0.5, 1.5)))
        return out

    def _make_pair(self, z_img: np.ndarray, z_box: np.ndarray, x_img: np.ndarray, x_box: np.ndarray,
                   rng: np.random.Generator, skipped: int) -> dict[str, torch.Tensor]:
        a = self.aug
        z_win = self._window(z_box, self.template_size, REFERENCE_TEMPLATE, a["template_shift"],
                             a["template_scale"], rng)
        x_win = self._window(x_box, self.search_size, REFERENCE_SEARCH, a["search_shift"], a["search_scale"], rng)
        z = self._photometric(crop(z_img, z_win), rng)
        x = self._photometric(crop(x_img, x_win), rng)
        if rng.random() < a["gray"]:
            z = np.repeat((z @ _LUMA)[..., None], 3, axis=2)
            x = np.repeat((x @ _LUMA)[..., None], 3, axis=2)
        return {
            "template": to_tensor(z)[0],
            "search": to_tensor(x)[0],
            "search_box": torch.from_numpy(x_win.to_crop(xywh_to_xyxy(x_box)).astype(np.float32)),
            "skipped": torch.tensor(skipped, dtype=torch.int64),
        }


def calibration_batches(sequences: list[Sequence], template_size: int, search_size: int, images: int,
                        batch_size: int = 32, seed: int = 12345) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A fixed set of ``images`` training pairs (no augmentation beyond the crop), in batches."""
    data = PairDataset(sequences, template_size, search_size, samples_per_epoch=images, max_gap=50, seed=seed,
                       augmentation={"color": 0.0, "blur": 0.0, "gray": 0.0})
    batches = []
    for start in range(0, images, batch_size):
        items = [data[i] for i in range(start, min(images, start + batch_size))]
        batches.append((torch.stack([it["template"] for it in items]), torch.stack([it["search"] for it in items])))
    return batches
