"""Background images p for the blend of Eq. (2) and Eq. (4).

The paper (Sec. 3.2) names three choices of p, all in pixel space [0, 1]:

* ``"blur"``: a Gaussian blur of the input. The paper says "a single Gaussian blur of radius 11".
  Two readings are common: a kernel of 11 pixels with sigma 5 (the reading of Meaningful
  Perturbation code, ``cv2.GaussianBlur(img, (11, 11), 5)``) and sigma = 11. Both are options
  (``blur_kernel``/``blur_sigma``, and ``blur_kernel2``/``blur_sigma2`` for stage 2). The ``paper``
  preset uses kernel 11, sigma 5 in both stages; the default keeps it for stage 1 and blurs stage
  2's p with kernel 81, sigma 20 (beyond the paper). The numbers are in ``docs/METHOD.md``.
* ``"mean"``: a constant image of the ImageNet mean colour (0.485, 0.456, 0.406); for a model of
  another number of channels, of the model's own normalisation mean, one value per channel
  (:attr:`gfi.models.classifier.Classifier.background_mean`).
* ``"noise"``: Gaussian white noise, mean 0.5, standard deviation ``noise_std``, clipped to [0, 1]
  (the paper gives no parameters; this reading keeps p inside the valid pixel range).

Every kind works per channel on (B, C, H, W) images of any C: the blur convolves each channel with
the same Gaussian, the noise is drawn independently for every pixel of every channel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from gfi.constants import IMAGENET_MEAN
from gfi.errors import SettingsError

BackgroundKind = Literal["blur", "mean", "noise"]
BACKGROUNDS: tuple[str, ...] = ("blur", "mean", "noise")


def gaussian_kernel1d(kernel_size: int, sigma: float, *, device=None, dtype=torch.float32) -> Tensor:
    """Normalised 1-D Gaussian ``g[i] ∝ exp(-(i - r)^2 / (2 sigma^2))``, ``r = (kernel_size - 1) / 2``."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise SettingsError(f"blur kernel size must be a positive odd integer, got {kernel_size}")
    if not sigma > 0:
        raise SettingsError(f"blur sigma must be > 0, got {sigma}")
    r = (kernel_size - 1) / 2
    i = torch.arange(kernel_size, device=device, dtype=dtype) - r
    g = torch.exp(-(i**2) / (2 * sigma**2))
    return g / g.sum()


def gaussian_blur(x: Tensor, kernel_size: int = 11, sigma: float = 5.0) -> Tensor:
    """Separable Gaussian blur of a (B, C, H, W) batch with reflect padding (no dark borders)."""
    if x.ndim != 4:
        raise ValueError(f"expected a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    c = x.shape[1]
    g = gaussian_kernel1d(kernel_size, sigma, device=x.device, dtype=x.dtype)
    pad = kernel_size // 2
    # reflect padding needs pad < size; fall back to replicate for tiny inputs
    mode = "reflect" if pad < min(x.shape[-2:]) else "replicate"
    y = F.pad(x, (pad, pad, 0, 0), mode=mode)
    y = F.conv2d(y, g.view(1, 1, 1, -1).expand(c, 1, 1, kernel_size), groups=c)
    y = F.pad(y, (0, 0, pad, pad), mode=mode)
    return F.conv2d(y, g.view(1, 1, -1, 1).expand(c, 1, kernel_size, 1), groups=c)


def kernel_for_sigma(sigma: float) -> int:
    """Odd kernel size covering +-3 sigma, used when only sigma is given."""
    return 2 * math.ceil(3 * sigma) + 1


def make_background(
    x: Tensor,
    kind: BackgroundKind = "blur",
    *,
    blur_kernel: int = 11,
    blur_sigma: float = 5.0,
    noise_std: float = 0.2,
    generator: torch.Generator | None = None,
    mean: Sequence[float] | None = None,
) -> Tensor:
    """Return p for a batch ``x`` of (B, C, H, W) images in [0, 1] (same shape, device, dtype).

    ``mean``: the colour of the ``"mean"`` background, one value per channel (or one for all); None:
    the ImageNet mean colour, which needs C = 3 (a classifier's is its ``background_mean``)."""
    if kind == "blur":
        return gaussian_blur(x, blur_kernel, blur_sigma)
    if kind == "mean":
        c = x.shape[1]
        if mean is None:
            if c != 3:
                raise SettingsError(f"the 'mean' background defaults to the ImageNet mean colour (3 channels); the "
                                    f"input has {c}: pass mean= (one value per channel, e.g. the classifier's "
                                    "background_mean), or use background='blur' or 'noise'")
            mean = IMAGENET_MEAN
        colour = torch.as_tensor(mean, device=x.device, dtype=x.dtype).reshape(-1)
        if colour.numel() not in (1, c):
            raise SettingsError(f"the 'mean' background has {colour.numel()} values for images of {c} channels; "
                                "give one per channel or one for all")
        return colour.view(1, -1, 1, 1).expand_as(x).clone()
    if kind == "noise":
        noise = torch.randn(x.shape, generator=generator, device="cpu", dtype=torch.float32)
        return (0.5 + noise_std * noise).clamp_(0, 1).to(device=x.device, dtype=x.dtype)
    raise SettingsError(f"unknown background {kind!r}; choose one of {', '.join(BACKGROUNDS)}")
