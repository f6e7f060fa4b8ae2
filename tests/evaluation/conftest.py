"""Synthetic evaluation datasets: the committed annotation fixtures plus random images made here
(no ImageNet or VOC image is ever committed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch import nn

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "eval"


def build(name: str, dest: Path) -> Path:
    """Copy ``tests/fixtures/eval/<name>`` to ``dest`` and write the images its ``images.txt`` lists."""
    root = dest / name
    shutil.copytree(FIXTURES / name, root)
    rng = np.random.default_rng(0)
    image_dir = {"imagenet": "val", "imagenet_csv": "val"}.get(name, "")
    for line in (root / "images.txt").read_text().splitlines():
        rel, size = line.split()
        w, h = (int(v) for v in size.split("x"))
        path = root / image_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, format="JPEG")
    return root


@pytest.fixture
def dataset_dir(tmp_path):
    return lambda name: build(name, tmp_path / "data")


@pytest.fixture
def tiny20():
    """A 20-class tiny classifier (VOC's classes) on 4x4 inputs."""
    import torch

    from gfi.data.voc import VOC_CLASSES
    from gfi.models.classifier import Classifier

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16, 20))
    return Classifier(model, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=(4, 4), inversion_layer="2",
                      channel_layer="1", class_names=list(VOC_CLASSES), multilabel=True, name="tiny20")
