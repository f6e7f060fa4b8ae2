"""Meaningful Perturbation (``mask``): the first loss and Adam step by hand, settings checks."""

import pytest
import torch

from gfi.methods.registry import get_method
from tests.methods.region_net import SIZE


def test_mask_first_loss_is_the_unperturbed_score(region):
    """At m = 1 nothing is deleted: Phi = x, both priors are 0, so the loss is f_c(x)."""
    clf, x = region
    e = get_method("mask", clf, iterations=1, jitter=1, mask_size=8).explain(x, [0, 1])
    with torch.no_grad():
        expected = clf(x).softmax(-1)[[0, 1], [0, 1]]
    torch.testing.assert_close(e.loss_history["mask"][0, :, 0], expected)
    torch.testing.assert_close(e.probs[:, 0], expected)


def test_mask_one_adam_step_moves_against_the_gradient_sign(region):
    """Adam's first step is lr * sign(g): the deleted amount 1 - m is lr where the score falls."""
    from gfi.masks.backgrounds import gaussian_blur, kernel_for_sigma
    from gfi.masks.channel_mask import upsample
    from gfi.methods.meaningful_perturbation import MeaningfulPerturbation

    clf, x = region
    mp = MeaningfulPerturbation(clf, iterations=1, jitter=1, mask_size=8, mask_blur_sigma=0.0, blur_sigma=3.0, lr=0.1)
    e = mp.explain(x[:1], 0)
    # independent computation of the gradient at m = 1 (the L1 and TV terms have zero gradient there)
    m = torch.ones(1, 1, 8, 8, requires_grad=True)
    p = gaussian_blur(x[:1], kernel_for_sigma(3.0), 3.0)
    big = upsample(m, (SIZE, SIZE))[:, 0]
    phi = x[:1] * big + p * (1 - big)
    clf(phi).softmax(-1)[0, 0].backward()
    deleted = 0.1 * (m.grad[0, 0] > 0).float()  # entries that lower the score when decreased
    expected = upsample(deleted.view(1, 1, 8, 8), (SIZE, SIZE))[0, 0]
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    torch.testing.assert_close(e.maps[0, 0], expected, atol=1e-4, rtol=0)


def test_mask_rejects_bad_settings(region):
    with pytest.raises(ValueError, match="iterations"):
        get_method("mask", region[0], iterations=0)


def test_mask_l1_keyword_is_the_weight_of_the_l1_norm(region):
    from gfi.methods.meaningful_perturbation import MeaningfulPerturbation

    mp = MeaningfulPerturbation(region[0], l1=0.5, iterations=1)
    assert mp.config.l1 == 0.5 and mp.provenance()["config"]["l1"] == 0.5
