"""Helpers shared by the method tests: a one-layer net with a hand-derivable gradient, a plain
Classifier around a model, and per-map min-max normalisation."""

from __future__ import annotations

import torch


def minmax(sal):
    """(B, H, W) maps min-max normalised per map."""
    lo, hi = sal.amin((-2, -1), keepdim=True), sal.amax((-2, -1), keepdim=True)
    return (sal - lo) / (hi - lo)


class OneLayer(torch.nn.Module):
    """conv 1x1 (3 -> 4) -> ReLU -> flatten -> linear (4*4*4 -> 3)."""

    def __init__(self, relu=torch.nn.ReLU) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(5)
        self.conv = torch.nn.Conv2d(3, 4, 1)
        self.relu = relu()
        self.fc = torch.nn.Linear(64, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).flatten(1))


def plain(model, size=(4, 4), mean=0.0, std=1.0):
    from gfi.models.classifier import Classifier

    return Classifier(model, mean=(mean,) * 3, std=(std,) * 3, input_size=size)


def spread_pixels(seed: int = 2, size=(4, 4)):
    """(pixels in [0, 1], the model's input 2 * pixels - 0.5 in [-0.5, 1.5]) for ``plain(net, mean=0.25,
    std=0.5)``: pre-activations of both signs, from images in the range ``explain`` takes."""
    x01 = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(seed))
    return x01, x01 * 2 - 0.5
