"""Standard single-object tracking metrics: OPE (OTB, LaSOT, TrackingNet) and GOT-10k.

Conventions (docs/evaluation.md gives the full definitions):

* Boxes are ``x, y, w, h`` rows with **continuous coordinates**: a box covers ``[x, x + w)`` by
  ``[y, y + h)``, so ``x2 = x + w`` and the area is ``w * h`` (the GOT-10k toolkit's
  convention; no ``+ 1`` pixel terms). The centre is ``(x + w / 2, y + h / 2)``.
* A predicted row with a NaN (a lost target) scores IoU 0 and an infinite centre error; a box
  with ``w <= 0`` or ``h <= 0`` has no area and scores IoU 0.
* Ground-truth rows with a NaN are unknown (e.g. a withheld test split) and are excluded from
  every metric. Frames whose target is absent (``visible`` False) count as failures in OPE:
  they stay in the divisor but never succeed. GOT-10k instead drops frames whose cover label
  is 0.
"""
from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SUCCESS_THRESHOLDS = np.linspace(0.0, 1.0, 21)
"""IoU thresholds of the OPE success curve: 0, 0.05, ..., 1 (success when IoU > threshold)."""
PRECISION_THRESHOLDS = np.arange(51, dtype=np.float64)
"""Centre-error thresholds of the precision curve in pixels: 0, 1, ..., 50 (success when <=)."""
NORM_PRECISION_THRESHOLDS = np.arange(51, dtype=np.float64) / 100.0
"""Normalised centre-error thresholds: 0, 0.01, ..., 0.5 (success when <=)."""
PRECISION_AT = 20
"""Index of the reported precision (20 px) and normalised precision (0.20) in their curves."""

Boxes = np.ndarray
Runs = np.ndarray | SequenceABC[np.ndarray]


def _as_boxes(boxes: Boxes) -> np.ndarray:
    array = np.asarray(boxes, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"expected an (N, 4) array of x, y, w, h boxes, got shape {array.shape}")
    return array


def clip_boxes(boxes: Boxes, size: tuple[float, float]) -> np.ndarray:
    """Clip ``(N, 4)`` x,y,w,h boxes to the image exactly as the GOT-10k toolkit does: the corner
    is clamped into ``[0, width] x [0, height]``, then ``w`` to ``[0, width - x]`` and ``h`` to
    ``[0, height - y]`` (a box sticking out on the left/top keeps its width). NaN rows stay NaN.
    """
    boxes = _as_boxes(boxes).copy()
    width, height = size
    boxes[:, 0] = np.clip(boxes[:, 0], 0.0, width)
    boxes[:, 1] = np.clip(boxes[:, 1], 0.0, height)
    boxes[:, 2] = np.clip(boxes[:, 2], 0.0, width - boxes[:, 0])
    boxes[:, 3] = np.clip(boxes[:, 3], 0.0, height - boxes[:, 1])
    return boxes


def iou(pred: Boxes, gt: Boxes, size: tuple[float, float] | None = None) -> np.ndarray:
    """Per-row intersection over union of two ``(N, 4)`` x,y,w,h arrays (continuous coordinates).

    With ``size = (width, height)`` both boxes are first clipped to the image (GOT-10k protocol).
    Rows with a NaN, or whose union is empty, give 0.
    """
    pred, gt = _as_boxes(pred), _as_boxes(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"box arrays differ in length: {len(pred)} predicted, {len(gt)} ground truth")
    if size is not None:
        pred, gt = clip_boxes(pred, size), clip_boxes(gt, size)
    pw, ph = np.maximum(pred[:, 2], 0.0), np.maximum(pred[:, 3], 0.0)
    gw, gh = np.maximum(gt[:, 2], 0.0), np.maximum(gt[:, 3], 0.0)
    iw = np.minimum(pred[:, 0] + pw, gt[:, 0] + gw) - np.maximum(pred[:, 0], gt[:, 0])
    ih = np.minimum(pred[:, 1] + ph, gt[:, 1] + gh) - np.maximum(pred[:, 1], gt[:, 1])
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    union = pw * ph + gw * gh - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        result = inter / union
    return np.where(np.isfinite(result) & (union > 0), result, 0.0)


