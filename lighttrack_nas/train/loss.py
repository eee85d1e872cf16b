"""Training losses: LightTrack's (balanced BCE on the score map + 1.2 x IoU loss on positive cells) for the
NAS and CNN families, OSTrack's (focal 1 + GIoU 2 + L1 5) for the transformer families."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.crop import grid_offset
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


def gaussian_heatmap(boxes: torch.Tensor, search_size: int, score_size: int, stride: int,
                     min_overlap: float = 0.7) -> torch.Tensor:
    """CenterNet / OSTrack heatmap targets ``(B, H, W)``: a Gaussian around the cell nearest each box
    centre (value 1 there), with CenterNet's radius for boxes of that size (IoU >= ``min_overlap``)."""
    b = boxes.to(torch.float32)
    offset = grid_offset(search_size, score_size, stride)
    cells = torch.arange(score_size, dtype=b.dtype, device=b.device)
    cx = ((b[:, 0] + b[:, 2]) / 2 - offset) / stride
    cy = ((b[:, 1] + b[:, 3]) / 2 - offset) / stride
    w, h = (b[:, 2] - b[:, 0]) / stride, (b[:, 3] - b[:, 1]) / stride
    sigma = (2 * centernet_radius(w, h, min_overlap) + 1) / 6
    peak_x, peak_y = cx.round().clamp(0, score_size - 1), cy.round().clamp(0, score_size - 1)
    dx = (cells.view(1, 1, -1) - peak_x.view(-1, 1, 1)) ** 2
    dy = (cells.view(1, -1, 1) - peak_y.view(-1, 1, 1)) ** 2
    return torch.exp(-(dx + dy) / (2 * sigma.view(-1, 1, 1) ** 2))


def centernet_radius(w: torch.Tensor, h: torch.Tensor, min_overlap: float = 0.7) -> torch.Tensor:
    """CenterNet's Gaussian radius (its published formula, each root halved): the smallest of the three
    corner-shift cases keeping IoU >= ``min_overlap``."""
    o = min_overlap
    radii = [(b + torch.sqrt((b ** 2 - 4 * a * c).clamp(min=0))) / 2
             for a, b, c in ((1.0, h + w, w * h * (1 - o) / (1 + o)), (4.0, 2 * (h + w), (1 - o) * w * h),
                             (4 * o, -2 * o * (h + w), (o - 1) * w * h))]
    return torch.stack(radii).min(dim=0).values.clamp(min=0)


def focal_loss(logits: torch.Tensor, heatmap: torch.Tensor) -> torch.Tensor:
    """CenterNet's focal loss (alpha 2, beta 4) on a Gaussian heatmap, normalised by the peaks."""
    p = torch.sigmoid(logits.reshape(heatmap.shape)).clamp(1e-4, 1 - 1e-4)
    pos = heatmap.eq(1).to(p.dtype)
    pos_loss = torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = torch.log(1 - p) * p ** 2 * (1 - heatmap) ** 4 * (1 - pos)
    return -(pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1)


def giou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Generalised IoU of x1,y1,x2,y2 boxes ``(N, 4)`` (elementwise)."""
    area = lambda b: (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)  # noqa: E731
    lt, rb = torch.maximum(pred[:, :2], target[:, :2]), torch.minimum(pred[:, 2:], target[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    union = area(pred) + area(target) - inter
    hull = (torch.maximum(pred[:, 2:], target[:, 2:]) - torch.minimum(pred[:, :2], target[:, :2])).clamp(min=0)
    hull_area = hull.prod(dim=1)
    iou = inter / union.clamp(min=1e-6)
    return iou - (hull_area - union) / hull_area.clamp(min=1e-6)


def ltrb_boxes(reg: torch.Tensor, search_size: int, stride: int) -> torch.Tensor:
    """The x1,y1,x2,y2 box of every cell ``(B, H, W, 4)`` from l,t,r,b distances ``(B, 4, H, W)``."""
    side = reg.shape[-1]
    points = grid_offset(search_size, side, stride) + stride * torch.arange(side, dtype=reg.dtype, device=reg.device)
    px, py = points.view(1, 1, side), points.view(1, side, 1)
    l, t, r, b = reg.unbind(dim=1)
    return torch.stack([px - l, py - t, px + r, py + b], dim=-1)


def box_losses(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, search_size: int) -> dict[str, torch.Tensor]:
    """Weighted mean GIoU loss and L1 (coordinates / ``search_size``) of boxes ``(N, 4)``."""
    w = weight / weight.sum().clamp(min=1e-6)
    return {"giou": ((1 - giou(pred, target)) * w).sum(),
            "l1": ((pred - target).abs().sum(dim=1) / search_size * w).sum() / 4}


def ostrack_loss(cls: torch.Tensor, reg: torch.Tensor, boxes: torch.Tensor, search_size: int, stride: int,
                 focal_weight: float = 1.0, giou_weight: float = 2.0, l1_weight: float = 5.0) -> dict[str, torch.Tensor]:
    """OSTrack's loss: focal 1 + GIoU 2 + L1 5. The box terms are taken at the cells around the target
    centre, weighted by the heatmap where it is at least 0.5 (the peak cell always), so the cells the
    tracker reads near the peak all learn the box."""
    heatmap = gaussian_heatmap(boxes, search_size, cls.shape[-1], stride)
    focal = focal_loss(cls, heatmap)
    mask = heatmap >= 0.5
    pred = ltrb_boxes(reg, search_size, stride)[mask]
    target = boxes.to(pred.dtype).view(-1, 1, 1, 4).expand(*heatmap.shape, 4)[mask]
    parts = box_losses(pred, target, heatmap[mask], search_size)
    reg_loss = giou_weight * parts["giou"] + l1_weight * parts["l1"]
    return {"loss": focal_weight * focal + reg_loss, "cls": focal, "reg": reg_loss, **parts}


def model_loss(model: torch.nn.Module, cls: torch.Tensor, reg: torch.Tensor, boxes: torch.Tensor,
               train_cfg: dict, search_size: int | None = None) -> dict[str, torch.Tensor]:
    """The loss of ``model``'s family (its ``loss`` attribute: ``lighttrack`` by default, or ``ostrack``) on
    search crops of side ``search_size`` (default: the model's own)."""
    name = getattr(model, "loss", "lighttrack")
    search_size = search_size or model.search_size
    if name == "ostrack":
        return ostrack_loss(cls, reg, boxes, search_size, model.stride)
    if name == "lighttrack":
        return tracking_loss(cls, reg, boxes, search_size, model.stride, train_cfg["label_radius_px"],
                             train_cfg["reg_loss_weight"])
    raise ValueError(f"{type(model).__name__}.loss: {name!r} is not one of ['lighttrack', 'ostrack']")
