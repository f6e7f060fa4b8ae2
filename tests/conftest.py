from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from gfi import threads

# the test process waits as the gfi program does (set before torch is imported, unless the user set
# it): with spinning threads a run beside another busy process took many times as long
if "torch" not in sys.modules:
    os.environ.setdefault(threads.WAIT_POLICY, threads.PASSIVE)

import torch  # after the wait policy
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


def _test_threads() -> int:
    """Up to 2 threads, less the cores other processes keep busy (read over 0.3 s), as the gfi program
    chooses its count; OMP_NUM_THREADS stands."""
    if "OMP_NUM_THREADS" in os.environ:
        return torch.get_num_threads()
    start = threads.CpuSample.now()
    time.sleep(0.3)
    end = threads.CpuSample.now(start.busy) if start else None
    cores = len(start.busy) if start else (os.cpu_count() or 1)
    elsewhere = threads.cores_busy_elsewhere(start, end) if start and end else None
    return threads.free_threads(max(1, min(2, cores)), cores, elsewhere)


@pytest.fixture(scope="session")
def lite0():
    torch.set_num_threads(_test_threads())
    from gfi.models.presets import load_model

    return load_model("efficientnet_lite0")[0]
