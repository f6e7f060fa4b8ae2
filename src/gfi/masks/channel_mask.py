r"""The channel-combination mask of Eq. (6)-(7), bilinear upsampling, and the blends of Eq. (2), (4).

Built for the methods' loops, with the constant parts made once per call:

* Bilinear upsampling (``align_corners=False``) is linear and separable: for a (h, w) map,
  :math:`\mathrm{up}(m) = A_H\, m\, A_W^\top` with :math:`A_H` (H, h) and :math:`A_W` (W, w) the
  interpolation weights (two non-zeros per row). :class:`Upsampler` builds them once, from
  ``F.interpolate`` of the identity, so the weights are torch's own, and applies them as two small
  matrix products, whose backward is two more (``F.interpolate``'s CPU backward is a scatter that
  costs more than the rest of the mask arithmetic together).
* Eq. (2) and Eq. (4) share :math:`d = x - p`: :math:`\Phi = p + d \odot m` and
  :math:`\Phi_{bg} = x - d \odot m`. :class:`KeptAndRemoved` stores ``(p, x)`` and ``(d, -d)`` once
  and writes both images in one ``addcmul`` into the (2, B, K, C, H, W) batch of the forward pass.

:func:`upsample`, :func:`channel_mask`, :func:`blend` and :func:`blend_kept_and_removed` are the
one-call forms of the same code. (The straightforward versions, ``F.interpolate`` and stacked
blends, are kept as the test oracle in ``tests/masks/reference.py``.)
"""

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


def interpolation_matrix(n_in: int, n_out: int, *, device: torch.device | str | None = None,
                         dtype: torch.dtype = torch.float32) -> Tensor:
    """(n_out, n_in) weights of 1-D linear interpolation, ``align_corners=False`` (torch's rule)."""
    eye = torch.eye(n_in, device=device, dtype=dtype).view(n_in, 1, n_in)
    return F.interpolate(eye, size=n_out, mode="linear", align_corners=False).view(n_in, n_out).t().contiguous()


class Upsampler:
    """Bilinear upsampling of (..., h, w) maps to ``size`` as ``A_H @ m @ A_W^T`` (the step after Eq. 7)."""

    def __init__(self, in_size: tuple[int, int], size: tuple[int, int], *,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> None:
        self.in_size, self.size = (int(in_size[0]), int(in_size[1])), (int(size[0]), int(size[1]))
        self.a_h = interpolation_matrix(in_size[0], size[0], device=device, dtype=dtype)
        self.a_w_t = interpolation_matrix(in_size[1], size[1], device=device, dtype=dtype).t().contiguous()

    def __call__(self, m: Tensor) -> Tensor:
        return torch.matmul(torch.matmul(self.a_h, m), self.a_w_t)


def upsample(m: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear upsampling (``align_corners=False``) of (..., h, w) maps to ``size``."""
    return Upsampler(m.shape[-2:], size, device=m.device, dtype=m.dtype)(m)


def channel_mask(w: Tensor, features: Tensor, size: tuple[int, int] | Upsampler,
                 rectify: bool = False) -> tuple[Tensor, Tensor]:
    """Eq. (6), Eq. (7) and bilinear upsampling: ``(m, collapsed)`` with m of shape (B, K, *size).

    ``size`` is the output size or a prebuilt :class:`Upsampler` (in a loop). ``rectify`` applies a
    ReLU to the weighted sum before MinMax (for signed weights, as Grad-CAM does, so that regions
    the weights subtract all map to 0; with w >= 0 and non-negative activations it changes nothing)."""
    up = size if isinstance(size, Upsampler) else Upsampler(
        features.shape[-2:], size, device=features.device, dtype=features.dtype)
    m = combine_channels(w, features)
    m, collapsed = min_max(torch.relu(m) if rectify else m)
    return up(m), collapsed


class KeptAndRemoved:
    r"""Eq. (2) and Eq. (4) for one batch ``x``, ``p`` (B, C, H, W): ``self(m)`` with m (B, K, H, W)
    returns (2, B, K, C, H, W), the kept images :math:`\Phi(x, m) = x \odot m + p \odot (1 - m)`
    first, then the removed images :math:`\Phi_{bg}(x, m) = x \odot (1 - m) + p \odot m`."""

    def __init__(self, x: Tensor, p: Tensor) -> None:
        d = x - p
        self.base = torch.stack((p, x)).unsqueeze(2)      # (2, B, 1, C, H, W)
        self.signed_d = torch.stack((d, -d)).unsqueeze(2)  # (2, B, 1, C, H, W)

    def __call__(self, m: Tensor) -> Tensor:
        return torch.addcmul(self.base, self.signed_d, m.unsqueeze(0).unsqueeze(3))

    def kept(self, m: Tensor) -> Tensor:
        """Eq. (2) only: (B, K, C, H, W)."""
        return torch.addcmul(self.base[0], self.signed_d[0], m.unsqueeze(2))


def blend(x: Tensor, p: Tensor, m: Tensor) -> Tensor:
    r"""Eq. (2): :math:`\Phi(x, m) = x \odot m + p \odot (1 - m)`.

    ``x`` and ``p`` are (B, C, H, W), ``m`` is (B, K, H, W); returns (B, K, C, H, W).
    Eq. (4)'s :math:`\Phi_{bg}` is ``blend(x, p, 1 - m)``.
    """
    return KeptAndRemoved(x, p).kept(m)


def blend_kept_and_removed(x: Tensor, p: Tensor, m: Tensor) -> Tensor:
    """Eq. (2) and Eq. (4) for one batched forward: (2, B, K, C, H, W), kept first."""
    return KeptAndRemoved(x, p)(m)


def resize_maps(saliency: Tensor, size: tuple[int, int]) -> Tensor:
    """(..., h, w) maps resized to ``size`` = (H, W) bilinearly, float32, clamped to [0, 1]: the one
    way a map goes from the model's input size back to an image's own size."""
    lead = saliency.shape[:-2]
    flat = saliency.reshape(-1, 1, *saliency.shape[-2:]).float()
    if tuple(flat.shape[-2:]) != tuple(size):
        flat = F.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False)
    return flat.clamp(0, 1).view(*lead, *size)
