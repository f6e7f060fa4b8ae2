r"""The mask pipeline of GFI's loops with its constant parts built once per call.

Same maths as :func:`gfi.masks.channel_mask.channel_mask` and
:func:`gfi.masks.channel_mask.blend_kept_and_removed`, cheaper per iteration:

* Bilinear upsampling (``align_corners=False``) is linear and separable: for a (h, w) map,
  :math:`\mathrm{up}(m) = A_H\, m\, A_W^\top` with :math:`A_H` (H, h) and :math:`A_W` (W, w) the
  interpolation weights (two non-zeros per row). :class:`Upsampler` builds them once, from
  ``F.interpolate`` of the identity, so the weights are torch's own, and applies them as two small
  matrix products, whose backward is two more (``F.interpolate``'s CPU backward is a scatter
  that costs more than the rest of the mask arithmetic together).
* Eq. (2) and Eq. (4) share :math:`d = x - p`: :math:`\Phi = p + d \odot m` and
  :math:`\Phi_{bg} = x - d \odot m`. :class:`KeptAndRemoved` stores ``(p, x)`` and ``(d, -d)`` once
  and writes both images in one ``addcmul`` into the (2, B, K, 3, H, W) batch of the forward
  pass (no stack, no ``1 - m``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gfi.masks.channel_mask import combine_channels, min_max


def interpolation_matrix(n_in: int, n_out: int, *, device=None, dtype=torch.float32) -> Tensor:
    """(n_out, n_in) weights of 1-D linear interpolation, ``align_corners=False`` (torch's rule)."""
    eye = torch.eye(n_in, device=device, dtype=dtype).view(n_in, 1, n_in)
    return F.interpolate(eye, size=n_out, mode="linear", align_corners=False).view(n_in, n_out).t().contiguous()


class Upsampler:
    """Bilinear upsampling of (..., h, w) maps to ``size`` as ``A_H @ m @ A_W^T``."""

    def __init__(self, in_size: tuple[int, int], size: tuple[int, int], *, device=None, dtype=torch.float32):
        self.a_h = interpolation_matrix(in_size[0], size[0], device=device, dtype=dtype)
        self.a_w_t = interpolation_matrix(in_size[1], size[1], device=device, dtype=dtype).t().contiguous()

    def __call__(self, m: Tensor) -> Tensor:
        return torch.matmul(torch.matmul(self.a_h, m), self.a_w_t)


def channel_mask_fast(w: Tensor, features: Tensor, up: Upsampler, rectify: bool = False) -> tuple[Tensor, Tensor]:
    """:func:`gfi.masks.channel_mask.channel_mask` with a prebuilt :class:`Upsampler`."""
    m = combine_channels(w, features)
    m, collapsed = min_max(torch.relu(m) if rectify else m)
    return up(m), collapsed


class KeptAndRemoved:
    """Eq. (2) and Eq. (4) for one batch ``x``, ``p`` (B, 3, H, W): ``self(m)`` with m (B, K, H, W)
    returns (2, B, K, 3, H, W), kept images first (as ``blend_kept_and_removed``)."""

    def __init__(self, x: Tensor, p: Tensor) -> None:
        d = x - p
        self.base = torch.stack((p, x)).unsqueeze(2)      # (2, B, 1, 3, H, W)
        self.signed_d = torch.stack((d, -d)).unsqueeze(2)  # (2, B, 1, 3, H, W)

    def __call__(self, m: Tensor) -> Tensor:
        return torch.addcmul(self.base, self.signed_d, m.unsqueeze(0).unsqueeze(3))

    def kept(self, m: Tensor) -> Tensor:
        """Eq. (2) only: (B, K, 3, H, W)."""
        return torch.addcmul(self.base[0], self.signed_d[0], m.unsqueeze(2))
