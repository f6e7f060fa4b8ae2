"""A tiny classifier whose logits depend on one image region only (the top-left quadrant).

conv 1x1 (3 -> 4, positive weights, negative bias) -> ReLU -> multiply by a fixed indicator of the
top-left quadrant [gate] -> global average pool -> linear (4 -> 3). Class 0 has positive weights on
every channel, so its score grows with the (textured, bright) content of that quadrant and nothing
outside it can change any logit.
"""

from __future__ import annotations

import torch
from torch import nn

SIZE = 16
REGION = (slice(0, SIZE // 2), slice(0, SIZE // 2))  # rows, cols of the quadrant


class Gate(nn.Module):
    def __init__(self, size: int = SIZE) -> None:
        super().__init__()
        ind = torch.zeros(1, 1, size, size)
        ind[..., REGION[0], REGION[1]] = 1.0
        self.register_buffer("indicator", ind)

    def forward(self, x):
        return x * self.indicator


class RegionNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 1)
        self.relu = nn.ReLU()
        self.gate = Gate()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            self.conv.weight.copy_(torch.rand(4, 3, 1, 1, generator=g) + 0.5)
            self.conv.bias.fill_(-1.5)
            self.fc.weight.copy_(torch.tensor([[2.0, 1.5, 1.0, 2.5], [-1.0, 0.5, -0.5, 0.2], [0.3, -1.0, 0.1, -0.2]]))
            self.fc.bias.copy_(torch.tensor([1.0, 0.0, 0.0]))

    def features(self, x):
        return self.gate(self.relu(self.conv(x)))

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


def region_classifier():
    from gfi.models.classifier import Classifier

    return Classifier(RegionNet(), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=(SIZE, SIZE),
                      inversion_layer="gate", channel_layer="gate", class_names=["zero", "one", "two"])


def region_images(n: int = 2, seed: int = 3) -> torch.Tensor:
    """Textured images: uniform noise everywhere (so the quadrant is not special by its pixels)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, SIZE, SIZE, generator=g)


def in_region(saliency: torch.Tensor) -> bool:
    """Whether the (H, W) map's maximum lies in the quadrant."""
    y, x = divmod(int(saliency.flatten().argmax()), saliency.shape[-1])
    return y < SIZE // 2 and x < SIZE // 2
