import torch

from gfi.masks.backgrounds import gaussian_blur, gaussian_kernel1d, make_background
from gfi.masks.channel_mask import blend, blend_kept_and_removed, channel_mask, combine_channels, min_max


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


def test_total_variation_is_the_perimeter_in_image_sides():
    from gfi.masks import total_variation

    m = torch.zeros(2, 8, 8)
    m[0, 2:6, 2:6] = 1  # one square of side 4/8: perimeter 4 * 0.5 = 2
    m[1, 0:2, 0:2] = 1  # two squares of side 2/8 in opposite corners: 2 + 2 edges each
    m[1, 6:8, 6:8] = 1
    # by hand: sum of |vertical| + |horizontal| steps over sqrt(64) = 8
    assert torch.allclose(total_variation(m), torch.tensor([16 / 8, 8 / 8]))
    assert total_variation(torch.ones(3, 5, 5)).abs().max() == 0
    # resolution-free: the same square at 4x the resolution
    big = torch.zeros(32, 32)
    big[8:24, 8:24] = 1
    assert torch.isclose(total_variation(big), torch.tensor(2.0))
