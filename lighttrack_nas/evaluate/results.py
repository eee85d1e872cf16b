"""Tracking result files: write, read (layout auto-detected) and score against a data set.

Two layouts, both with one ``x,y,w,h`` row per frame, the first frame included:

* ``got10k``: ``NAME/<seq>/<seq>_001.txt`` (runs ``_002``, ``_003`` optional) and
  ``NAME/<seq>/<seq>_time.txt`` (seconds per frame, one per line).
* ``otb`` (OTB, LaSOT, TrackingNet): ``NAME/<seq>.txt`` and optionally ``NAME/<seq>_time.txt``.

Files are written comma separated with ``%.3f``; reading accepts comma, tab or whitespace
separators and ``nan`` entries, so results of other toolkits can be scored unchanged.
"""
from __future__ import annotations

import ast
import glob
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.sequence import Sequence
from ..io import atomic_write
from .metrics import GOT10kResult, OPEResult, Runs, evaluate_got10k, evaluate_ope, frame_rate

LAYOUTS = ("got10k", "otb")
_TIME_SUFFIX = "_time.txt"


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown result layout {layout!r}; choose one of: {', '.join(LAYOUTS)}")


def result_path(folder: str | Path, seq: str, layout: str = "got10k", run: int = 1) -> Path:
    """Where run ``run`` (1-based) of sequence ``seq`` lives under tracker folder ``folder``."""
    _check_layout(layout)
    if layout == "got10k":
        return Path(folder) / seq / f"{seq}_{run:03d}.txt"
    if run != 1:
        raise ValueError(f"the otb layout holds one run per sequence, not run {run}")
    return Path(folder) / f"{seq}.txt"


def time_path(folder: str | Path, seq: str, layout: str = "got10k") -> Path:
    """Where the per-frame times (seconds) of sequence ``seq`` live under ``folder``."""
    _check_layout(layout)
    return Path(folder) / seq / f"{seq}{_TIME_SUFFIX}" if layout == "got10k" else Path(folder) / f"{seq}{_TIME_SUFFIX}"


def write_results(folder: str | Path, seq: str, boxes: np.ndarray, times: np.ndarray | None = None,
                  layout: str = "got10k", run: int = 1) -> Path:
    """Atomically write one run of boxes (``%.3f``, comma separated) and optional per-frame times.

    Returns the box file's path. Times (seconds per frame, ``%.6f``) go with run 1 only.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"sequence {seq!r}: expected (N, 4) x,y,w,h boxes, got shape {boxes.shape}")
    if not 1 <= run <= 3:
        raise ValueError(f"sequence {seq!r}: run must be 1, 2 or 3, not {run}")
    path = result_path(folder, seq, layout, run)
    atomic_write(path, "".join(f"{x:.3f},{y:.3f},{w:.3f},{h:.3f}\n" for x, y, w, h in boxes))
    if times is not None:
        if run != 1:
            raise ValueError(f"sequence {seq!r}: write times with run 1")
        seconds = np.asarray(times, dtype=np.float64).reshape(-1)
        if len(seconds) != len(boxes):
            raise ValueError(f"sequence {seq!r}: {len(seconds)} times for {len(boxes)} boxes")
        atomic_write(time_path(folder, seq, layout), "".join(f"{t:.6f}\n" for t in seconds))
    return path


def _lines(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ValueError(f"{path}: empty result file")
    return lines


def read_boxes(path: str | Path) -> np.ndarray:
    """``(N, 4)`` boxes of a result file; fields separated by commas, tabs or spaces.

    Raises ValueError naming the file and 1-based line of the first malformed row.
    """
    path = Path(path)
    rows = []
    for number, line in enumerate(_lines(path), start=1):
        fields = line.replace(",", " ").split()
        if len(fields) != 4:
            raise ValueError(f"{path} line {number}: expected 4 numbers x,y,w,h, got {len(fields)} fields")
        try:
            rows.append([float(f) for f in fields])
        except ValueError:
            raise ValueError(f"{path} line {number}: not a number in {line.strip()!r}") from None
    return np.asarray(rows, dtype=np.float64)


def read_times(path: str | Path) -> np.ndarray:
    """Per-frame times in seconds (one or more numbers per line, any separator)."""
    path = Path(path)
    values = []
    for number, line in enumerate(_lines(path), start=1):
        try:
            values.extend(float(f) for f in line.replace(",", " ").split())
        except ValueError:
            raise ValueError(f"{path} line {number}: not a number in {line.strip()!r}") from None
    return np.asarray(values, dtype=np.float64)


def detect_layout(folder: str | Path) -> str:
    """``got10k`` when a ``<seq>/<seq>_NNN.txt`` file exists, ``otb`` when ``<seq>.txt`` files do."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: result folder not found")
    got10k = any(sub.is_dir() and any(sub.glob(f"{glob.escape(sub.name)}_[0-9][0-9][0-9].txt"))
                 for sub in folder.iterdir())
    otb = any(p.is_file() and not p.name.endswith(_TIME_SUFFIX) for p in folder.glob("*.txt"))
    if got10k and otb:
        raise ValueError(f"{folder}: holds both <seq>/<seq>_001.txt and <seq>.txt result files; keep one layout")
    if not (got10k or otb):
        raise ValueError(f"{folder}: no result files (expected <seq>/<seq>_001.txt or <seq>.txt)")
    return "got10k" if got10k else "otb"


