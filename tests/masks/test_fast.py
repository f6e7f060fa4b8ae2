"""The loop-friendly mask pipeline equals the reference functions, values and gradients."""

import pytest
import torch

from gfi.masks.channel_mask import blend, blend_kept_and_removed, channel_mask, upsample
from gfi.masks.fast import KeptAndRemoved, Upsampler, channel_mask_fast, interpolation_matrix


def test_interpolation_matrix_by_hand():
    # 2 -> 4, align_corners=False: source positions -0.25 (clamped to 0), 0.25, 0.75, 1.25 (-> 1)
    a = interpolation_matrix(2, 4, dtype=torch.float64)
    expected = torch.tensor([[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]], dtype=torch.float64)
    assert torch.allclose(a, expected)


@pytest.mark.parametrize("hw,size", [((7, 7), (224, 224)), ((6, 9), (224, 100)), ((4, 4), (4, 4)), ((14, 3), (50, 7))])
def test_upsampler_equals_interpolate(hw, size):
    g = torch.Generator().manual_seed(0)
    m = torch.rand(2, 3, *hw, generator=g, dtype=torch.float64, requires_grad=True)
    up = Upsampler(hw, size, dtype=torch.float64)
    ours, ref = up(m), upsample(m, size)
    assert torch.allclose(ours, ref, atol=1e-12)
    grad_out = torch.randn(ours.shape, generator=g, dtype=torch.float64)
    (g1,) = torch.autograd.grad(ours, m, grad_out)
    (g2,) = torch.autograd.grad(ref, m, grad_out)
    assert torch.allclose(g1, g2, atol=1e-12)


def test_channel_mask_fast_equals_channel_mask():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
    f = torch.rand(2, 5, 7, 7, generator=g, dtype=torch.float64)
    up = Upsampler((7, 7), (32, 32), dtype=torch.float64)
    for rectify in (False, True):
        a, ca = channel_mask_fast(w, f, up, rectify=rectify)
        b, cb = channel_mask(w, f, (32, 32), rectify=rectify)
        assert torch.allclose(a, b, atol=1e-12) and torch.equal(ca, cb)


def test_kept_and_removed_equals_eq2_and_eq4():
    g = torch.Generator().manual_seed(2)
    x, p = torch.rand(2, 3, 8, 8, generator=g, dtype=torch.float64), torch.rand(2, 3, 8, 8, generator=g,
                                                                                  dtype=torch.float64)
    m = torch.rand(2, 3, 8, 8, generator=g, dtype=torch.float64, requires_grad=True)
    kr = KeptAndRemoved(x, p)
    ours, ref = kr(m), blend_kept_and_removed(x, p, m)
    assert torch.allclose(ours, ref, atol=1e-14)
    assert torch.allclose(kr.kept(m), blend(x, p, m), atol=1e-14)
    # removed image at m = 1 is p, kept image is x (Eq. 2, 4 by hand)
    one = torch.ones(2, 1, 8, 8, dtype=torch.float64)
    assert torch.allclose(kr(one)[0, :, 0], x) and torch.allclose(kr(one)[1, :, 0], p)
    grad_out = torch.randn(ours.shape, generator=g, dtype=torch.float64)
    (g1,) = torch.autograd.grad(ours, m, grad_out)
    (g2,) = torch.autograd.grad(ref, m, grad_out)
    assert torch.allclose(g1, g2, atol=1e-12)
