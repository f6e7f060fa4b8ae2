"""The input rule every front end shares (gfi.frontends): a gfi.Classifier takes pixels as they are;
with the model's mean= and std= the pixels are x * std + mean; otherwise a raw module's batch is
rescaled by its own min and max so that the model sees exactly its inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gfi.constants import IMAGENET_MEAN, IMAGENET_STD
from gfi.errors import UsageError
from gfi.frontends.common import module_name, one_target_each, pixels_and_classifier, require_module
from gfi.methods.registry import METHODS, get_method
from gfi.models.classifier import Classifier


def quick(method: str) -> dict:
    """The settings the tests run ``method`` with (its class's ``test_settings``)."""
    return dict(METHODS[method].test_settings)


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

    monkeypatch.setattr("gfi.frontends.common.Classifier", Recording)
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
    from gfi.frontends.cam import GFICAM
    from gfi.methods.base import RunOptions

    net = small_net()
    with pytest.raises(UsageError, match="unknown method 'gfii'"):
        GFICAM(net, [net[2]], method="gfii")
    with pytest.raises(SettingsError, match="no setting 'itres1'"):
        GFICAM(net, [net[2]], itres1=2)
    with pytest.raises(SettingsError, match="has no preset 'fastest'"):
        GFICAM(net, [net[2]], config="fastest")
    spec = GFICAM(net, [net[2]], config="paper", options=RunOptions(chunk=2), iters1=2, autocast="bf16").spec
    assert spec.config.iters1 == 2 and spec.config.gamma == 10.0
    assert spec.options == RunOptions(chunk=2, autocast="bf16")


# -- rule 2: the model's mean and std --------------------------------------------------------------

def test_mean_and_std_give_the_pixels_and_the_model_sees_its_inputs():
    net = small_net()
    native = Classifier(net, input_size=(16, 16))
    p = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    x = native.normalize(p)
    clf, pixels = pixels_and_classifier(net, x, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    assert clf.model is net and torch.equal(clf.mean, native.mean) and torch.equal(clf.std, native.std)
    assert torch.allclose(pixels, p, rtol=0, atol=1e-6)
    assert torch.allclose(clf.normalize(pixels), x, rtol=0, atol=1e-5)
    # one number for every channel, and a tensor, as torchvision's Normalize takes them
    clf, pixels = pixels_and_classifier(net, (p - 0.5) / 0.25, mean=0.5, std=torch.tensor([0.25]))
    assert clf.mean.flatten().tolist() == [0.5] * 3 and torch.allclose(pixels, p, rtol=0, atol=1e-6)


def test_pixels_outside_0_1_are_refused_unless_clamp_says_so():
    net = small_net()
    x = torch.rand(1, 3, 16, 16) * 4 - 2  # in [-2, 2]: pixels in [-0.5, 1.5] for mean=std=0.5
    with pytest.raises(UsageError, match=r"pixels in \[-0\.\d+, 1\.\d+\], outside \[0, 1\].*clamp=True.*"
                                         r"leave out mean= and std= to rescale each batch by its own min and max"):
        pixels_and_classifier(net, x, mean=0.5, std=0.5, who="T")
    clf, pixels = pixels_and_classifier(net, x, mean=0.5, std=0.5, clamp=True)
    assert torch.equal(pixels, (x * 0.5 + 0.5).clamp(0, 1)) and clf.mean.flatten().tolist() == [0.5] * 3
    # within the pixel tolerance (1e-3) the pixels pass as they are, as the native check lets them
    near = torch.full((1, 3, 16, 16), 1.0005)
    near[..., 0, 0] = 0
    _, pixels = pixels_and_classifier(net, near, mean=0.0, std=1.0)
    assert torch.equal(pixels, near)


def test_mean_and_std_errors():
    net = small_net()
    x = torch.rand(1, 3, 16, 16)
    cases = [
        ({"model": Classifier(net), "mean": 0.5, "std": 0.2}, r"^T: model is a gfi\.Classifier, which has its own "
                                                               r"mean and std; drop mean=/std="),
        ({"mean": 0.5}, r"give both mean= and std=.*got only mean"),
        ({"std": 0.5}, r"give both mean= and std=.*got only std"),
        ({"clamp": True}, r"clamp=True applies only with mean= and std="),
        ({"mean": (0.5, 0.5), "std": 0.5}, r"mean has 2 values for inputs with 3 channels"),
        ({"mean": 0.5, "std": (0.5, 0.0, 0.5)}, r"std must be positive"),
        ({"mean": "grey", "std": 0.5}, r"mean must be one number per channel"),
        ({"mean": float("nan"), "std": 0.5}, r"mean must be finite"),
        ({"mean": 0.5, "std": 0.5, "clamp": "yes"}, r"clamp must be True or False"),
    ]
    for kwargs, message in cases:
        model = kwargs.pop("model", net)
        with pytest.raises(UsageError, match=message) as info:
            pixels_and_classifier(model, x, who="T", **kwargs)
        assert "\n" not in str(info.value)


def test_every_method_runs_on_a_callable_or_is_refused_at_once():
    """``needs_module`` is exactly what a method's class says: the others run on a plain callable and
    give the native map; these are refused at once (and could not run on one)."""
    from gfi.errors import GFIError

    needs = {n for n, c in METHODS.items() if c.needs_module}
    assert needs and needs < set(METHODS)
    net = small_net()
    native = Classifier(net, input_size=(16, 16))
    p = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    clf, pixels = pixels_and_classifier(lambda z: net(z), native.normalize(p), mean=IMAGENET_MEAN, std=IMAGENET_STD)
    for name, cls in METHODS.items():
        if cls.needs_module:
            with pytest.raises(UsageError, match=rf"^T: method '{name}' needs an nn\.Module whose layers can be"):
                require_module(lambda z: net(z), cls, who="T")
            require_module(net, cls, who="T")  # a module is fine
            with pytest.raises(GFIError):  # the claim is needed: on a callable the method cannot run
                get_method(name, clf, **cls.test_settings).explain(pixels, [1])
            continue
        require_module(lambda z: net(z), cls, who="T")
        want = get_method(name, native, **cls.test_settings).explain(p, [1]).maps
        got = get_method(name, clf, **cls.test_settings).explain(pixels, [1]).maps
        assert torch.allclose(got, want, atol=1e-5), name
