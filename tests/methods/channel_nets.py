"""Small CNNs of 1 and 4 input channels whose score is decided by one planted patch, and a CNN whose
forward takes an extra argument that decides which half of the image it looks at.

:class:`PatchNet`: conv 1x1 (C -> 4) that reads one channel only (``signal``) -> ReLU [l0 = l1 =
``relu``] -> global average pool -> linear (4 -> 3). The conv's threshold is set so that only pixels
of that channel above 0.6 fire, in pixel space: its weights undo the classifier's per-channel
normalisation (a wrong mean or std of that channel moves the threshold and lights the background).
The images (:func:`patch_images`): every channel noise in [0, 1], but the signal channel, which is
dark noise in [0, 0.4] with one textured bright patch in [0.7, 1]: top right in image 0, bottom left
in image 1. Class 0's logit grows with the patch; nothing else moves any logit.

:class:`HalfNet`: a gate keeping the left half of the image (``side`` 0) or the right half (``side``
1) -> conv 1x1 (3 -> 4, negative bias: the gated-off half gives no feature) -> ReLU -> global average
pool -> linear. ``forward(x, side)``: ``side`` is a number or a tensor with one value per row (a
tensor of another number of rows is an error, as in a model that does not broadcast).
:class:`Bound`: the model with ``side`` fixed, for comparison.
"""

from __future__ import annotations

import torch
from torch import nn

SIZE = 32
PATCH = 8
#: (row0, col0) of the patch in image 0 and image 1
CORNERS = ((2, SIZE - PATCH - 2), (SIZE - PATCH - 2, 2))


class PatchNet(nn.Module):
    def __init__(self, channels: int, signal: int, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)
        w = torch.tensor([1.0, 0.8, 1.2, 0.9])  # pixel-space weights of the signal channel
        with torch.no_grad():
            self.conv.weight.zero_()
            # w * x - 0.6 w in pixels, for the normalised z = (x - m) / s: (w s) z + w m - 0.6 w
            self.conv.weight[:, signal, 0, 0] = w * std[signal]
            self.conv.bias.copy_(w * mean[signal] - 0.6 * w)
            self.fc.weight.copy_(torch.tensor([[2.0, 1.5, 1.0, 2.5], [-1.0, 0.5, -0.5, 0.2], [0.3, -1.0, 0.1, -0.2]]))
            self.fc.bias.copy_(torch.tensor([1.0, 0.0, 0.0]))

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.relu(self.conv(x))), 1))


def patch_classifier(channels: int, signal: int | None = None, mean=None, std=None, model=None, **kwargs):
    """The :class:`PatchNet` of ``channels`` channels (signal: the last) in a Classifier with its own
    per-channel normalisation (distinct values per channel); ``model``: another module in its place."""
    from gfi import Classifier

    signal = channels - 1 if signal is None else signal
    mean = mean or tuple(0.3 + 0.1 * c for c in range(channels))
    std = std or tuple(0.2 + 0.05 * c for c in range(channels))
    model = PatchNet(channels, signal, mean, std) if model is None else model
    return Classifier(model, mean=mean, std=std, input_size=(SIZE, SIZE),
                      inversion_layer="relu", channel_layer="relu", class_names=["patch", "one", "two"], **kwargs)


def patch_images(channels: int, signal: int | None = None, seed: int = 0) -> torch.Tensor:
    """Two (channels, SIZE, SIZE) images in [0, 1] with the patch in the signal channel."""
    signal = channels - 1 if signal is None else signal
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, channels, SIZE, SIZE, generator=g)
    x[:, signal] *= 0.4
    for b, (r, c) in enumerate(CORNERS):
        x[b, signal, r:r + PATCH, c:c + PATCH] = 0.7 + 0.3 * torch.rand(PATCH, PATCH, generator=g)
    return x


def in_patch(saliency: torch.Tensor, b: int) -> bool:
    """Whether the (H, W) map's maximum lies in image ``b``'s patch."""
    y, x = divmod(int(saliency.flatten().argmax()), saliency.shape[-1])
    r, c = CORNERS[b]
    return r <= y < r + PATCH and c <= x < c + PATCH


class HalfNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            self.conv.weight.copy_(torch.rand(4, 3, 1, 1, generator=g) + 0.5)
            self.conv.bias.fill_(-1.5)
            self.fc.weight.copy_(torch.tensor([[2.0, 1.5, 1.0, 2.5], [-1.0, 0.5, -0.5, 0.2], [0.3, -1.0, 0.1, -0.2]]))
            self.fc.bias.copy_(torch.tensor([1.0, 0.0, 0.0]))

    def forward(self, x, side):
        n, w = x.shape[0], x.shape[-1]
        # a tensor: one value per row, exactly (a model that does not broadcast); a number: every row
        s = side.to(x.dtype).view(n, 1, 1, 1) if isinstance(side, torch.Tensor) else x.new_ones(n, 1, 1, 1) * side
        right = (torch.arange(w, device=x.device) >= w // 2).to(x.dtype)  # (w,)
        gate = torch.lerp(1 - right, right, s)  # (n, 1, 1, w); no addition, so that LRP applies
        return self.fc(torch.flatten(self.pool(self.relu(self.conv(x * gate))), 1))


class Bound(nn.Module):
    def __init__(self, inner: nn.Module, side: float) -> None:
        super().__init__()
        self.inner, self.side = inner, side

    def forward(self, x):
        return self.inner(x, self.side)


def half_classifier(side: float | None = None, **kwargs):
    """The :class:`HalfNet` classifier; with ``side`` its forward takes the images only (side fixed)."""
    from gfi import Classifier

    net = HalfNet() if side is None else Bound(HalfNet(), side)
    return Classifier(net, mean=0.0, std=1.0, input_size=(16, 16), **kwargs)


def half_of(saliency: torch.Tensor) -> int:
    """0 when the (H, W) map's maximum lies in the left half, 1 in the right."""
    return int(int(saliency.flatten().argmax()) % saliency.shape[-1] >= saliency.shape[-1] // 2)
