"""Guided Backpropagation: the hand-derived rule, Captum's where it applies, hooks and refusals."""

import pytest
import torch

from gfi.errors import NotApplicable
from gfi.methods.registry import get_method
from tests.methods.helpers import OneLayer, minmax, plain, spread_pixels


@pytest.mark.parametrize("relu", [torch.nn.ReLU, torch.nn.ReLU6])
def test_guided_backprop_matches_the_hand_derived_rule(relu):
    """y_c = v_c . relu(W x + b): guided d y_c / d x = W^T (max(v_c, 0) * 1[active]) per pixel."""
    net = OneLayer(relu)
    pixels, x = spread_pixels(2)  # the model sees x = (pixels - 0.25) / 0.5, as before
    e = get_method("guided-backprop", plain(net, mean=0.25, std=0.5)).explain(pixels, 2)
    with torch.no_grad():
        z = net.conv(x)[0]  # (4, 4, 4)
        hi = 6.0 if relu is torch.nn.ReLU6 else float("inf")
        active = ((z > 0) & (z < hi)).float()
        v = net.fc.weight[2].view(4, 4, 4).clamp(min=0)
        g = torch.einsum("kc,khw->chw", net.conv.weight[:, :, 0, 0], v * active)  # (3, 4, 4)
        sal = g.abs().amax(0)
        expected = (sal - sal.min()) / (sal.max() - sal.min())
    torch.testing.assert_close(e.maps[0, 0], expected)
    # and it is not the plain gradient (the rule changes something on this net)
    plain_map = get_method("gradient", plain(net, mean=0.25, std=0.5)).explain(pixels, 2)
    assert not torch.allclose(plain_map.maps, e.maps)


def test_guided_backprop_equals_captums_on_a_relu_resnet_with_inplace_relus():
    """Where Captum's GuidedBackprop applies (nn.ReLU only), both give the same map."""
    import torchvision
    from captum.attr import GuidedBackprop

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=5).eval()
    clf = plain(net, (32, 32))
    x = torch.rand(1, 3, 32, 32)
    ours = get_method("guided-backprop", clf).explain(x, 3).maps[0]
    raw = GuidedBackprop(clf).attribute(x.clone().requires_grad_(True), target=3)
    torch.testing.assert_close(ours, minmax(raw.abs().amax(1)))


def test_guided_backprop_leaves_no_hooks_and_refuses_nets_without_relu_modules():
    net = OneLayer(torch.nn.Tanh)
    with pytest.raises(ValueError, match=r"needs nn\.ReLU or nn\.ReLU6 modules"):
        get_method("guided-backprop", plain(net)).explain(torch.rand(1, 3, 4, 4))
    relu_net = OneLayer()
    get_method("guided-backprop", plain(relu_net)).explain(torch.rand(1, 3, 4, 4))
    assert not relu_net.relu._forward_hooks
    assert all(not p.requires_grad or p.grad is None for p in relu_net.parameters())


def test_guided_backprop_refusal_is_not_applicable():
    with pytest.raises(NotApplicable):
        get_method("guided-backprop", plain(OneLayer(torch.nn.Tanh))).explain(torch.rand(1, 3, 4, 4))
