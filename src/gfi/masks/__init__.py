"""Shared mask machinery: backgrounds, the channel mask (Eq. 6-7), upsampling, blending (Eq. 2, 4), and
the one projected-gradient optimiser of every mask method."""

from gfi.masks.backgrounds import BACKGROUNDS, gaussian_blur, make_background
from gfi.masks.channel_mask import (
    KeptAndRemoved,
    Upsampler,
    blend,
    blend_kept_and_removed,
    channel_mask,
    combine_channels,
    interpolation_matrix,
    min_max,
    upsample,
)
from gfi.masks.optimizer import EarlyExit, MaskOptimizer, StepDecay
from gfi.masks.priors import center_prior

__all__ = [
    "BACKGROUNDS",
    "EarlyExit",
    "KeptAndRemoved",
    "MaskOptimizer",
    "StepDecay",
    "Upsampler",
    "blend",
    "blend_kept_and_removed",
    "center_prior",
    "channel_mask",
    "combine_channels",
    "gaussian_blur",
    "interpolation_matrix",
    "make_background",
    "min_max",
    "upsample",
]
