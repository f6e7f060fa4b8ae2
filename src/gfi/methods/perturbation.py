"""Small pieces shared by the perturbation baselines (``mask``, ``pixel-mask``, ``rise``, ``extremal``).

All of them act on images in pixel space [0, 1] and call the classifier (normalisation inside).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def total_variation(m: Tensor, beta: float) -> Tensor:
    r"""Fong & Vedaldi (2017) Eq. (4)'s TV term, summed over each map of (..., h, w):
    :math:`\sum_u |m(u) - m(u + e_y)|^\beta + |m(u) - m(u + e_x)|^\beta` (anisotropic form)."""
    dy = (m[..., 1:, :] - m[..., :-1, :]).abs().pow(beta).sum((-2, -1))
    dx = (m[..., :, 1:] - m[..., :, :-1]).abs().pow(beta).sum((-2, -1))
    return dy + dx


def shift(x: Tensor, dy: int, dx: int) -> Tensor:
    """``x(. - tau)``: the (..., H, W) batch moved by (dy, dx) >= 0 pixels, edges replicated."""
    if dy == 0 and dx == 0:
        return x
    h, w = x.shape[-2:]
    lead = x.shape[:-2]
    flat = x.reshape(-1, 1, h, w)
    padded = F.pad(flat, (dx, 0, dy, 0), mode="replicate")
    return padded[..., :h, :w].reshape(*lead, h, w)


def target_scores(logits: Tensor, targets: Tensor, multilabel: bool, kind: str = "prob") -> Tensor:
    """f_c for every row: ``logits`` (N, classes), ``targets`` (N,). ``kind``: ``"prob"`` (softmax /
    sigmoid probability) or ``"logit"``."""
    z = logits.float()
    if kind == "logit":
        return z.gather(1, targets.view(-1, 1)).squeeze(1)
    s = torch.sigmoid(z) if multilabel else z.softmax(-1)
    return s.gather(1, targets.view(-1, 1)).squeeze(1)
