"""Figures of images beyond RGB: a 1-channel image is shown grey, an image of more than 3 channels by
its first three as RGB (the maps themselves use every channel)."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from gfi.viz.overlay import display_rgb, explanation_figure, save_overlay
from gfi.viz.report import thumbnail


def test_display_rgb_shows_grey_for_one_channel_and_the_first_three_of_more():
    g = torch.rand(1, 5, 6)
    assert torch.equal(display_rgb(g), g.expand(3, 5, 6))
    four = torch.rand(4, 5, 6)
    assert torch.equal(display_rgb(four), four[:3])
    two = torch.rand(2, 5, 6)
    assert torch.equal(display_rgb(two), two[:1].expand(3, 5, 6))
    rgb = torch.rand(3, 5, 6)
    assert display_rgb(rgb) is rgb
    assert display_rgb(torch.rand(2, 1, 5, 6)).shape == (2, 3, 5, 6)  # batches too


def test_the_thumbnail_of_a_grey_image_is_grey():
    image = torch.linspace(0, 1, 64 * 80).view(1, 64, 80)
    pic = np.asarray(Image.open(io.BytesIO(thumbnail(image, side=80))).convert("RGB")).astype(int)
    assert pic.shape == (64, 80, 3)
    assert np.abs(pic - pic[..., :1]).max() <= 2  # JPEG round-off only
    assert pic[..., 0].min() < 20 and pic[..., 0].max() > 235


def test_a_4_channel_image_shows_its_first_three_channels():
    image = torch.zeros(4, 40, 40)
    image[0] = 1.0  # red
    image[3] = 1.0  # the fourth channel is not shown
    pic = np.asarray(Image.open(io.BytesIO(thumbnail(image, side=40))).convert("RGB")).astype(int)
    assert pic[..., 0].min() > 230 and pic[..., 1].max() < 25 and pic[..., 2].max() < 25


def test_overlays_of_1_and_4_channel_images_are_drawn(tmp_path):
    for c in (1, 4):
        image, sal = torch.rand(c, 30, 40), torch.rand(30, 40)
        fig = explanation_figure(image, sal, sal, "a title")
        shown = fig.panels[0][1]
        assert shown.shape == (30, 40, 3)
        expected = display_rgb(image).permute(1, 2, 0).numpy()
        assert np.allclose(np.asarray(shown), expected)
        out = save_overlay(tmp_path / f"o{c}.png", image, sal, title="x")
        assert Image.open(out).size[0] > 40
