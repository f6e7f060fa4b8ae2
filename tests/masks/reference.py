"""The straightforward mask pipeline, kept as the oracle of ``gfi.masks.channel_mask``: upsampling by
``F.interpolate`` and the blends of Eq. (2) and Eq. (4) written out and stacked."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gfi.masks.channel_mask import combine_channels, min_max


def upsample(m: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear upsampling of (..., h, w) maps to ``size`` with ``F.interpolate``."""
    lead = m.shape[:-2]
    out = F.interpolate(m.reshape(-1, 1, *m.shape[-2:]), size=size, mode="bilinear", align_corners=False)
    return out.view(*lead, *size)


def channel_mask(w: Tensor, features: Tensor, size: tuple[int, int], rectify: bool = False) -> tuple[Tensor, Tensor]:
    """Eq. (6), Eq. (7) and :func:`upsample`."""
    m = combine_channels(w, features)
    m, collapsed = min_max(torch.relu(m) if rectify else m)
    return upsample(m, size), collapsed


def blend(x: Tensor, p: Tensor, m: Tensor) -> Tensor:
    """Eq. (2): x * m + p * (1 - m); x, p (B, 3, H, W), m (B, K, H, W) -> (B, K, 3, H, W)."""
    m = m.unsqueeze(2)
    return x.unsqueeze(1) * m + p.unsqueeze(1) * (1 - m)


def blend_kept_and_removed(x: Tensor, p: Tensor, m: Tensor) -> Tensor:
    """Eq. (2) and Eq. (4) stacked: (2, B, K, 3, H, W), kept first."""
    return torch.stack((blend(x, p, m), blend(x, p, 1 - m)))
