"""Shared mask machinery: backgrounds, the channel mask (Eq. 6-7), blending (Eq. 2, 4)."""

from gfi.masks.backgrounds import BACKGROUNDS, gaussian_blur, make_background
from gfi.masks.channel_mask import (
    blend,
    blend_kept_and_removed,
    channel_mask,
    combine_channels,
    min_max,
    total_variation,
    upsample,
)

__all__ = [
    "BACKGROUNDS",
    "blend",
    "blend_kept_and_removed",
    "channel_mask",
    "combine_channels",
    "gaussian_blur",
    "make_background",
    "min_max",
    "total_variation",
    "upsample",
]
