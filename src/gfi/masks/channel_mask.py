"""The channel-combination mask of Eq. (6)-(7) and the blends of Eq. (2) and Eq. (4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def combine_channels(w: Tensor, features: Tensor) -> Tensor:
    r"""Eq. (6): :math:`m = \sum_i w_i\, f^{l_1}_i(x)`.

    ``w`` is (B, K, C): K weight vectors per image (one per target class);
    ``features`` is (B, C, h, w). Returns (B, K, h, w). One contraction, no loop over channels.
    """
    if w.ndim != 3 or features.ndim != 4 or w.shape[0] != features.shape[0] or w.shape[2] != features.shape[1]:
        raise ValueError(f"weights {tuple(w.shape)} do not match channel features {tuple(features.shape)}")
    return torch.einsum("bkc,bchw->bkhw", w, features)


def min_max(m: Tensor) -> tuple[Tensor, Tensor]:
    r"""Eq. (7): :math:`m \leftarrow (m - \min m) / (\max m - \min m)` over the last two dims.

    A constant map (every weight zero, or channels that are flat) has no defined MinMax. It
    returns zeros there, with no epsilon in the denominator (which would bias every other map),
    and no NaN in the forward or the backward pass. Returns ``(normalised, collapsed)`` where
    ``collapsed`` is a bool tensor over the leading dims.
    """
    flat = m.flatten(-2)
    lo = flat.amin(-1, keepdim=True)
    rng = flat.amax(-1, keepdim=True) - lo
    # "collapsed" = the range vanished relative to the map's magnitude (float round-off only)
    scale = flat.abs().amax(-1, keepdim=True)
    ok = rng > torch.finfo(m.dtype).eps * 4 * scale
    ok = ok & (rng > 0)
    safe = torch.where(ok, rng, torch.ones_like(rng))
    out = torch.where(ok, (flat - lo) / safe, torch.zeros_like(flat))
    return out.view_as(m), ~ok.squeeze(-1)


def upsample(m: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear upsampling of (..., h, w) maps to ``size`` (the step after Eq. (7))."""
    lead = m.shape[:-2]
    out = F.interpolate(m.reshape(-1, 1, *m.shape[-2:]), size=size, mode="bilinear", align_corners=False)
    return out.view(*lead, *size)


def channel_mask(w: Tensor, features: Tensor, size: tuple[int, int], rectify: bool = False) -> tuple[Tensor, Tensor]:
    """Eq. (6), Eq. (7) and bilinear upsampling: ``(m, collapsed)`` with m of shape (B, K, *size).

    ``rectify`` applies a ReLU to the weighted sum before MinMax (for signed weights, as Grad-CAM
    does, so that regions the weights subtract all map to 0; with w >= 0 and non-negative
    activations it changes nothing)."""
    m = combine_channels(w, features)
    m, collapsed = min_max(torch.relu(m) if rectify else m)
    return upsample(m, size), collapsed


def total_variation(m: Tensor) -> Tensor:
    r"""Anisotropic total variation of (..., H, W) masks, in units of the image's side.

    :math:`TV(m) = \frac{1}{\sqrt{HW}} \sum_{u,v} |m_{u+1,v} - m_{u,v}| + |m_{u,v+1} - m_{u,v}|`
    (beyond the paper, which has no smoothness term). With this scale a mask that is 1 on a square
    of side s (as a fraction of a square image's side) and 0 elsewhere has TV = 4 s, its perimeter,
    at any resolution; two such blobs cost twice one. Returns a tensor over the leading dims.
    """
    h, w = m.shape[-2:]
    tv = (m[..., 1:, :] - m[..., :-1, :]).abs().sum((-2, -1)) + (m[..., :, 1:] - m[..., :, :-1]).abs().sum((-2, -1))
    return tv / float(h * w) ** 0.5


def blend(x: Tensor, p: Tensor, m: Tensor) -> Tensor:
    r"""Eq. (2): :math:`\Phi(x, m) = x \odot m + p \odot (1 - m)`.

    ``x`` and ``p`` are (B, 3, H, W), ``m`` is (B, K, H, W); returns (B, K, 3, H, W).
    Eq. (4)'s :math:`\Phi_{bg}` is ``blend(x, p, 1 - m)``.
    """
    m = m.unsqueeze(2)
    return p.unsqueeze(1) + (x - p).unsqueeze(1) * m


def blend_kept_and_removed(x: Tensor, p: Tensor, m: Tensor) -> Tensor:
    """Eq. (2) and Eq. (4) stacked for one batched forward: (2, B, K, 3, H, W), kept first."""
    return torch.stack((blend(x, p, m), blend(x, p, 1 - m)))