def centres(boxes: Boxes) -> np.ndarray:
    """``(N, 2)`` box centres ``(x + w / 2, y + h / 2)``."""
    boxes = _as_boxes(boxes)
    return boxes[:, :2] + boxes[:, 2:] / 2.0


def centre_error(pred: Boxes, gt: Boxes) -> np.ndarray:
    """Euclidean distance in pixels between predicted and ground-truth centres; NaN rows give inf."""
    delta = centres(pred) - centres(gt)
    return np.nan_to_num(np.hypot(delta[:, 0], delta[:, 1]), nan=np.inf)


def normalized_centre_error(pred: Boxes, gt: Boxes) -> np.ndarray:
    """Centre error divided per axis by the ground-truth width and height, then the Euclidean norm.

    Rows with a NaN or an empty ground-truth box give inf.
    """
    gt = _as_boxes(gt)
    delta = centres(pred) - centres(gt)
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = delta / gt[:, 2:]
    error = np.hypot(scaled[:, 0], scaled[:, 1])
    return np.where(np.isfinite(error) & (gt[:, 2] > 0) & (gt[:, 3] > 0), error, np.inf)


def _runs(name: str, pred: Runs, length: int) -> list[np.ndarray]:
    """The runs of one sequence as a list of ``(length, 4)`` arrays."""
    runs = [pred] if isinstance(pred, np.ndarray) and pred.ndim == 2 else list(pred)
    if not runs:
        raise ValueError(f"sequence {name!r}: no predicted runs")
    runs = [_as_boxes(r) for r in runs]
    for k, run in enumerate(runs, start=1):
        if len(run) != length:
            raise ValueError(f"sequence {name!r}: run {k} has {len(run)} boxes but the ground truth has {length}")
    return runs


def _check_names(gts: Mapping[str, Boxes], preds: Mapping[str, Runs]) -> None:
    if not gts:
        raise ValueError("no sequences to evaluate")
    missing = [name for name in gts if name not in preds]
    if missing:
        raise ValueError(f"no predictions for sequence(s): {', '.join(missing)}")


@dataclass
class OPEResult:
    """One-pass evaluation: curves and scores averaged over sequences (each sequence weighs 1).

    ``success_auc`` is the mean of ``success_curve`` (thresholds :data:`SUCCESS_THRESHOLDS`);
    ``precision20`` and ``norm_precision20`` are the curves at 20 px and 0.20. ``per_sequence``
    maps each sequence to its ``success_auc``, ``precision20``, ``norm_precision20`` and
    ``frames`` (frames scored per run).
    """

    success_auc: float
    precision20: float
    norm_precision20: float
    success_curve: np.ndarray
    precision_curve: np.ndarray
    norm_precision_curve: np.ndarray
    per_sequence: dict[str, dict[str, float]] = field(default_factory=dict)


