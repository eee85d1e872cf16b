"""The one sequence interface every data-set reader returns.

Boxes are ``x, y, w, h`` in pixels with continuous coordinates (``x2 = x + w``, the GOT-10k
toolkit's convention). Frames are read lazily as RGB ``uint8`` arrays.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np


class DataError(ValueError):
    """A data file is missing or malformed; the message names the file (and line)."""


@dataclass
class Sequence:
    """One tracking sequence: frame files, per-frame boxes and visibility.

    ``boxes`` is ``(N, 4)`` float64 with NaN rows where the box is unknown (e.g. the test split
    of GOT-10k has only the first box). ``visible`` is ``(N,)`` bool; ``cover`` is the GOT-10k
    cover label (0..8) per frame or None when the data set has none.
    """

    name: str
    frames: list[Path]
    boxes: np.ndarray
    visible: np.ndarray
    cover: np.ndarray | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.visible = np.asarray(self.visible, dtype=bool).reshape(-1)
        n = len(self.frames)
        if len(self.boxes) != n or len(self.visible) != n:
            raise DataError(
                f"sequence {self.name!r}: {n} frames but {len(self.boxes)} boxes and "
                f"{len(self.visible)} visibility flags"
            )
        if self.cover is not None:
            self.cover = np.asarray(self.cover, dtype=np.int64).reshape(-1)
            if len(self.cover) != n:
                raise DataError(f"sequence {self.name!r}: {n} frames but {len(self.cover)} cover labels")

    def __len__(self) -> int:
        return len(self.frames)

    def head(self, frames: int) -> "Sequence":
        """The first ``frames`` frames (all when it has fewer): a causal tracker's boxes on them are the
        first ``frames`` rows of its boxes on the whole sequence."""
        n = min(int(frames), len(self.frames))
        return Sequence(self.name, self.frames[:n], self.boxes[:n], self.visible[:n],
                        None if self.cover is None else self.cover[:n], dict(self.attributes))

    def load_frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as an ``(H, W, 3)`` RGB uint8 array; grayscale files are expanded."""
        path = self.frames[index]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DataError(f"{path}: missing or unreadable image (frame {index} of {self.name!r})")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
