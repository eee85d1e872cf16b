"""Batched classification labels and l,t,r,b regression targets on the score grid.

Cell ``(i, j)`` stands for the search-crop point ``(offset + j * stride, offset + i * stride)``
(see :mod:`lighttrack_nas.data.crop` for the centred-grid convention).
"""
from __future__ import annotations

import torch

from .crop import grid_offset


def build_targets(boxes: torch.Tensor, search_size: int, score_size: int, stride: int,
                  radius_px: float = 16.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Labels for target boxes ``(B, 4)`` x1,y1,x2,y2 in search-crop pixels.

    Returns ``cls_label (B, H, W)``: 1 where the Manhattan distance in cells from the cell's point
    to the box centre is ``<= radius_px / stride``, else 0; ``reg_target (B, 4, H, W)``: l, t, r, b
    distances from the cell's point to the box sides (zero outside the box); ``reg_weight (B, H, W)``:
    1 for cells whose point lies strictly inside the box, else 0 (per-sample normalisation is the
    loss's job).
    """
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"expected boxes of shape (B, 4), got {tuple(boxes.shape)}")
    dtype = boxes.dtype if boxes.is_floating_point() else torch.float32
    b = boxes.to(dtype)
    points = grid_offset(search_size, score_size, stride) + stride * torch.arange(
        score_size, dtype=dtype, device=b.device)
    px = points.view(1, 1, score_size)  # x varies along columns (j)
    py = points.view(1, score_size, 1)  # y varies along rows (i)
    x1, y1, x2, y2 = (b[:, k].view(-1, 1, 1) for k in range(4))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    distance = ((px - cx).abs() + (py - cy).abs()) / stride
    cls_label = (distance <= radius_px / stride).to(dtype)
    ltrb = torch.stack([(px - x1).expand_as(distance), (py - y1).expand_as(distance),
                        (x2 - px).expand_as(distance), (y2 - py).expand_as(distance)], dim=1)
    reg_weight = (ltrb > 0).all(dim=1).to(dtype)
    return cls_label, ltrb * reg_weight.unsqueeze(1), reg_weight