def evaluate_ope(gts: Mapping[str, Boxes], preds: Mapping[str, Runs],
                 visible: Mapping[str, np.ndarray] | None = None) -> OPEResult:
    """OPE success, precision and normalised precision (OTB, LaSOT, TrackingNet protocol).

    ``gts`` maps sequence names to ``(N, 4)`` ground truth; ``preds`` maps the same names to one
    ``(N, 4)`` array or a list of runs (their frames are pooled, i.e. the run curves averaged).
    All frames are scored, the first included. Ground-truth rows with a NaN are excluded; frames
    whose ``visible`` flag is False (default: ground truth with ``w <= 0`` or ``h <= 0``) count
    as failures at every threshold, so they lower all three scores (LaSOT's rule).
    """
    _check_names(gts, preds)
    success, precision, norm_precision = [], [], []
    per_sequence: dict[str, dict[str, float]] = {}
    for name, gt in gts.items():
        gt = _as_boxes(gt)
        runs = _runs(name, preds[name], len(gt))
        known = np.isfinite(gt).all(axis=1)
        if not known.any():
            raise ValueError(f"sequence {name!r}: no frame has a ground-truth box")
        shown = (gt[:, 2] > 0) & (gt[:, 3] > 0) if visible is None else np.asarray(visible[name], dtype=bool)
        if shown.shape != (len(gt),):
            raise ValueError(f"sequence {name!r}: {shown.size} visibility flags for {len(gt)} frames")
        shown = shown[known]
        overlaps, errors, norm_errors = [], [], []
        for run in runs:
            p, g = run[known], gt[known]
            overlaps.append(np.where(shown, iou(p, g), -1.0))
            errors.append(np.where(shown, centre_error(p, g), np.inf))
            norm_errors.append(np.where(shown, normalized_centre_error(p, g), np.inf))
        o, e, n = np.concatenate(overlaps), np.concatenate(errors), np.concatenate(norm_errors)
        success.append((o[:, None] > SUCCESS_THRESHOLDS[None, :]).mean(axis=0))
        precision.append((e[:, None] <= PRECISION_THRESHOLDS[None, :]).mean(axis=0))
        norm_precision.append((n[:, None] <= NORM_PRECISION_THRESHOLDS[None, :]).mean(axis=0))
        per_sequence[name] = {
            "success_auc": float(success[-1].mean()),
            "precision20": float(precision[-1][PRECISION_AT]),
            "norm_precision20": float(norm_precision[-1][PRECISION_AT]),
            "frames": int(known.sum()),
        }
    s, p, n = np.mean(success, axis=0), np.mean(precision, axis=0), np.mean(norm_precision, axis=0)
    return OPEResult(float(s.mean()), float(p[PRECISION_AT]), float(n[PRECISION_AT]), s, p, n, per_sequence)


@dataclass
class GOT10kResult:
    """GOT-10k scores over the concatenated frames of all sequences (each frame weighs 1).

    ``per_sequence`` maps each sequence to its ``ao``, ``sr50``, ``sr75`` and ``frames`` (IoUs
    pooled over its runs).
    """

    ao: float
    sr50: float
    sr75: float
    frames: int
    per_sequence: dict[str, dict[str, float]] = field(default_factory=dict)


def _scores(overlaps: np.ndarray) -> dict[str, float]:
    return {"ao": float(overlaps.mean()), "sr50": float((overlaps > 0.5).mean()),
            "sr75": float((overlaps > 0.75).mean()), "frames": int(overlaps.size)}


def evaluate_got10k(gts: Mapping[str, Boxes], preds: Mapping[str, Runs],
                    covers: Mapping[str, np.ndarray] | None = None,
                    sizes: Mapping[str, tuple[float, float]] | None = None) -> GOT10kResult:
    """GOT-10k average overlap (AO) and success rates SR0.5 / SR0.75.

    Each sequence contributes the IoUs of frames 2..N whose cover label (``covers``) is > 0 and
    whose ground truth is known (no NaN); with ``covers`` None every such frame counts. ``preds``
    gives one ``(N, 4)`` array or up to three runs per sequence; the IoUs of all runs are
    concatenated. With ``sizes`` (``(width, height)`` per sequence) both boxes are clipped to the
    image first. AO is the mean of all IoUs of all sequences pooled; SRt the fraction > t.
    """
    _check_names(gts, preds)
    pooled, per_sequence = [], {}
    for name, gt in gts.items():
        gt = _as_boxes(gt)
        runs = _runs(name, preds[name], len(gt))
        if len(runs) > 3:
            raise ValueError(f"sequence {name!r}: {len(runs)} runs, the GOT-10k protocol allows at most 3")
        keep = np.isfinite(gt).all(axis=1)
        keep[0] = False
        if covers is not None:
            cover = np.asarray(covers[name]).reshape(-1)
            if cover.shape != (len(gt),):
                raise ValueError(f"sequence {name!r}: {cover.size} cover labels for {len(gt)} frames")
            keep &= cover > 0
        if not keep.any():
            raise ValueError(f"sequence {name!r}: no frame after the first has a visible ground-truth box")
        size = None if sizes is None else sizes[name]
        overlaps = np.concatenate([iou(run[keep], gt[keep], size) for run in runs])
        pooled.append(overlaps)
        per_sequence[name] = _scores(overlaps)
    total = _scores(np.concatenate(pooled))
    return GOT10kResult(total["ao"], total["sr50"], total["sr75"], total["frames"], per_sequence)


