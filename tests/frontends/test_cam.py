"""gfi.frontends.cam.GFICAM: the native maps in pytorch-grad-cam's calling convention."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gfi.errors import UsageError
from gfi.methods.registry import get_method
from tests.frontends.test_rule import quick, small_net

pytest.importorskip("pytorch_grad_cam", reason="grad-cam is a test dependency (gfi-explain[test]); GFICAM takes "
                                               "its ClassifierOutputTarget")
from pytorch_grad_cam.utils.model_targets import (
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
)

from gfi.frontends.cam import GFICAM


@pytest.mark.parametrize("layer", [0, 2])
@pytest.mark.parametrize("method", ["gfi", "gradcam"])
def test_cam_is_the_native_map_with_the_target_layer_as_l0_and_l1(setup, method, layer):
    net, clf, p = setup
    native = clf.with_layers(inversion_layer=str(layer), channel_layer=str(layer))
    want = get_method(method, native, **quick(method)).explain(p, [1, 2]).maps[:, 0].numpy()
    with GFICAM(clf, target_layers=[net[layer]], method=method, **quick(method)) as cam:
        got = cam(input_tensor=p, targets=[ClassifierOutputTarget(1), ClassifierOutputTarget(2)])
    assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == (2, 16, 16)
    assert got.min() >= 0 and got.max() <= 1
    assert (want.reshape(2, -1).std(1) > 0.05).all(), "the maps are flat: the comparison would prove nothing"
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_targets_none_is_the_top_1_class(setup):
    net, clf, p = setup
    native = clf.with_layers("2", "2")
    want = get_method("gradcam", native).explain(p, None).maps[:, 0].numpy()
    got = GFICAM(clf, [net[2]], method="gradcam")(p, None)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    top = np.asarray(torch.no_grad()(clf)(p).argmax(-1))  # numpy integers, as pytorch-grad-cam makes them
    again = GFICAM(clf, [net[2]], method="gradcam")(p, [ClassifierOutputTarget(c) for c in top])
    np.testing.assert_allclose(again, want, rtol=0, atol=1e-6)


def test_normalised_inputs_of_the_raw_module_give_the_native_map_of_the_pixels(setup):
    """pytorch-grad-cam's users pass normalised tensors to the raw model; the map is the native one of
    the pixels up to float32 rounding of the normalisation round trip (1e-5 covers Grad-CAM's min-max
    division of differences of 1e-7; measured 2e-7)."""
    net, clf, p = setup
    for method, atol in (("gradcam", 1e-5), ("gfi", 1e-4)):
        want = get_method(method, clf.with_layers("2", "2"), **quick(method)).explain(p, [3, 0]).maps[:, 0].numpy()
        got = GFICAM(net, [net[2]], method=method, **quick(method))(
            clf.normalize(p), [ClassifierOutputTarget(3), ClassifierOutputTarget(0)])
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)


@pytest.mark.parametrize(("method", "settings"), [("gfi", {"background": "mean"}), ("integrated-gradients", {})])
def test_mean_and_std_give_the_native_map_where_min_max_rescaling_cannot(setup, method, settings):
    """GFI's "mean" background (a fixed pixel colour) and IG's black baseline need the model's mean
    and std: with them the map is the native one of the pixel image (to 1e-5), without them it is not
    (measured here, with l0 = l1 = the target layer: 0.0025 and 0.37; the test asks > 1e-3)."""
    from gfi.constants import IMAGENET_MEAN, IMAGENET_STD

    net, clf, p = setup
    want = get_method(method, clf.with_layers("2", "2"), **settings).explain(p, [1, 2]).maps[:, 0].numpy()
    assert (want.reshape(2, -1).std(1) > 0.05).all(), "the maps are flat: the comparison would prove nothing"
    targets = [ClassifierOutputTarget(1), ClassifierOutputTarget(2)]
    got = GFICAM(net, [net[2]], method=method, mean=IMAGENET_MEAN, std=IMAGENET_STD, **settings)(
        clf.normalize(p), targets)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    rescaled = GFICAM(net, [net[2]], method=method, **settings)(clf.normalize(p), targets)
    assert np.abs(rescaled - want).max() > 1e-3, "without mean/std the map is not the native one"


def test_mean_and_std_errors(setup):
    net, clf, _ = setup
    with pytest.raises(UsageError, match=r"^GFICAM: model is a gfi\.Classifier, which has its own mean and std"):
        GFICAM(clf, [net[2]], mean=0.5, std=0.2)
    with pytest.raises(UsageError, match=r"^GFICAM: clamp=True applies only with mean= and std="):
        GFICAM(net, [net[2]], clamp=True)
    cam = GFICAM(net, [net[2]], method="gradcam", mean=0.5, std=0.1)
    with pytest.raises(UsageError, match=r"^GFICAM: inputs \* std \+ mean are pixels in .*pass clamp=True"):
        cam(torch.randn(1, 3, 16, 16) * 10, None)


def test_target_layer_errors(setup):
    net, clf, _ = setup
    with pytest.raises(UsageError, match=r"exactly one target layer.*got 2 layers"):
        GFICAM(net, target_layers=[net[0], net[2]])
    with pytest.raises(UsageError, match=r"exactly one target layer.*got 0 layers"):
        GFICAM(net, target_layers=[])
    with pytest.raises(UsageError, match=r"exactly one target layer.*a module, not a list"):
        GFICAM(net, target_layers=net[2])
    with pytest.raises(UsageError, match=r"\(Conv2d\) is not a module of this model"):
        GFICAM(net, target_layers=[nn.Conv2d(6, 8, 3)])
    with pytest.raises(UsageError, match="is not a module of this model"):
        GFICAM(clf, target_layers=[small_net()[2]])  # a layer of another copy of the network
    with pytest.raises(UsageError, match="the whole model"):
        GFICAM(net, target_layers=[net])


def test_target_object_and_option_errors(setup):
    net, clf, p = setup
    cam = GFICAM(net, [net[2]], method="gradcam")
    x = clf.normalize(p)
    with pytest.raises(UsageError, match=r"supports ClassifierOutputTarget\(category\).*got ClassifierOutputSoftmax"):
        cam(x, [ClassifierOutputSoftmaxTarget(1), ClassifierOutputSoftmaxTarget(2)])
    with pytest.raises(UsageError, match=r"supports ClassifierOutputTarget.*got int"):
        cam(x, [1, 2])
    with pytest.raises(UsageError, match="1 targets for 2 inputs"):
        cam(x, [ClassifierOutputTarget(1)])
    with pytest.raises(UsageError, match="aug_smooth or eigen_smooth"):
        cam(x, None, aug_smooth=True)
    with pytest.raises(UsageError, match="constant"):
        cam(torch.ones(1, 3, 16, 16), None)


def test_the_context_manager_lets_errors_through(setup):
    """pytorch-grad-cam's __exit__ swallows an IndexError; GFICAM's lets every error through."""
    net = setup[0]
    with pytest.raises(IndexError), GFICAM(net, [net[2]], method="gradcam") as cam:
        assert isinstance(cam, GFICAM)
        raise IndexError("from the block")
