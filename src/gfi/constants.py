"""Constants shared by several parts of gfi (imports nothing)."""

from __future__ import annotations

#: the ImageNet training set's per-channel mean and standard deviation of RGB in [0, 1]
#: (torchvision's normalisation; the ``"mean"`` background of Eq. 2 is this colour)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
