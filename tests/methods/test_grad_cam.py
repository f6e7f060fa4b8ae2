"""Grad-CAM by hand on the quadrant model, its layer setting, and a channel-weight variant as a subclass."""

from __future__ import annotations

import torch
from torch import Tensor

from gfi.methods.grad_cam import GradCAM
from gfi.methods.registry import get_method
from tests.methods.helpers import minmax


def test_grad_cam_is_relu_of_mean_gradient_weighted_features_by_hand(region):
    """On RegionNet, y_c = fc_c . mean(A) + b, so d y_c / d A = fc_c / (h w) everywhere: the
    weights are fc_c / (h w) and the map is ReLU(sum_k fc_ck A_k), min-max normalised."""
    clf, x = region
    e = get_method("gradcam", clf).explain(x, [[0, 2], [0, 2]])
    net = clf.model
    with torch.no_grad():
        feats = net.features(x)
        for k, c in enumerate((0, 2)):
            cam = torch.relu((net.fc.weight[c].view(1, 4, 1, 1) * feats).sum(1))
            torch.testing.assert_close(e.maps[:, k], minmax(cam), atol=1e-6, rtol=1e-5)


def test_grad_cam_layer_setting_and_a_layer_ref(region):
    from gfi.models.layers import LayerRef

    clf, _ = region
    assert GradCAM(clf).layer is None
    assert GradCAM(clf, layer="relu").layer == LayerRef("relu")
    cam = GradCAM(clf, layer=LayerRef("conv", use_input=False))
    assert cam.config.layer == "conv" and cam.provenance() == {"method": "gradcam", "config": {"layer": "conv"}}


class AbsGradCAM(GradCAM):
    """A variant for the test: channel weights from the mean of |gradient| (the whole subclass)."""

    name = "abs-gradcam"
    summary = "test variant"

    def channel_weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        return gradients.abs().mean((2, 3), keepdim=True)


def test_a_cam_variant_is_a_subclass_that_overrides_the_channel_weights(region):
    clf, x = region
    e = AbsGradCAM(clf).explain(x, 1)
    net = clf.model
    with torch.no_grad():
        cam = torch.relu((net.fc.weight[1].abs().view(1, 4, 1, 1) * net.features(x)).sum(1))
    torch.testing.assert_close(e.maps[:, 0], minmax(cam), atol=1e-6, rtol=1e-5)
    assert e.method == "abs-gradcam"