def frame_rate(times: np.ndarray | SequenceABC[np.ndarray]) -> float | None:
    """Frames per second: frames timed divided by their total time (seconds per frame).

    Every frame listed counts, the first (initialisation) included; NaN and non-positive entries
    (frames not timed) are skipped. Several arrays are pooled (frame-weighted). None when no
    frame was timed.
    """
    arrays = [times] if isinstance(times, np.ndarray) else list(times)
    if not arrays:
        return None
    seconds = np.concatenate([np.asarray(t, dtype=np.float64).reshape(-1) for t in arrays])
    seconds = seconds[np.isfinite(seconds) & (seconds > 0)]
    return float(seconds.size / seconds.sum()) if seconds.size else None


def paired_bootstrap(gaps: Any, frames: Any = None, resamples: int = 10000, level: float = 0.95,
                     seed: int = 0) -> tuple[float, float, float]:
    """The mean of paired per-sequence AO differences with a percentile bootstrap interval.

    ``gaps`` is ``(seeds, sequences)`` (or one row): every seed scored on the same sequences, so
    seeds and sequences are crossed, and each draw resamples the seeds and, once for all of them,
    the sequences. Sequences are weighted by ``frames`` (the frames AO pools over; equal when None),
    so with one seed the mean is the difference of the two trackers' AO. Returns ``(mean, low, high)``."""
    gaps = np.atleast_2d(np.asarray(gaps, dtype=np.float64))
    if gaps.size == 0:
        raise ValueError("paired bootstrap: no differences")
    if not 0.0 < level < 1.0:
        raise ValueError(f"paired bootstrap: level must be in (0, 1), got {level}")
    seeds, n = gaps.shape
    weights = np.ones(n) if frames is None else np.asarray(frames, dtype=np.float64)
    rng = np.random.default_rng(seed)
    drawn_sequences = rng.integers(0, n, size=(resamples, n))   # first: one seed draws as paired_ao_difference did
    drawn_seeds = rng.integers(0, seeds, size=(resamples, seeds))
    weighted = (gaps * weights)[drawn_seeds].sum(axis=1)          # (resamples, sequences): summed over drawn seeds
    boot = np.take_along_axis(weighted, drawn_sequences, axis=1).sum(axis=1) / (
        seeds * weights[drawn_sequences].sum(axis=1))
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail])
    return float((gaps * weights).sum() / (seeds * weights.sum())), float(low), float(high)


def paired_ao_difference(base: GOT10kResult, other: GOT10kResult, resamples: int = 10000, level: float = 0.95,
                         seed: int = 0) -> tuple[float, float, float]:
    """``other``'s AO minus ``base``'s on the same sequences, with a paired bootstrap interval.

    Sequences are resampled with replacement (both trackers keep the same draw) and AO is pooled
    over the drawn sequences' frames, as AO itself is. Returns ``(difference, low, high)``, the
    interval being the central ``level`` percentile interval of ``resamples`` draws.
    """
    names = sorted(base.per_sequence)
    if sorted(other.per_sequence) != names:
        raise ValueError("paired AO difference: the two results cover different sequences")
    frames = [base.per_sequence[n]["frames"] for n in names]
    gaps = [other.per_sequence[n]["ao"] - base.per_sequence[n]["ao"] for n in names]
    return paired_bootstrap(gaps, frames, resamples, level, seed)
