"""The backgrounds p of Eq. (2) and (4) on images of any number of channels: the blur and the noise
per channel, the mean background per channel (the ImageNet colour for RGB, given values otherwise)."""

from __future__ import annotations

import pytest
import torch

from gfi.errors import SettingsError
from gfi.masks.backgrounds import gaussian_blur, make_background


def test_the_blur_of_a_4_channel_image_is_each_channel_blurred_alone():
    x = torch.rand(2, 4, 20, 24, generator=torch.Generator().manual_seed(0))
    p = make_background(x, "blur", blur_kernel=7, blur_sigma=2.0)
    for c in range(4):
        torch.testing.assert_close(p[:, c:c + 1], gaussian_blur(x[:, c:c + 1], 7, 2.0))
    # a channel that is constant stays that constant (the kernel sums to 1, reflect padding)
    x[:, 2] = 0.25
    assert torch.allclose(make_background(x, "blur", blur_kernel=7, blur_sigma=2.0)[:, 2], torch.tensor(0.25))


def test_the_mean_background_is_per_channel():
    x = torch.rand(1, 4, 8, 8)
    p = make_background(x, "mean", mean=(0.1, 0.2, 0.3, 0.4))
    assert p.shape == x.shape and p[0, :, 3, 5].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert torch.all(make_background(x[:, :1], "mean", mean=(0.7,)) == 0.7)
    assert torch.all(make_background(x, "mean", mean=0.5) == 0.5)  # one value for every channel
    rgb = make_background(torch.rand(1, 3, 4, 4), "mean")
    assert rgb[0, :, 0, 0].tolist() == pytest.approx([0.485, 0.456, 0.406])  # the paper's ImageNet colour


def test_the_mean_background_without_a_colour_for_non_rgb_images_is_a_one_line_error():
    with pytest.raises(SettingsError, match=r"defaults to the ImageNet mean colour.*the input has 1: pass mean="):
        make_background(torch.rand(1, 1, 4, 4), "mean")
    with pytest.raises(SettingsError, match="has 3 values for images of 4 channels"):
        make_background(torch.rand(1, 4, 4, 4), "mean", mean=(0.1, 0.2, 0.3))


def test_the_noise_is_drawn_for_every_channel():
    x = torch.zeros(1, 5, 32, 32)
    p = make_background(x, "noise", noise_std=0.2, generator=torch.Generator().manual_seed(0))
    assert p.shape == x.shape and p.min() >= 0 and p.max() <= 1
    assert not torch.equal(p[0, 0], p[0, 4])  # independent per channel
    assert abs(float(p.mean()) - 0.5) < 0.02
