"""Pure metric functions on saliency maps (tensors; no model, no files).

Boxes are ``[xmin, ymin, xmax, ymax]`` in pixel units, inclusive (ILSVRC/VOC convention).
"""

from __future__ import annotations

import torch
from torch import Tensor

from gfi.masks.priors import center_prior  # noqa: F401 - the centre baseline, re-exported for metrics users

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


def pointing_hit(saliency: Tensor, boxes: Tensor, tolerance: float = 0) -> bool:
    """Pointing game (Sec. 4.3): the map's maximum lies inside a ground-truth box, or within
    ``tolerance`` pixels of one (Euclidean distance to the box; TorchRay's protocol uses 15).
    Ties: the first maximum in row-major order."""
    x, y = argmax_point(saliency)
    b = boxes.reshape(-1, 4).float()
    dx = torch.clamp(torch.maximum(b[:, 0] - x, x - b[:, 2]), min=0)
    dy = torch.clamp(torch.maximum(b[:, 1] - y, y - b[:, 3]), min=0)
    return bool(((dx ** 2 + dy ** 2) <= tolerance ** 2).any())


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


# -- pointing game extras ---------------------------------------------------------------------
def argmax_point(saliency: Tensor) -> tuple[int, int]:
    """(x, y) of the map's maximum (the first in row-major order on ties)."""
    y, x = divmod(int(saliency.flatten().argmax()), saliency.shape[-1])
    return x, y


def box_union_fraction(boxes: Tensor, height: int, width: int) -> float:
    """Fraction of an ``height`` x ``width`` image covered by the union of inclusive ``boxes``."""
    b = boxes.reshape(-1, 4).float()
    if b.numel() == 0:
        return 0.0
    ys = torch.arange(height).float()
    xs = torch.arange(width).float()
    in_y = (ys[None, :] >= b[:, 1:2]) & (ys[None, :] <= b[:, 3:4])  # (N, H)
    in_x = (xs[None, :] >= b[:, 0:1]) & (xs[None, :] <= b[:, 2:3])  # (N, W)
    covered = (in_y[:, :, None] & in_x[:, None, :]).any(0)
    return float(covered.float().mean())


def is_difficult_pointing(target_boxes: Tensor, other_classes: int, height: int, width: int) -> bool:
    """Zhang et al. (2016)'s difficult subset of the pointing game, per (image, class): the
    class's boxes cover less than a quarter of the image and the image holds another class."""
    return other_classes > 0 and box_union_fraction(target_boxes, height, width) < 0.25


# -- salient objects -----------------------------------------------------------------------------
PR_THRESHOLDS = tuple(i / 100 for i in range(101))


def pr_counts(saliency: Tensor, gt: Tensor, thresholds=PR_THRESHOLDS) -> tuple[Tensor, Tensor, int]:
    """True positives and predicted positives of ``saliency >= t`` for every threshold ``t``
    (``(T,)`` each), and the number of ground-truth pixels."""
    t = torch.as_tensor(thresholds, dtype=saliency.dtype).view(-1, 1)
    flat = saliency.reshape(1, -1)
    g = gt.reshape(1, -1).bool()
    pred = flat >= t
    return (pred & g).sum(1), pred.sum(1), int(g.sum())


def f_beta(precision: Tensor | float, recall: Tensor | float, beta2: float = 0.3):
    """(1 + beta^2) P R / (beta^2 P + R), 0 where both are 0."""
    p = torch.as_tensor(precision, dtype=torch.float64)
    r = torch.as_tensor(recall, dtype=torch.float64)
    den = beta2 * p + r
    return torch.where(den > 0, (1 + beta2) * p * r / den.clamp_min(1e-300), torch.zeros_like(den))


# -- deletion / insertion --------------------------------------------------------------------------
def trapezoid_auc(values: Tensor) -> float:
    """Area under a curve sampled at ``n + 1`` equally spaced points of [0, 1] (trapezoid rule)."""
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    if v.numel() < 2:
        raise ValueError("a curve needs at least two points")
    return float((v[:-1] + v[1:]).sum() / (2 * (v.numel() - 1)))


def step_masks(saliency: Tensor, steps: int) -> Tensor:
    """(steps + 1, H, W) bool: at step k the ``round(k * H * W / steps)`` most salient pixels
    (descending map order, ties by position) are True (Petsiuk et al. 2018)."""
    h, w = saliency.shape
    order = torch.argsort(saliency.flatten(), descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    counts = torch.round(torch.arange(steps + 1, device=order.device, dtype=torch.float64) * (h * w) / steps).long()
    return (rank[None, :] < counts[:, None]).view(steps + 1, h, w)


# -- sanity checks (Adebayo et al. 2018) -----------------------------------------------------------
def rank_average(x: Tensor) -> Tensor:
    """Ranks of the flattened ``x`` (0-based), ties given their average rank."""
    _uniq, inverse, counts = torch.unique(x.flatten(), return_inverse=True, return_counts=True)
    start = torch.cumsum(counts, 0) - counts
    avg = start.double() + (counts.double() - 1) / 2
    return avg[inverse]


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman's rank correlation of two maps (Pearson's r of average ranks); NaN if one is constant."""
    ra, rb = rank_average(a), rank_average(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = (ra.norm() * rb.norm())
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def ssim(a: Tensor, b: Tensor, window: int = 7, data_range: float = 1.0) -> float:
    """Mean structural similarity (Wang et al. 2004) with a ``window`` x ``window`` uniform window,
    sample covariances and K1 = 0.01, K2 = 0.03, over the positions where the window fits
    (scikit-image's ``structural_similarity`` defaults)."""
    import torch.nn.functional as F

    x = torch.stack([a, b]).double()[:, None]
    n = window * window
    if min(x.shape[-2:]) < window:
        raise ValueError(f"maps of size {tuple(a.shape)} are smaller than the SSIM window {window}")

    def mean(t: Tensor) -> Tensor:
        return F.avg_pool2d(t, window, stride=1)

    mu = mean(x)
    ua, ub = mu[0], mu[1]
    cov = n / (n - 1)
    vaa = cov * (mean(x[0:1] ** 2)[0] - ua ** 2)
    vbb = cov * (mean(x[1:2] ** 2)[0] - ub ** 2)
    vab = cov * (mean(x[0:1] * x[1:2])[0] - ua * ub)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ua * ub + c1) * (2 * vab + c2)) / ((ua ** 2 + ub ** 2 + c1) * (vaa + vbb + c2))
    return float(s.mean())
