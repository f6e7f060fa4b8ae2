"""Integrated Gradients: gfi's reduction of Captum's IG, and completeness."""

import torch

from gfi.methods.registry import get_method
from tests.methods.helpers import minmax


def test_integrated_gradients_is_abs_channel_sum_of_captums_ig_and_complete(region):
    from captum.attr import IntegratedGradients

    clf, x = region
    e = get_method("integrated-gradients", clf, steps=32).explain(x, 0)
    raw = IntegratedGradients(clf).attribute(x, baselines=0.0, target=0, n_steps=32)
    sal = raw.sum(1).abs()
    expected = minmax(sal)
    torch.testing.assert_close(e.maps[:, 0], expected)
    with torch.no_grad():  # completeness: the attributions add up to y_c(x) - y_c(0)
        gap = clf(x)[:, 0] - clf(torch.zeros_like(x))[:, 0]
    torch.testing.assert_close(raw.sum((1, 2, 3)), gap, rtol=2e-2, atol=2e-3)


def test_integrated_gradients_forward_batch_is_a_run_option_that_leaves_the_map(region):
    clf, x = region
    a = get_method("integrated-gradients", clf, steps=8).explain(x, 0)
    b = get_method("integrated-gradients", clf, steps=8, batch_size=5).explain(x, 0)
    torch.testing.assert_close(a.maps, b.maps)
