"""The channel mask (Eq. 6-7), upsampling and blends (Eq. 2, 4) by hand and against the reference
pipeline of tests/masks/reference.py (values and gradients); the backgrounds."""

import pytest
import torch

from gfi.masks.backgrounds import gaussian_blur, gaussian_kernel1d, make_background
from gfi.masks.channel_mask import (
    KeptAndRemoved,
    Upsampler,
    blend,
    blend_kept_and_removed,
    channel_mask,
    combine_channels,
    interpolation_matrix,
    min_max,
)
from tests.masks import reference


def test_combine_channels_is_eq6_weighted_sum():
    f = torch.tensor([[[[1.0, 2.0]], [[10.0, 0.0]]]])  # (1, 2, 1, 2)
    w = torch.tensor([[[0.5, 0.1]]])  # (1, 1, 2)
    # by hand: 0.5*[1, 2] + 0.1*[10, 0] = [1.5, 1.0]
    assert torch.allclose(combine_channels(w, f), torch.tensor([[[[1.5, 1.0]]]]))


def test_min_max_is_eq7_by_hand():
    m = torch.tensor([[[[2.0, 4.0], [6.0, 10.0]]]])
    out, collapsed = min_max(m)
    assert torch.allclose(out, torch.tensor([[[[0.0, 0.25], [0.5, 1.0]]]]))
    assert not collapsed.any()


def test_min_max_constant_map_is_zero_flagged_and_has_no_nan_gradient():
    w = torch.zeros(1, 1, 2, requires_grad=True)
    f = torch.rand(1, 2, 3, 3)
    out, collapsed = min_max(combine_channels(w, f))
    out.sum().backward()
    assert collapsed.all()
    assert torch.equal(out, torch.zeros_like(out))
    assert torch.isfinite(w.grad).all()


def test_min_max_has_no_epsilon_bias():
    # a tiny but valid range still maps exactly onto [0, 1]
    m = torch.tensor([[[[1e-30, 3e-30]]]])
    out, collapsed = min_max(m)
    assert torch.allclose(out, torch.tensor([[[[0.0, 1.0]]]]))
    assert not collapsed.any()


def test_channel_mask_upsamples_bilinearly_to_size():
    f = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    m, _ = channel_mask(torch.ones(1, 1, 1), f, (2, 4))
    # align_corners=False bilinear of [0, 1] to 4 columns: 0, 0.25, 0.75, 1
    assert torch.allclose(m[0, 0, 0], torch.tensor([0.0, 0.25, 0.75, 1.0]))


def test_blend_eq2_and_eq4_by_hand():
    x = torch.full((1, 3, 1, 2), 1.0)
    p = torch.full((1, 3, 1, 2), 0.2)
    m = torch.tensor([[[[0.25, 1.0]]]])
    kept = blend(x, p, m)  # 1*m + 0.2*(1-m)
    assert torch.allclose(kept[0, 0, 0, 0], torch.tensor([0.4, 1.0]))
    both = blend_kept_and_removed(x, p, m)
    assert torch.allclose(both[0], kept)
    assert torch.allclose(both[1][0, 0, 0, 0], torch.tensor([0.8, 0.2]))  # 1*(1-m) + 0.2*m


def test_gaussian_kernel_matches_formula():
    g = gaussian_kernel1d(11, 5.0, dtype=torch.float64)
    i = torch.arange(11, dtype=torch.float64) - 5
    ref = torch.exp(-(i**2) / 50)
    assert torch.allclose(g, ref / ref.sum())
    assert torch.allclose(g, g.flip(0))


def test_blur_keeps_constant_images_and_smooths_an_impulse():
    x = torch.full((1, 3, 16, 16), 0.3)
    assert torch.allclose(gaussian_blur(x, 11, 5.0), x, atol=1e-6)
    imp = torch.zeros(1, 1, 21, 21)
    imp[0, 0, 10, 10] = 1
    out = gaussian_blur(imp, 11, 5.0)
    assert abs(out.sum().item() - 1) < 1e-5 and out.max() < 0.05


