"""The README's example of the front ends ("From Captum, pytorch-grad-cam and Quantus"), run as written
(a ResNet-18 with random weights at 224 px)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("pytorch_grad_cam", reason="grad-cam is a test dependency (gfi-explain[test])")
pytest.importorskip("quantus", reason="quantus is a test dependency (gfi-explain[test])")

from tests.test_readme_channels import README, readme_block


@pytest.mark.slow
def test_the_readme_example_of_the_front_ends_runs():
    names: dict = {}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        exec(compile(readme_block("gfi.frontends.cam.GFICAM("), str(README), "exec"), names)
    x = names["x"]
    for key in ("attr", "tabby", "grads"):
        a = names[key]
        assert a.shape == x.shape and torch.isfinite(a).all() and a.min() >= 0 and a.max() <= 1, key
    import gfi.frontends.captum

    # the temperature reached the model (else the call fails); a min-maxed gradient map does not see it
    plain = gfi.frontends.captum.GuidedFeatureInversion(names["model"], method="gradient", **names["norm"])
    assert torch.allclose(names["grads"], plain.attribute(x, target=[281, 281]), atol=1e-5)
    maps = names["maps"]
    assert maps.shape == (2, 224, 224) and maps.dtype == np.float32
    assert np.allclose(maps.reshape(2, -1).max(1), 1) and maps.min() == 0
    assert np.shape(names["scores"]) == (2,)
