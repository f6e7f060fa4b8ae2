"""Inputs beyond RGB: the classifier's channel count (given or read from the model), per-channel
normalisation, 1- and 4-channel models explained with the maximum on a planted patch, every method
on a 1-channel model, and the refusals (wrong channel count, 3-D volumes)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gfi import Classifier
from gfi.errors import InputError, NotApplicable, UsageError
from gfi.methods.registry import METHODS, get_method, method_class
from gfi.models.memory import activation_bytes
from tests.methods.channel_nets import SIZE, in_patch, patch_classifier, patch_images

GFI_CHEAP = {"iters1": 10, "iters2": 20}


def _conv_net(c_in: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c_in, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 2))


class _NoConv(nn.Module):
    def __init__(self, c: int = 3) -> None:
        super().__init__()
        self.fc = nn.Linear(c * 8 * 8, 2)

    def forward(self, x):
        return self.fc(x.flatten(1))


# -- the channel count -----------------------------------------------------------------------------
def test_channels_are_read_from_the_first_convolution_in_chans_or_config():
    assert Classifier(_conv_net(1), mean=0.5, std=0.2).channels == 1
    assert Classifier(_conv_net(3)).channels == 3
    timm_like = _NoConv(5)
    timm_like.in_chans = 5
    assert Classifier(timm_like, mean=0.0, std=1.0).channels == 5

    class Config:
        num_channels = 2

    hf_like = _NoConv(2)
    hf_like.config = Config()
    assert Classifier(hf_like, mean=0.0, std=1.0).channels == 2


def test_channels_from_mean_std_length_then_rgb_when_the_model_says_nothing():
    assert Classifier(_NoConv(4), mean=(0.1, 0.2, 0.3, 0.4), std=1.0).channels == 4
    assert Classifier(_NoConv(3)).channels == 3  # nothing says otherwise: RGB, ImageNet's normalisation
    assert Classifier(_NoConv(1), mean=0.5, std=0.5, channels=1).channels == 1


def test_scalars_and_equal_values_broadcast_per_channel():
    clf = Classifier(_conv_net(4), mean=0.5, std=(0.25,))
    assert clf.mean.flatten().tolist() == [0.5] * 4 and clf.std.flatten().tolist() == [0.25] * 4
    # a processor's (0.5, 0.5, 0.5) for a 1-channel model is one value for every channel
    assert Classifier(_conv_net(1), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)).mean.flatten().tolist() == [0.5]


def test_contradictions_and_missing_normalisation_are_one_line_errors():
    with pytest.raises(UsageError, match=r"mean has 3 values, but the model takes 1 channel\(s\) \(its first "
                                         r"convolution \(0\) has in_channels=1\).*channels=3"):
        Classifier(_conv_net(1), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    with pytest.raises(UsageError, match=r"a 1-channel model needs its own input normalisation.*mean=0, std=1"):
        Classifier(_conv_net(1))
    with pytest.raises(UsageError, match="mean has 3 values and std 4"):
        Classifier(_NoConv(), mean=(0.1, 0.2, 0.3), std=(1, 2, 3, 4))
    with pytest.raises(UsageError, match="channels must be a positive int"):
        Classifier(_conv_net(1), mean=0.5, std=0.5, channels=0)
    with pytest.raises(UsageError, match="std must be positive"):
        Classifier(_conv_net(1), mean=0.5, std=0.0)
    with pytest.raises(UsageError) as exc:
        Classifier(_conv_net(2), mean=(0.1, 0.2, 0.3), std=1.0)
    assert "\n" not in str(exc.value)


def test_normalisation_is_per_channel():
    clf = Classifier(_conv_net(4), mean=(0.1, 0.2, 0.3, 0.4), std=(0.5, 0.25, 0.2, 0.1))
    x = torch.rand(2, 4, 5, 5, generator=torch.Generator().manual_seed(0))
    by_hand = torch.stack([(x[:, c] - m) / s for c, (m, s) in
                           enumerate(zip((0.1, 0.2, 0.3, 0.4), (0.5, 0.25, 0.2, 0.1), strict=True))], 1)
    torch.testing.assert_close(clf.normalize(x), by_hand)


def test_probes_and_the_mean_background_follow_the_channels():
    clf = Classifier(_conv_net(1), mean=0.3, std=0.2, input_size=(16, 16))
    assert clf.probe_input().shape == (1, 1, 16, 16)
    assert torch.allclose(clf.probe_input(), torch.full((1, 1, 16, 16), (0.5 - 0.3) / 0.2))
    assert activation_bytes(clf, (16, 16)) > 0
    assert clf.background_mean == pytest.approx((0.3,))
    # a 3-channel model keeps the ImageNet colour (the paper's), whatever its own normalisation
    assert Classifier(_conv_net(3), mean=0.5, std=0.5).background_mean == (0.485, 0.456, 0.406)


# -- known answers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 4])
@pytest.mark.parametrize("method,settings", [("gfi", GFI_CHEAP), ("gradcam", {})])
def test_the_map_maximum_lies_on_the_planted_patch(channels, method, settings):
    clf, x = patch_classifier(channels), patch_images(channels)
    with torch.no_grad():
        assert clf(x).argmax(1).tolist() == [0, 0]  # the patch decides the class
    e = get_method(method, clf, **settings).explain(x, 0)
    assert e.maps.shape == (2, 1, SIZE, SIZE)
    for b in range(2):
        assert in_patch(e.maps[b, 0], b), f"{method}, {channels} channels: image {b}'s maximum is off the patch"


def test_the_4_channel_patch_is_found_in_the_fourth_channel_only():
    """The patch is in channel 3; the first three channels are noise everywhere, so a method that saw
    only the first three (RGB) would find nothing."""
    clf, x = patch_classifier(4), patch_images(4)
    with torch.no_grad():
        base = clf(x)[:, 0]
        moved = x.clone()
        moved[:, :3] = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(9))
        torch.testing.assert_close(clf(moved)[:, 0], base)  # RGB does not matter
        assert (base > 1.05).all()  # class 0's bias is 1; the patch adds to it
        dark = x.clone()
        dark[:, 3] *= 0.5
        torch.testing.assert_close(clf(dark)[:, 0], torch.ones(2))  # the fourth channel decides


@pytest.mark.parametrize("background", ["blur", "mean", "noise"])
def test_gfi_runs_with_every_background_on_a_1_channel_model(background):
    clf, x = patch_classifier(1), patch_images(1)
    e = get_method("gfi", clf, background=background, **GFI_CHEAP).explain(x, 0)
    assert torch.isfinite(e.maps).all() and e.maps.shape == (2, 1, SIZE, SIZE)
    if background == "blur":
        assert all(in_patch(e.maps[b, 0], b) for b in range(2))


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_runs_on_a_1_channel_model_or_refuses_in_one_line(name):
    clf, x = patch_classifier(1), patch_images(1)
    explainer = get_method(name, clf, **method_class(name).test_settings)
    try:
        e = explainer.explain(x, 0)
    except NotApplicable as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    assert e.maps.shape == (2, 1, SIZE, SIZE)
    assert torch.isfinite(e.maps).all() and float(e.maps.min()) >= 0 and float(e.maps.max()) <= 1
    # the perturbation methods' cheap settings are tuned to the 16-pixel quadrant model of
    # tests/methods/region_net.py: here they only have to run (the centre prior sees no image)
    if name not in ("center", "mask", "rise", "extremal"):
        assert all(in_patch(e.maps[b, 0], b) for b in range(2)), name


# -- refusals --------------------------------------------------------------------------------------
def test_images_of_another_channel_count_are_refused_in_one_line():
    clf = patch_classifier(1)
    gfi = get_method("gradcam", clf)
    with pytest.raises(InputError, match=r"images have 3 channel\(s\), but the model takes 1: convert them to grey"):
        gfi.explain(torch.rand(1, 3, SIZE, SIZE))
    with pytest.raises(InputError, match=r"images have 3 channel\(s\), but the model takes 1"):
        clf.prepare(torch.rand(3, 40, 40))
    rgb = get_method("gradcam", Classifier(_conv_net(3), input_size=(SIZE, SIZE)))
    with pytest.raises(InputError, match=r"have 1 channel\(s\), but the model takes 3: repeat the grey channel"):
        rgb.explain(torch.rand(1, 1, SIZE, SIZE))


def test_3d_volumes_are_refused_in_one_line_naming_what_is_supported():
    gfi = get_method("gradcam", patch_classifier(1))
    with pytest.raises(InputError) as exc:
        gfi.explain(torch.rand(1, 1, 8, SIZE, SIZE))
    message = str(exc.value)
    assert "3-D volumes (B, C, D, H, W)" in message and "(B, 1, H, W) tensor in [0, 1]" in message
    assert "\n" not in message