@dataclass(frozen=True)
class TrackerResults:
    """The result files of one tracker: a folder in one of :data:`LAYOUTS`."""

    folder: Path
    layout: str

    @property
    def name(self) -> str:
        return self.folder.name

    def runs(self, seq: str) -> list[np.ndarray]:
        """Every run of ``seq`` (``_001``, ``_002``, ... in the got10k layout; one in otb)."""
        first = result_path(self.folder, seq, self.layout)
        if not first.is_file():
            raise FileNotFoundError(f"tracker {self.name!r} has no result for sequence {seq!r}: expected {first}")
        if self.layout == "otb":
            return [read_boxes(first)]
        return [read_boxes(p) for p in sorted(first.parent.glob(f"{glob.escape(seq)}_[0-9][0-9][0-9].txt"))]

    def times(self, seq: str) -> np.ndarray | None:
        """Per-frame seconds of ``seq`` or None when no time file exists."""
        path = time_path(self.folder, seq, self.layout)
        return read_times(path) if path.is_file() else None


def open_results(folder: str | Path, layout: str | None = None) -> TrackerResults:
    """Results of the tracker in ``folder`` (its name is the folder's name); layout auto-detected."""
    folder = Path(folder)
    if layout is None:
        layout = detect_layout(folder)
    _check_layout(layout)
    return TrackerResults(folder, layout)


def image_size(seq: Sequence) -> tuple[int, int]:
    """``(width, height)`` of a sequence: its ``resolution`` attribute (``"(640, 480)"``) or first frame."""
    text = seq.attributes.get("resolution")
    if text is not None:
        try:
            width, height = ast.literal_eval(str(text))
            return int(width), int(height)
        except (ValueError, SyntaxError, TypeError):
            raise ValueError(f"sequence {seq.name!r}: resolution {text!r} is not '(width, height)'") from None
    height, width = seq.load_frame(0).shape[:2]
    return int(width), int(height)


@dataclass
class TrackerScore:
    """Every score of one tracker on one data set (see :meth:`to_dict` for the flat view), and the
    search's fitness."""

    name: str
    got10k: GOT10kResult
    ope: OPEResult
    fps: float | None
    sequence_fps: dict[str, float | None]

    @property
    def ao(self) -> float:
        return self.got10k.ao

    @property
    def sr50(self) -> float:
        return self.got10k.sr50

    @property
    def fitness(self) -> float:
        """The search's fitness: (AO + SR0.5) / 2 (REFERENCE.md section 1)."""
        return (self.ao + self.sr50) / 2

    def to_dict(self, per_sequence: bool = True) -> dict:
        """``ao``, ``sr50``, ``sr75``, ``fitness``, ``success_auc``, ``precision20``, ``norm_precision20``,
        ``fps`` and (with ``per_sequence``) ``per_sequence``, the same keys per sequence (and ``ao_frames``,
        the frames its AO counts), as plain JSON-able values."""
        scores = {"ao": self.got10k.ao, "sr50": self.got10k.sr50, "sr75": self.got10k.sr75, "fitness": self.fitness,
                  "success_auc": self.ope.success_auc, "precision20": self.ope.precision20,
                  "norm_precision20": self.ope.norm_precision20, "fps": self.fps}
        if per_sequence:
            scores["per_sequence"] = {
                seq: {**{k: v for k, v in self.got10k.per_sequence[seq].items() if k != "frames"},
                      **{k: v for k, v in self.ope.per_sequence[seq].items() if k != "frames"},
                      "ao_frames": self.got10k.per_sequence[seq]["frames"], "fps": self.sequence_fps[seq]}
                for seq in self.ope.per_sequence
            }
        return scores


def score_results(sequences: list[Sequence], results: TrackerResults) -> TrackerScore:
    """Score a tracker's result files on ``sequences`` with both protocols (see :func:`score_tracks`).

    Every sequence needs a result file and ground truth beyond its first frame (a withheld test
    split cannot be scored here; that is reported before any missing result file).
    """
    _check_scorable(sequences)
    return score_tracks(sequences, {s.name: results.runs(s.name) for s in sequences},
                        {s.name: results.times(s.name) for s in sequences}, results.name)


def score_tracks(sequences: list[Sequence], preds: Mapping[str, Runs],
                 times: Mapping[str, np.ndarray | None] | None = None, name: str = "tracker") -> TrackerScore:
    """Score predicted boxes (one ``(N, 4)`` run or a list of runs per sequence name) with both protocols.

    GOT-10k protocol: frames 2..N with cover label > 0 (``visible`` when a data set has no cover
    labels), boxes clipped to the image, all runs pooled. OPE: every frame with known ground
    truth, absent targets (``visible`` False) counted as failures. ``times`` (seconds per frame,
    first frame included) give the frame rates. Every sequence needs ground truth beyond its
    first frame.
    """
    _check_scorable(sequences)
    times = times or {}
    gts = {seq.name: seq.boxes for seq in sequences}
    covers = {seq.name: seq.cover if seq.cover is not None else seq.visible.astype(np.int64) for seq in sequences}
    timed = [t for t in times.values() if t is not None]
    return TrackerScore(
        name=name,
        got10k=evaluate_got10k(gts, preds, covers, {seq.name: image_size(seq) for seq in sequences}),
        ope=evaluate_ope(gts, preds, {seq.name: seq.visible for seq in sequences}),
        fps=frame_rate(timed),
        sequence_fps={seq.name: None if times.get(seq.name) is None else frame_rate(times[seq.name])
                      for seq in sequences},
    )


def _check_scorable(sequences: list[Sequence]) -> None:
    if not sequences:
        raise ValueError("the data set has no sequences")
    for seq in sequences:
        if not np.isfinite(seq.boxes[1:]).all(axis=1).any():
            raise ValueError(f"sequence {seq.name!r} has no ground truth after its first frame "
                             "(a test split whose annotations are withheld cannot be scored locally)")
