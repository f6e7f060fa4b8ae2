"""Extremal Perturbation: the smooth mask, area loss and perturbation by hand; settings checks."""

import pytest
import torch

from gfi.methods.registry import get_method


def test_extremal_smooth_mask_of_one_parameter_by_hand():
    """One parameter at grid cell (3, 2): every pixel's smooth max sees one non-zero value,
    t = k(d / sigma), so m = t e^{20 t} / (e^{20 t} + K - 1)."""
    from gfi.methods.extremal import SmoothMaskGenerator

    gen = SmoothMaskGenerator((16, 16), step=2, sigma=3.0)
    mbar = torch.zeros(1, *gen.shape_in)
    mbar[0, 3, 2] = 1.0
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    d = ((yy - 6) ** 2 + (xx - 4) ** 2).sqrt()
    t = torch.exp(-2 * (d / 3.0 - 0.5).clamp(min=0) ** 2)
    big_k = (2 * gen.radius + 1) ** 2
    near = ((yy // 2 - 3).abs() <= gen.radius) & ((xx // 2 - 2).abs() <= gen.radius)
    expected = torch.where(near, t * torch.exp(20 * t) / (torch.exp(20 * t) + big_k - 1), torch.zeros(()))
    torch.testing.assert_close(gen(mbar)[0], expected)


def test_extremal_area_loss_and_perturbation_by_hand():
    from gfi.methods.extremal import area_loss, blur_pyramid, perturb

    m = torch.zeros(2, 4, 5)
    m[0, :2, :] = 1  # exactly 10 of 20 pixels
    loss = area_loss(m, torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(loss, torch.tensor([0.0, 10 / 20]))
    x = torch.rand(1, 3, 8, 8)
    pyr = blur_pyramid(x, 8, 20.0)
    torch.testing.assert_close(perturb(pyr, torch.ones(1, 8, 8)), x)
    torch.testing.assert_close(perturb(pyr, torch.zeros(1, 8, 8)), pyr[:, 0])
    half = perturb(pyr, torch.full((1, 8, 8), 1.5 / 7))  # halfway between levels 1 and 2
    torch.testing.assert_close(half, (pyr[:, 1] + pyr[:, 2]) / 2)


def test_extremal_rejects_bad_areas(region):
    with pytest.raises(ValueError, match="areas must be fractions"):
        get_method("extremal", region[0], areas=(0.0, 1.5))


def test_extremal_takes_one_area_as_a_number(region):
    e = get_method("extremal", region[0], areas=0.1)
    assert e.config.areas == (0.1,)
