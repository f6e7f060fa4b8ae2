"""The input rule every front end shares (gfi.frontends): a gfi.Classifier takes pixels as they are;
a raw module's batch is rescaled by its own min and max so that the model sees exactly its inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gfi.errors import UsageError
from gfi.frontends import MethodSpec, module_name, one_target_each, pixels_and_classifier
from gfi.methods.registry import get_method
from gfi.models.classifier import Classifier


def small_net() -> nn.Module:
    """conv 3x3 (3->6) -> ReLU -> conv 3x3 stride 2 (6->8) -> ReLU -> global mean -> linear (8->4)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1, stride=2),
                             nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()


def test_a_classifier_takes_the_pixels_unchanged():
    clf = Classifier(small_net(), input_size=(16, 16))
    p = torch.rand(2, 3, 16, 16)
    got, pixels = pixels_and_classifier(clf, p)
    assert got is clf and pixels is not None and torch.equal(pixels, p)


def test_a_raw_module_sees_exactly_its_inputs():
    net = small_net()
    x = torch.randn(3, 3, 16, 16) * 2 + 0.3  # any range, as NoiseTunnel's noisy batches have
    clf, pixels = pixels_and_classifier(net, x)
    assert clf.model is net and clf.class_names is None and clf.input_size == (16, 16)
    assert pixels.min() == 0 and abs(float(pixels.max()) - 1) < 1e-6
    # normalize(x01) == x up to float32 rounding (a few ulp of the values' magnitude)
    assert torch.allclose(clf.normalize(pixels), x, rtol=0, atol=4 * torch.finfo(torch.float32).eps * x.abs().max())
    with torch.no_grad():
        assert torch.allclose(clf(pixels), net(x), atol=1e-5)


def test_the_raw_path_gives_the_native_map_on_the_pixel_image():
    """ImageNet-normalised inputs give Grad-CAM's map of the pixel image: the two differ only by the
    float32 rounding of the normalisation round trip (relative 1e-7 of the model's inputs)."""
    net = small_net()
    native = Classifier(net, input_size=(16, 16))
    p = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    want = get_method("gradcam", native).explain(p, [1, 2]).maps[:, 0]
    clf, pixels = pixels_and_classifier(net, native.normalize(p))
    got = get_method("gradcam", clf).explain(pixels, [1, 2]).maps[:, 0]
    assert (want.flatten(1).std(1) > 0.05).all(), "the maps are flat: the comparison would prove nothing"
    assert torch.allclose(got, want, atol=1e-5)


def test_constant_and_non_finite_inputs_are_refused():
    net = small_net()
    with pytest.raises(UsageError, match=r"constant \(every value is 0\.5\).*gfi\.Classifier"):
        pixels_and_classifier(net, torch.full((1, 3, 16, 16), 0.5))
    x = torch.rand(1, 3, 16, 16)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(UsageError, match="NaN or inf"):
        pixels_and_classifier(net, x)
    with pytest.raises(UsageError, match="floating point"):
        pixels_and_classifier(net, torch.ones(1, 3, 16, 16, dtype=torch.uint8))


def test_reshape_transform_goes_to_the_classifier_only_when_given(monkeypatch):
    seen = []

    class Recording(Classifier):
        def __init__(self, model, *, reshape_transform="absent", **kw):
            seen.append(reshape_transform)
            super().__init__(model, **kw)

    monkeypatch.setattr("gfi.frontends.Classifier", Recording)
    x = torch.rand(1, 3, 16, 16)
    pixels_and_classifier(small_net(), x)
    pixels_and_classifier(small_net(), x, reshape_transform=torch.flatten)
    assert seen == ["absent", torch.flatten]
    monkeypatch.undo()
    with pytest.raises(UsageError, match=r"already a gfi\.Classifier.*reshape_transform"):
        pixels_and_classifier(Classifier(small_net()), x, reshape_transform=torch.flatten)


def test_module_names_by_identity():
    net = small_net()
    assert module_name(net, net[2], who="T") == "2"
    with pytest.raises(UsageError, match="not a module of this model"):
        module_name(net, nn.Conv2d(6, 8, 3), who="T")
    with pytest.raises(UsageError, match="the whole model"):
        module_name(net, net, who="T")
    with pytest.raises(UsageError, match=r"must be an nn\.Module"):
        module_name(net, "2", who="T")


def test_targets_one_per_input():
    import numpy as np

    assert one_target_each(None, 2, who="T") is None
    assert one_target_each(3, 2, who="T") == [3, 3]
    assert one_target_each(torch.tensor(3), 2, who="T") == [3, 3]
    assert one_target_each(torch.tensor([1, 2]), 2, who="T") == [1, 2]
    assert one_target_each(np.array([1, 2]), 2, who="T") == [1, 2]
    assert one_target_each([np.int64(1), 2], 2, who="T") == [1, 2]
    with pytest.raises(UsageError, match="3 targets for 2 inputs"):
        one_target_each([1, 2, 3], 2, who="T")
    with pytest.raises(UsageError, match="one class index"):
        one_target_each([(1, 0), (2, 0)], 2, who="T")
    with pytest.raises(UsageError, match="bool"):
        one_target_each([True, 1], 2, who="T")


def test_method_and_settings_are_checked_when_the_front_end_is_made():
    from gfi.errors import SettingsError

    with pytest.raises(UsageError, match="unknown method 'gfii'"):
        MethodSpec("gfii", None, {})
    with pytest.raises(SettingsError, match="no setting 'itres1'"):
        MethodSpec("gfi", None, {"itres1": 2})
    spec = MethodSpec("gfi", "paper", {"iters1": 2, "chunk": 1})
    assert spec.config.iters1 == 2 and spec.config.gamma == 10.0 and spec.options.chunk == 1
