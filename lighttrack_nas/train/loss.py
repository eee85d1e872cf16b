"""LightTrack's training loss: balanced BCE on the score map + 1.2 x IoU loss on positive cells."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.targets import build_targets


def balanced_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """0.5 x mean BCE over positive cells + 0.5 x mean BCE over negative cells."""
    logits = logits.reshape(labels.shape)
    pos, neg = labels == 1, labels == 0
    loss = F.binary_cross_entropy_with_logits(logits, labels.clamp(min=0), reduction="none")
    parts = [loss[mask].mean() for mask in (pos, neg) if mask.any()]
    return 0.5 * sum(parts) if len(parts) == 2 else sum(parts)


def iou_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """-log((I + 1) / (U + 1)) of l,t,r,b boxes, averaged over cells with ``weight > 0``."""
    mask = weight > 0
    if not mask.any():
        return pred.sum() * 0.0
    p = pred.permute(0, 2, 3, 1)[mask]
    t = target.permute(0, 2, 3, 1)[mask]
    p_area = (p[:, 0] + p[:, 2]) * (p[:, 1] + p[:, 3])
    t_area = (t[:, 0] + t[:, 2]) * (t[:, 1] + t[:, 3])
    inter_w = torch.minimum(p[:, 0], t[:, 0]) + torch.minimum(p[:, 2], t[:, 2])
    inter_h = torch.minimum(p[:, 1], t[:, 1]) + torch.minimum(p[:, 3], t[:, 3])
    inter = inter_w.clamp(min=0) * inter_h.clamp(min=0)
    union = p_area + t_area - inter
    return -torch.log((inter + 1.0) / (union + 1.0)).mean()


def tracking_loss(cls: torch.Tensor, reg: torch.Tensor, boxes: torch.Tensor, search_size: int, stride: int,
                  radius_px: float = 16.0, reg_weight: float = 1.2) -> dict[str, torch.Tensor]:
    """Loss for a batch of search crops with target boxes ``(B, 4)`` x1,y1,x2,y2 in crop pixels.

    Targets are built for the output map the current path produces (stride 8 or 16), so one loss
    serves every architecture of the space."""
    labels, reg_target, inside = build_targets(boxes, search_size, cls.shape[-1], stride, radius_px)
    cls_loss = balanced_bce(cls, labels)
    reg_loss = iou_loss(reg, reg_target, inside * (labels == 1))
    return {"loss": cls_loss + reg_weight * reg_loss, "cls": cls_loss, "reg": reg_loss}
