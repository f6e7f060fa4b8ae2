"""The benchmark's line-by-line GFI (benchmarks/naive_gfi.py) computes the same maps as gfi."""

import sys

import torch

from gfi.methods.gfi import GFIConfig, GuidedFeatureInversion
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from naive_gfi import naive_gfi_batch


def test_naive_gfi_equals_gfi_paper_preset(tiny, tiny_images):
    tiny.model.double()
    x = tiny_images.double()
    targets = [[2, 4], [0, 3]]
    settings = dict(gamma=0.01, delta=0.01, iters1=4, iters2=12, blur_kernel=3, blur_sigma=1.0)
    ours = GuidedFeatureInversion(tiny, GFIConfig.paper(**settings)).explain(x, targets)
    assert not ours.collapsed.any()
    naive, w = naive_gfi_batch(tiny, x, targets, **settings)
    assert torch.allclose(naive, ours.maps, atol=1e-9)
    assert torch.allclose(w, ours.weights, atol=1e-9)
    assert (w > 0).any(-1).all()  # every map has a live channel; w is compared, not only the maps
    # and the comparison can fail: one stage-1 iteration less gives other weights
    _, other = naive_gfi_batch(tiny, x, targets, **{**settings, "iters1": 3})
    assert not torch.allclose(other, ours.weights, atol=1e-6)
