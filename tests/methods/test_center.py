"""Center: a centred Gaussian whatever the input and the model."""

import torch

from gfi.masks.priors import center_prior
from gfi.methods.registry import get_method


def test_center_is_the_centred_gaussian_for_every_target(region):
    clf, x = region
    e = get_method("center", clf).explain(x, [[0, 1], [2, 0]])
    assert e.maps.shape == (2, 2, 16, 16)
    prior = center_prior(16, 16)
    assert torch.equal(e.maps[1, 0], prior) and torch.equal(e.maps[0, 1], prior)
    assert e.maps.max() == prior.max() and float(prior.min()) > 0
    # by hand at the centre pixel (7.5 from each edge: offset 0.5 / (0.25 * 16))
    assert float(prior[7, 7]) == float(torch.exp(torch.tensor(-0.5 * 2 * (0.5 / 4) ** 2)))