def test_backgrounds():
    x = torch.rand(2, 3, 8, 8)
    mean = make_background(x, "mean")
    assert torch.allclose(mean[1, :, 3, 3], torch.tensor([0.485, 0.456, 0.406]))
    n1 = make_background(x, "noise", generator=torch.Generator().manual_seed(0))
    n2 = make_background(x, "noise", generator=torch.Generator().manual_seed(0))
    assert torch.equal(n1, n2) and n1.min() >= 0 and n1.max() <= 1
    try:
        make_background(x, "zeros")
    except ValueError as exc:
        assert "blur, mean, noise" in str(exc)
    else:
        raise AssertionError("unknown background accepted")


def test_rectified_mask_for_signed_weights():
    f = torch.tensor([[[[1.0, 2.0, 0.0]], [[3.0, 0.0, 0.0]]]])  # (1, 2, 1, 3)
    w = torch.tensor([[[1.0, -1.0]]])
    # by hand: [1-3, 2-0, 0-0] = [-2, 2, 0]; MinMax: [0, 1, 0.5]; ReLU first: [0, 2, 0] -> [0, 1, 0]
    plain, _ = channel_mask(w, f, (1, 3))
    rect, _ = channel_mask(w, f, (1, 3), rectify=True)
    assert torch.allclose(plain[0, 0, 0], torch.tensor([0.0, 1.0, 0.5]))
    assert torch.allclose(rect[0, 0, 0], torch.tensor([0.0, 1.0, 0.0]))


# --- the loop-friendly pipeline equals the reference, values and gradients ---------------------
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
    ours, ref = up(m), reference.upsample(m, size)
    assert torch.allclose(ours, ref, atol=1e-12)
    grad_out = torch.randn(ours.shape, generator=g, dtype=torch.float64)
    (g1,) = torch.autograd.grad(ours, m, grad_out)
    (g2,) = torch.autograd.grad(ref, m, grad_out)
    assert torch.allclose(g1, g2, atol=1e-12)


def test_channel_mask_equals_the_reference():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
    f = torch.rand(2, 5, 7, 7, generator=g, dtype=torch.float64)
    up = Upsampler((7, 7), (32, 32), dtype=torch.float64)
    for rectify in (False, True):
        a, ca = channel_mask(w, f, up, rectify=rectify)
        b, cb = reference.channel_mask(w, f, (32, 32), rectify=rectify)
        assert torch.allclose(a, b, atol=1e-12) and torch.equal(ca, cb)
        c, cc = channel_mask(w, f, (32, 32), rectify=rectify)  # the one-call form: the same code
        assert torch.equal(a, c) and torch.equal(ca, cc)


def test_kept_and_removed_equals_eq2_and_eq4():
    g = torch.Generator().manual_seed(2)
    x, p = torch.rand(2, 3, 8, 8, generator=g, dtype=torch.float64), torch.rand(2, 3, 8, 8, generator=g,
                                                                                  dtype=torch.float64)
    m = torch.rand(2, 3, 8, 8, generator=g, dtype=torch.float64, requires_grad=True)
    kr = KeptAndRemoved(x, p)
    ours, ref = kr(m), reference.blend_kept_and_removed(x, p, m)
    assert torch.allclose(ours, ref, atol=1e-14)
    assert torch.allclose(kr.kept(m), reference.blend(x, p, m), atol=1e-14)
    assert torch.equal(blend_kept_and_removed(x, p, m), ours) and torch.equal(blend(x, p, m), kr.kept(m))
    # removed image at m = 1 is p, kept image is x (Eq. 2, 4 by hand)
    one = torch.ones(2, 1, 8, 8, dtype=torch.float64)
    assert torch.allclose(kr(one)[0, :, 0], x) and torch.allclose(kr(one)[1, :, 0], p)
    grad_out = torch.randn(ours.shape, generator=g, dtype=torch.float64)
    (g1,) = torch.autograd.grad(ours, m, grad_out)
    (g2,) = torch.autograd.grad(ref, m, grad_out)
    assert torch.allclose(g1, g2, atol=1e-12)
