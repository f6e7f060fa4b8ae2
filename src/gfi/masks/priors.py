"""Fixed maps that ignore the model: the centre prior (the "Center" baseline, SOD's reference)."""

from __future__ import annotations

import torch
from torch import Tensor


def center_prior(height: int, width: int, sigma_frac: float = 0.25) -> Tensor:
    """A centred Gaussian with sigma = ``sigma_frac`` x each side, max 1 (the "Center" baseline)."""
    ys = (torch.arange(height).float() - (height - 1) / 2) / (sigma_frac * height)
    xs = (torch.arange(width).float() - (width - 1) / 2) / (sigma_frac * width)
    return torch.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2))
