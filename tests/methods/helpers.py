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


def plain(model, size=(4, 4)):
    from gfi.models.classifier import Classifier

    return Classifier(model, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=size)
