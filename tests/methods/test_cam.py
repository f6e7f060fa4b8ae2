"""CAM: fc weights times features by hand, and the networks it refuses."""

import pytest
import torch

from gfi.errors import NotApplicable
from gfi.methods.registry import get_method
from tests.methods.helpers import plain


def test_cam_is_fc_weights_times_features_by_hand(region):
    clf, x = region
    e = get_method("cam", clf).explain(x, [[0, 2], [0, 2]])
    net = clf.model
    with torch.no_grad():
        feats = net.features(x)  # (B, 4, 16, 16)
        for k, c in enumerate((0, 2)):
            cam = (net.fc.weight[c].view(1, 4, 1, 1) * feats).sum(1)
            lo, hi = cam.amin((1, 2), keepdim=True), cam.amax((1, 2), keepdim=True)
            torch.testing.assert_close(e.maps[:, k], (cam - lo) / (hi - lo))


def test_cam_refuses_a_network_without_gap_and_one_linear_layer():
    nn = torch.nn
    # VGG/AlexNet-like: fully connected layers after the (pooled) features
    vgg_like = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 8),
                             nn.ReLU(), nn.Linear(8, 3))
    with pytest.raises(ValueError, match="global-average-pooled into a single linear layer"):
        get_method("cam", plain(vgg_like, (8, 8))).explain(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"not the output of one nn\.Linear"):
        squashed = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                       torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.Tanh())
        get_method("cam", plain(squashed)).explain(torch.rand(1, 3, 4, 4))


def test_cam_refusal_is_not_applicable():
    from gfi.methods.cam import CAMStructureError

    assert issubclass(CAMStructureError, NotApplicable)
