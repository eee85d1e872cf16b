"""Readers for the standard tracking data sets; each returns ``list[Sequence]``.

Supported layouts (see docs/data.md):

* ``got10k``: ``root/<split>/list.txt``, ``<seq>/00000001.jpg``, ``groundtruth.txt``,
  ``absence.label``, ``cover.label``, ``meta_info.ini``.
* ``lasot``: ``root/<class>/<class>-N/img/00000001.jpg``, ``groundtruth.txt``,
  ``full_occlusion.txt``, ``out_of_view.txt``, optional ``nlp.txt``.
* ``otb``: ``root/<Seq>/img/0001.jpg``, ``groundtruth_rect.txt`` (comma or whitespace
  separated; ``groundtruth_rect.<k>.txt`` gives sequence ``<Seq>-<k>``).
* ``trackingnet``: ``root/<TRAIN_k|TEST>/anno/<vid>.txt`` and ``frames/<vid>/0.jpg, 1.jpg, ...``.
* ``vot``: ``root/list.txt``, ``<seq>/color/00000001.jpg`` or ``<seq>/00000001.jpg``,
  ``groundtruth.txt`` with ``x,y,w,h`` or 8-value polygon rows (converted to their axis-aligned
  bounding box).

Every malformed or missing annotation raises :class:`DataError` naming the file and, where one
applies, the 1-based line. ``visible`` is False where the box is unknown (NaN), empty
(``w <= 0`` or ``h <= 0``) or where the data set's labels mark the target absent.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .sequence import DataError, Sequence

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_SEPARATORS = re.compile(r"[,\s]+")


def _natural_key(path: Path) -> tuple:
    """Sort key that orders ``2.jpg`` before ``10.jpg``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name))


def _list_frames(folder: Path) -> list[Path]:
    """Image files of ``folder`` in natural order; numbered frames must be contiguous."""
    if not folder.is_dir():
        raise DataError(f"{folder}: frame folder not found")
    frames = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
    if not frames:
        raise DataError(f"{folder}: no frame images ({', '.join(IMAGE_SUFFIXES)})")
    stems = [p.stem for p in frames]
    if all(s.isdigit() for s in stems):
        first, width = int(stems[0]), len(stems[0])
        for offset, stem in enumerate(stems):
            if int(stem) != first + offset:
                missing = folder / f"{first + offset:0{width}d}{frames[0].suffix}"
                raise DataError(f"{missing}: missing frame file (frames are numbered from {stems[0]})")
    return frames


def _read_lines(path: Path) -> list[str]:
    """The lines of a text annotation file, trailing blank lines dropped."""
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"{path}: annotation file is empty")
    return lines


def _numbers(path: Path, number: int, text: str, counts: tuple[int, ...]) -> list[float]:
    """Parse one comma/whitespace separated line holding one of ``counts`` numbers."""
    fields = [f for f in _SEPARATORS.split(text.strip()) if f]
    try:
        values = [float(f) for f in fields]
    except ValueError:
        values = []
    if len(values) not in counts or len(fields) != len(values):
        wanted = " or ".join(str(c) for c in counts)
        raise DataError(f"{path} line {number}: expected {wanted} numbers, got {text.strip()!r}")
    return values


def _read_boxes(path: Path, polygons: bool = False) -> np.ndarray:
    """``(N, 4)`` x,y,w,h rows; with ``polygons`` 8-value rows become their bounding box."""
    rows = []
    for number, text in enumerate(_read_lines(path), start=1):
        values = _numbers(path, number, text, (4, 8) if polygons else (4,))
        if len(values) == 8:
            xs, ys = values[0::2], values[1::2]
            values = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        rows.append(values)
    return np.asarray(rows, dtype=np.float64)


