"""Pure metric functions on saliency maps (tensors; no model, no files).

Boxes are ``[xmin, ymin, xmax, ymax]`` in pixel units, inclusive (ILSVRC/VOC convention).
"""

from __future__ import annotations

import torch
from torch import Tensor

PAPER_ALPHAS = tuple(a / 2 for a in range(21))  # 0:0.5:10 (Sec. 4.2)


def box_from_mask(mask: Tensor) -> Tensor | None:
    """The tightest box around all True pixels of an (H, W) mask, or None when the mask is empty."""
    ys = mask.any(1).nonzero()
    xs = mask.any(0).nonzero()
    if ys.numel() == 0:
        return None
    return torch.stack([xs[0, 0], ys[0, 0], xs[-1, 0], ys[-1, 0]]).float()


def iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of inclusive pixel boxes; ``a`` (4,) against ``b`` (N, 4) gives (N,)."""
    b = b.reshape(-1, 4).float()
    a = a.float()
    iw = (torch.minimum(a[2], b[:, 2]) - torch.maximum(a[0], b[:, 0]) + 1).clamp_min(0)
    ih = (torch.minimum(a[3], b[:, 3]) - torch.maximum(a[1], b[:, 1]) + 1).clamp_min(0)
    inter = iw * ih
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    return inter / (area_a + area_b - inter)


def localization_hits(saliency: Tensor, boxes: Tensor, alphas=PAPER_ALPHAS, iou_threshold: float = 0.5) -> Tensor:
    """Sec. 4.2: binarize at ``alpha * mean(map)``, take the tightest box around every kept pixel,
    succeed when IoU >= 0.5 with any ground-truth box. Returns a bool tensor, one per alpha."""
    mean = saliency.mean()
    out = []
    for a in alphas:
        box = box_from_mask(saliency >= a * mean) if a > 0 else box_from_mask(saliency >= saliency.min())
        out.append(bool(box is not None and (iou(box, boxes) >= iou_threshold).any()))
    return torch.tensor(out)


def pointing_hit(saliency: Tensor, boxes: Tensor, tolerance: int = 0) -> bool:
    """Pointing game (Sec. 4.3): the map's maximum lies inside a ground-truth box (within
    ``tolerance`` pixels of it; TorchRay's protocol uses 15). Ties: the first maximum."""
    _h, w = saliency.shape
    idx = int(saliency.flatten().argmax())
    y, x = divmod(idx, w)
    b = boxes.reshape(-1, 4).float()
    t = tolerance
    inside = (x >= b[:, 0] - t) & (x <= b[:, 2] + t) & (y >= b[:, 1] - t) & (y <= b[:, 3] + t)
    return bool(inside.any())


def saliency_scores(saliency: Tensor, gt: Tensor, beta2: float = 0.3) -> dict[str, float]:
    """Sec. 4.4.2 for one image: binarize at twice the mean; precision, recall, F-beta
    (beta^2 = 0.3) and the MAE between the (continuous) map and the binary ground truth."""
    gt = gt.bool()
    pred = saliency >= 2 * saliency.mean()
    tp = (pred & gt).sum().float()
    precision = float(tp / pred.sum().clamp_min(1))
    recall = float(tp / gt.sum().clamp_min(1))
    denom = beta2 * precision + recall
    f = (1 + beta2) * precision * recall / denom if denom > 0 else 0.0
    mae = float((saliency.float() - gt.float()).abs().mean())
    return {"precision": precision, "recall": recall, "f_beta": f, "mae": mae}


def center_prior(height: int, width: int, sigma_frac: float = 0.25) -> Tensor:
    """A centred Gaussian with sigma = ``sigma_frac`` x each side, max 1 (the "Center" baseline)."""
    ys = (torch.arange(height).float() - (height - 1) / 2) / (sigma_frac * height)
    xs = (torch.arange(width).float() - (width - 1) / 2) / (sigma_frac * width)
    return torch.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2))
