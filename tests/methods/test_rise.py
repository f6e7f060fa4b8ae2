"""RISE: the weighted sum by hand with fixed masks, and the random masks."""

import pytest
import torch

from gfi.methods.registry import get_method
from tests.methods.helpers import minmax
from tests.methods.region_net import SIZE, region_classifier


def test_rise_with_fixed_masks_is_the_weighted_sum_by_hand(region):
    clf, x = region
    g = torch.Generator().manual_seed(7)
    masks = (torch.rand(5, SIZE, SIZE, generator=g) > 0.5).float() * torch.rand(5, 1, 1, generator=g)
    e = get_method("rise", clf, masks=masks, p=0.5, batch_size=3).explain(x, [[0, 1], [2, 0]])
    for b, cls in enumerate(([0, 1], [2, 0])):
        for k, c in enumerate(cls):
            total = torch.zeros(SIZE, SIZE)
            for i in range(5):
                with torch.no_grad():
                    score = clf(x[b:b + 1] * masks[i]).softmax(-1)[0, c]
                total += score * masks[i]
            torch.testing.assert_close(e.maps[b, k], minmax(total / (5 * 0.5)))


def test_rise_masks_are_shifted_upsampled_grids():
    from gfi.methods.rise import rise_masks

    m = rise_masks(200, 4, 0.5, (16, 16), torch.Generator().manual_seed(0))
    assert m.shape == (200, 16, 16)
    assert float(m.min()) >= 0 and float(m.max()) <= 1
    assert abs(float(m.mean()) - 0.5) < 0.05  # E[M] = p
    assert not torch.equal(m[0], m[1])
    with pytest.raises(ValueError, match="masks must be"):
        get_method("rise", region_classifier(), masks=torch.ones(3, 8, 8))


def test_rise_batch_size_is_a_run_option(region):
    clf, x = region
    e = get_method("rise", clf, n_masks=20, grid=4, batch_size=3)
    assert e.options.batch_size == 3 and "batch_size" not in e.config.to_dict()
    ref = get_method("rise", clf, n_masks=20, grid=4).explain(x, 0)
    torch.testing.assert_close(e.explain(x, 0).maps, ref.maps)