def _read_labels(path: Path, count: int, one_line: bool = False) -> np.ndarray:
    """Integer labels, one per line (or all on one comma-separated line); ``count`` expected."""
    lines = _read_lines(path)
    if one_line:
        lines = [f for f in _SEPARATORS.split(lines[0].strip()) if f] if len(lines) == 1 else lines
    labels = []
    for number, text in enumerate(lines, start=1):
        try:
            labels.append(int(float(text.strip())))
        except ValueError:
            where = f"{path} value {number}" if one_line else f"{path} line {number}"
            raise DataError(f"{where}: expected an integer label, got {text.strip()!r}") from None
    if len(labels) != count:
        raise DataError(f"{path}: {len(labels)} labels but {count} frames")
    return np.asarray(labels, dtype=np.int64)


def _read_names(path: Path) -> list[tuple[int, str]]:
    """Non-empty lines of a sequence list file with their 1-based line numbers."""
    if not path.is_file():
        raise DataError(f"{path}: sequence list not found")
    lines = path.read_text(encoding="utf-8").splitlines()
    return [(n, line.strip()) for n, line in enumerate(lines, start=1) if line.strip()]


def _read_meta(path: Path) -> dict[str, str]:
    """``key: value`` lines of a GOT-10k ``meta_info.ini`` (section headers skipped)."""
    meta = {}
    for number, text in enumerate(_read_lines(path), start=1):
        line = text.strip()
        if not line or (line.startswith("[") and line.endswith("]")):
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            raise DataError(f"{path} line {number}: expected 'key: value', got {line!r}")
        meta[key.strip()] = value.strip()
    return meta


def _match(boxes: np.ndarray, frames: list[Path], gt: Path, first_only_ok: bool) -> np.ndarray:
    """Check the annotation count against the frames; a lone first row is padded with NaN."""
    if len(boxes) == len(frames):
        return boxes
    if first_only_ok and len(boxes) == 1:
        padded = np.full((len(frames), 4), np.nan)
        padded[0] = boxes[0]
        return padded
    raise DataError(f"{gt}: {len(boxes)} annotation rows but {len(frames)} frames in {frames[0].parent}")


def _sequence(name: str, frames: list[Path], boxes: np.ndarray, absent: np.ndarray | None = None,
              cover: np.ndarray | None = None, attributes: dict | None = None) -> Sequence:
    visible = np.isfinite(boxes).all(axis=1) & (np.nan_to_num(boxes[:, 2]) > 0) & (np.nan_to_num(boxes[:, 3]) > 0)
    if absent is not None:
        visible &= absent == 0
    if cover is not None:
        visible &= cover > 0
    return Sequence(name, frames, boxes, visible, cover, attributes or {})


def _select(root: Path, split: str | None, names: list[str]) -> list[tuple[str, str]]:
    """Sequence names to read paired with where each came from (for error messages)."""
    if split is None:
        return [(n, str(root / n)) for n in names]
    listing = Path(split)
    return [(n, f"{listing} line {k}") for k, n in _read_names(listing)]


def _split_folder(root: Path, split: str | None, dataset: str) -> Path:
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if split is None or not (root / split).is_dir():
        need = "needs a split" if split is None else f"has no split {split!r}"
        raise DataError(f"{root}: {dataset} {need}; folders found: {', '.join(found) or 'none'}")
    return root / split


def _read_got10k(root: Path, split: str | None) -> list[Sequence]:
    folder = _split_folder(root, split, "got10k")
    listing = folder / "list.txt"
    sequences = []
    for line, name in _read_names(listing):
        seq = folder / name
        if not seq.is_dir():
            raise DataError(f"{listing} line {line}: sequence folder {seq} not found")
        frames = _list_frames(seq)
        gt = seq / "groundtruth.txt"
        boxes = _match(_read_boxes(gt), frames, gt, first_only_ok=split == "test")
        absent = _read_labels(seq / "absence.label", len(frames)) if (seq / "absence.label").exists() else None
        cover = _read_labels(seq / "cover.label", len(frames)) if (seq / "cover.label").exists() else None
        meta = _read_meta(seq / "meta_info.ini") if (seq / "meta_info.ini").exists() else {}
        sequences.append(_sequence(name, frames, boxes, absent, cover, meta))
    return sequences


