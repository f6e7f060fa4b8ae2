"""The front ends' shared fixture: a small CNN, its Classifier (ImageNet mean and std) and pixels."""

from __future__ import annotations

import pytest
import torch

from gfi.models.classifier import Classifier
from tests.frontends.test_rule import small_net


@pytest.fixture(scope="module")
def setup():
    net = small_net()
    clf = Classifier(net, input_size=(16, 16))  # ImageNet mean and std
    pixels = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    return net, clf, pixels
