"""LRP: gfi's reduction of Captum's relevance, and the models it refuses."""

import pytest
import torch

from gfi.errors import NotApplicable
from gfi.methods.lrp import LRPNotSupportedError
from gfi.methods.registry import get_method
from tests.methods.helpers import OneLayer, minmax, plain


def test_lrp_is_positive_channel_sum_of_captums_relevance_and_conserves_it():
    from captum.attr import LRP as CaptumLRP

    net = OneLayer()
    clf = plain(net)
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    e = get_method("lrp", clf).explain(x, 1)
    raw = CaptumLRP(net).attribute(x.clone().requires_grad_(True), target=1)
    sal = raw.sum(1).clamp(min=0)
    expected = minmax(sal)
    torch.testing.assert_close(e.maps[:, 0], expected)


def test_lrp_refuses_residual_additions_and_unknown_layers():
    import torchvision

    resnet = plain(torchvision.models.resnet18(weights=None), (32, 32))
    with pytest.raises(ValueError, match="residual addition"):
        get_method("lrp", resnet).explain(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="no propagation rule for ReLU6"):
        get_method("lrp", plain(OneLayer(torch.nn.ReLU6))).explain(torch.rand(1, 3, 4, 4))


def test_lrp_refusal_is_not_applicable():
    assert issubclass(LRPNotSupportedError, NotApplicable)


def test_the_rules_a_user_set_on_the_model_are_there_after_lrp():
    """Captum's LRP deletes every module's ``rule`` when it is done; the user's (here the one that
    lets LRP through ReLU6) stay, so a second call runs as the first."""
    from captum.attr._utils.lrp_rules import EpsilonRule

    net = OneLayer(torch.nn.ReLU6)
    rule = net.relu.rule = EpsilonRule()
    clf = plain(net)
    x = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    first = get_method("lrp", clf).explain(x, 1).maps
    assert net.relu.rule is rule and not hasattr(net.conv, "rule")
    torch.testing.assert_close(get_method("lrp", clf).explain(x, 1).maps, first)