def _read_lasot(root: Path, split: str | None) -> list[Sequence]:
    names = [s.name for c in sorted(root.iterdir(), key=_natural_key) if c.is_dir()
             for s in sorted(c.iterdir(), key=_natural_key) if s.is_dir() and s.name.startswith(f"{c.name}-")]
    sequences = []
    for name, origin in _select(root, split, names):
        category = name.rsplit("-", 1)[0]
        seq = root / category / name
        if not seq.is_dir():
            raise DataError(f"{origin}: sequence folder {seq} not found")
        frames = _list_frames(seq / "img")
        gt = seq / "groundtruth.txt"
        boxes = _match(_read_boxes(gt), frames, gt, first_only_ok=False)
        hidden = (_read_labels(seq / "full_occlusion.txt", len(frames), one_line=True)
                  | _read_labels(seq / "out_of_view.txt", len(frames), one_line=True))
        attributes = {"class": category}
        if (seq / "nlp.txt").is_file():
            attributes["nlp"] = (seq / "nlp.txt").read_text(encoding="utf-8").strip()
        sequences.append(_sequence(name, frames, boxes, absent=hidden, attributes=attributes))
    return sequences


def _read_otb(root: Path, split: str | None) -> list[Sequence]:
    names = [p.name for p in sorted(root.iterdir(), key=_natural_key) if p.is_dir() and not p.name.startswith(".")]
    sequences = []
    for name, origin in _select(root, split, names):
        seq = root / name
        if not seq.is_dir():
            raise DataError(f"{origin}: sequence folder {seq} not found")
        frames = _list_frames(seq / "img")
        numbered = sorted(seq.glob("groundtruth_rect.*.txt"), key=_natural_key)
        files = [(name, seq / "groundtruth_rect.txt")] if not numbered else [
            (f"{name}-{gt.name.split('.')[1]}", gt) for gt in numbered]
        for seq_name, gt in files:
            boxes = _match(_read_boxes(gt), frames, gt, first_only_ok=False)
            sequences.append(_sequence(seq_name, frames, boxes))
    return sequences


def _read_trackingnet(root: Path, split: str | None) -> list[Sequence]:
    folder = _split_folder(root, split, "trackingnet")
    annotations = sorted((folder / "anno").glob("*.txt"), key=_natural_key)
    if not annotations:
        raise DataError(f"{folder / 'anno'}: no annotation files")
    sequences = []
    for gt in annotations:
        frames = _list_frames(folder / "frames" / gt.stem)
        boxes = _match(_read_boxes(gt), frames, gt, first_only_ok=split == "TEST")
        sequences.append(_sequence(gt.stem, frames, boxes))
    return sequences


def _read_vot(root: Path, split: str | None) -> list[Sequence]:
    listing = Path(split) if split is not None else root / "list.txt"
    sequences = []
    for line, name in _read_names(listing):
        seq = root / name
        if not seq.is_dir():
            raise DataError(f"{listing} line {line}: sequence folder {seq} not found")
        frames = _list_frames(seq / "color" if (seq / "color").is_dir() else seq)
        gt = seq / "groundtruth.txt"
        boxes = _match(_read_boxes(gt, polygons=True), frames, gt, first_only_ok=False)
        sequences.append(_sequence(name, frames, boxes))
    return sequences


READERS: dict[str, Callable[[Path, str | None], list[Sequence]]] = {
    "got10k": _read_got10k,
    "lasot": _read_lasot,
    "otb": _read_otb,
    "trackingnet": _read_trackingnet,
    "vot": _read_vot,
}


def open_dataset(name: str, root: str | Path, split: str | None = None) -> list[Sequence]:
    """Read every sequence of data set ``name`` stored under ``root``.

    ``split`` is the split folder for ``got10k`` (``train``/``val``/``test``) and ``trackingnet``
    (``TRAIN_k``/``TEST``); for ``lasot``, ``otb`` and ``vot`` it is None (all sequences; VOT reads
    ``root/list.txt``) or the path of a text file listing sequence names, one per line.
    """
    reader = READERS.get(name.lower().replace("-", "").replace("_", ""))
    if reader is None:
        raise DataError(f"unknown data set {name!r}; choose one of: {', '.join(READERS)}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data set root not found")
    return reader(root, split)
