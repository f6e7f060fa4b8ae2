"""Gradient saliency (Simonyan et al. 2014): max over colours of |d y_c / d x|, by hand."""

import torch

from gfi.methods.registry import get_method
from tests.methods.helpers import OneLayer, minmax, plain, spread_pixels


def test_gradient_is_max_abs_of_the_hand_derived_gradient():
    """y_c = v_c . relu(W x + b): d y_c / d x = W^T (v_c * 1[active]) per pixel."""
    net = OneLayer()
    pixels, x = spread_pixels(2)  # the model sees x = (pixels - 0.25) / 0.5, as before
    e = get_method("gradient", plain(net, mean=0.25, std=0.5)).explain(pixels, 2)
    with torch.no_grad():
        z = net.conv(x)[0]
        v = net.fc.weight[2].view(4, 4, 4)
        g = torch.einsum("kc,khw->chw", net.conv.weight[:, :, 0, 0], v * (z > 0).float())
    torch.testing.assert_close(e.maps[0, 0], minmax(g.abs().amax(0)[None])[0])
