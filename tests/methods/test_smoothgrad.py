"""SmoothGrad: gfi's reduction of Captum's NoiseTunnel."""

import torch

from gfi.methods.registry import get_method
from tests.methods.helpers import minmax


def test_smoothgrad_is_max_abs_over_channels_of_captums_noise_tunnel(region):
    from captum.attr import NoiseTunnel, Saliency

    clf, x = region
    e = get_method("smoothgrad", clf, samples=8, noise=0.1, seed=3).explain(x, 0)
    torch.manual_seed(3)
    raw = NoiseTunnel(Saliency(clf)).attribute(x, nt_type="smoothgrad", nt_samples=8, nt_samples_batch_size=16,
                                                stdevs=0.1, target=[0, 0], abs=False)
    sal = raw.abs().amax(1)
    expected = minmax(sal)
    torch.testing.assert_close(e.maps[:, 0], expected)


def test_smoothgrad_forward_batch_is_a_run_option_that_leaves_the_map(region):
    clf, x = region
    a = get_method("smoothgrad", clf, samples=8, seed=3).explain(x, 0)
    b = get_method("smoothgrad", clf, samples=8, seed=3, batch_size=3).explain(x, 0)
    assert b.maps.shape == a.maps.shape
    torch.testing.assert_close(a.maps, b.maps)


def test_smoothgrad_draws_captums_noise_over_several_groups(region):
    """20 samples = a group of 16 and one of 4, as Captum draws them with nt_samples_batch_size=16;
    forward batches of 7 images change nothing."""
    from captum.attr import NoiseTunnel, Saliency

    clf, x = region
    ours = get_method("smoothgrad", clf, samples=20, noise=0.1, seed=5, batch_size=7).raw(x, torch.zeros(2, 1).long())
    torch.manual_seed(5)
    ref = NoiseTunnel(Saliency(clf)).attribute(x, nt_type="smoothgrad", nt_samples=20, nt_samples_batch_size=16,
                                                stdevs=0.1, target=[0, 0], abs=False)
    torch.testing.assert_close(ours, ref)
