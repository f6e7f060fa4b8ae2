from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
ASSETS = REPO / "src" / "gfi" / "assets"


def need_shared(*parts: str) -> Path:
    """A path under ../shared/data: skipped with a reason when missing, a failure when CI=true."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        msg = f"{path} is missing: these tests need the project's shared dev data next to the repo (../shared/data)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " (CI=true makes missing data a failure)")
        pytest.skip(msg)
    return path


class TinyNet(nn.Module):
    """conv(3->4, 1x1) -> ReLU [l1 = relu] -> AvgPool 2 [l0 = pool] -> flatten -> Linear(4*2*2 -> 5)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, 4, 1)
        self.relu = nn.ReLU()
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(16, 5)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


@pytest.fixture
def tiny():
    from gfi.models.classifier import Classifier

    return Classifier(TinyNet(), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=(4, 4),
                      inversion_layer="pool", channel_layer="relu", class_names=[f"c{i}" for i in range(5)])


@pytest.fixture
def tiny_images():
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 4, 4, generator=g)


@pytest.fixture(scope="session")
def lite0():
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    from gfi.models.presets import load_model

    return load_model("efficientnet_lite0")[0]
