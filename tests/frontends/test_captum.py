"""gfi.frontends.captum.GuidedFeatureInversion: the native maps in Captum's convention, inside NoiseTunnel and
Captum's metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gfi.errors import SettingsError, TargetError, UsageError
from gfi.methods.registry import get_method
from tests.frontends.test_rule import quick

pytest.importorskip("captum", reason="captum is a dependency of gfi (gfi.frontends.captum wraps captum.attr)")
from captum.attr import NoiseTunnel
from captum.metrics import infidelity, sensitivity_max

from gfi.frontends.captum import GuidedFeatureInversion


@pytest.mark.parametrize("method", ["gfi", "gradcam"])
def test_attribute_is_the_native_map_through_a_classifier(setup, method):
    _, clf, p = setup
    want = get_method(method, clf, **quick(method)).explain(p, [1, 2]).maps[:, 0]
    got = GuidedFeatureInversion(clf, method=method, **quick(method)).attribute(p, target=[1, 2])
    assert got.shape == p.shape and got.dtype == p.dtype
    assert (want.flatten(1).std(1) > 0.05).all(), "the maps are flat: the comparison would prove nothing"
    for c in range(3):  # the (N, H, W) map repeated over the channels
        assert torch.allclose(got[:, c], want, atol=1e-6)


def test_every_target_form_means_the_same(setup):
    _, clf, p = setup
    a = GuidedFeatureInversion(clf, method="gradcam")
    native = get_method("gradcam", clf)
    for target, classes in [(1, [1, 1]), ([1, 2], [1, 2]), (torch.tensor([2, 1]), [2, 1]), (None, None)]:
        assert torch.allclose(a.attribute(p, target=target)[:, 0], native.explain(p, classes).maps[:, 0], atol=1e-6)
    (one,) = a.attribute((p,), target=1)  # a 1-tuple in, a 1-tuple out (Captum's convention)
    assert one.shape == p.shape


@pytest.mark.parametrize(("method", "atol"), [("gradcam", 1e-5), ("gfi", 1e-4)])
def test_normalised_inputs_of_the_raw_module_give_the_native_map_of_the_pixels(setup, method, atol):
    """The raw module sees clf.normalize(p) itself; the rescaled pixels differ from p by a per-channel
    affine map, which blur and blending commute with (gfi.frontends). Left: float32 rounding of the
    round trip (relative 1e-7 of the inputs); 1e-5 covers Grad-CAM's min-max division, 1e-4 GFI's
    Adam steps (measured: 2e-7 both)."""
    net, clf, p = setup
    want = get_method(method, clf, **quick(method)).explain(p, [1, 2]).maps[:, 0]
    got = GuidedFeatureInversion(net, method=method, **quick(method)).attribute(clf.normalize(p), target=[1, 2])
    assert torch.allclose(got[:, 0], want, atol=atol)


def test_inside_noise_tunnel(setup):
    net, clf, p = setup
    x = clf.normalize(p)
    nt = NoiseTunnel(GuidedFeatureInversion(net, iters1=2, iters2=2))
    out = nt.attribute(x, nt_type="smoothgrad", nt_samples=2, target=[1, 2])
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1 and torch.equal(out[:, 0], out[:, 2])
    # with no noise, the mean of two equal maps is the map
    still = NoiseTunnel(GuidedFeatureInversion(net, method="gradcam")).attribute(
        x, nt_type="smoothgrad", nt_samples=2, stdevs=0.0, target=[1, 2])
    assert torch.allclose(still, GuidedFeatureInversion(net, method="gradcam").attribute(x, target=[1, 2]),
                          atol=1e-6)


def test_in_captum_metrics(setup):
    net, clf, p = setup
    x = clf.normalize(p)
    explainer = GuidedFeatureInversion(net, method="gradcam")
    attributions = explainer.attribute(x, target=[1, 2])

    def perturb(inputs):
        noise = torch.randn(inputs.shape, generator=torch.Generator().manual_seed(0)) * 0.1
        return noise, inputs - noise

    inf = infidelity(net, perturb, x, attributions, target=[1, 2], n_perturb_samples=4)
    sens = sensitivity_max(explainer.attribute, x, target=[1, 2], n_perturb_samples=3)
    for score in (inf, sens):
        assert score.shape == (2,) and torch.isfinite(score).all() and (score >= 0).all()


def test_a_callable_runs_the_methods_that_need_no_layer(setup):
    net, clf, p = setup
    x = clf.normalize(p)
    out = GuidedFeatureInversion(lambda z: net(z), method="gradient").attribute(x, target=1)
    assert out.shape == x.shape and torch.isfinite(out).all()
    for method in ("gfi", "gradcam", "guided-backprop"):  # refused when made, naming what works instead
        with pytest.raises(UsageError, match=rf"^GuidedFeatureInversion: method '{method}' needs an nn\.Module "
                                             r"whose layers can be hooked, got a function;.*gradient or "
                                             r"perturbation method with a callable \(gradient, .*\)$") as info:
            GuidedFeatureInversion(lambda z: net(z), method=method)
        assert "\n" not in str(info.value) and "_Forward" not in str(info.value)


#: GFI at its default 10/30 iterations (where the min/max rule's gap was measured) and IG
EXACT = {"gfi": {"background": "mean"}, "integrated-gradients": {}}


@pytest.mark.parametrize("method", list(EXACT))
def test_mean_and_std_give_the_native_map_where_min_max_rescaling_cannot(setup, method):
    """A fixed pixel colour (GFI's "mean" background) and IG's black baseline are not preserved by the
    min/max rescaling (measured gaps: 0.034 and 0.37; the test asks > 1e-3); with the model's mean
    and std the map is the native one of the pixel image (measured 1.2e-7, 9e-8: float32 rounding of
    x * std + mean)."""
    from gfi.constants import IMAGENET_MEAN, IMAGENET_STD

    net, clf, p = setup
    x = clf.normalize(p)
    want = get_method(method, clf, **EXACT[method]).explain(p, [1, 2]).maps[:, 0]
    assert (want.flatten(1).std(1) > 0.05).all(), "the maps are flat: the comparison would prove nothing"
    got = GuidedFeatureInversion(net, method=method, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                 **EXACT[method]).attribute(x, target=[1, 2])
    assert torch.allclose(got[:, 0], want, rtol=0, atol=1e-5)
    rescaled = GuidedFeatureInversion(net, method=method, **EXACT[method]).attribute(x, target=[1, 2])
    assert (rescaled[:, 0] - want).abs().max() > 1e-3, "without mean/std the map is not the native one"


def test_noise_tunnel_with_mean_and_std_needs_clamp(setup):
    """NoiseTunnel's noise (stdevs=1 in the model's input units) takes the pixels out of [0, 1]: an
    error naming clamp=True, which clamps them."""
    from gfi.constants import IMAGENET_MEAN, IMAGENET_STD

    net, clf, p = setup
    x = clf.normalize(p)
    strict = NoiseTunnel(GuidedFeatureInversion(net, method="gradcam", mean=IMAGENET_MEAN, std=IMAGENET_STD))
    with pytest.raises(UsageError, match=r"^GuidedFeatureInversion: inputs \* std \+ mean are pixels in .*"
                                         r"outside \[0, 1\].*pass clamp=True"):
        strict.attribute(x, nt_type="smoothgrad", nt_samples=2, target=[1, 2])
    clamped = NoiseTunnel(GuidedFeatureInversion(net, method="gradcam", mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                                 clamp=True))
    out = clamped.attribute(x, nt_type="smoothgrad", nt_samples=2, target=[1, 2])
    assert out.shape == x.shape and torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_errors(setup):
    net, clf, p = setup
    with pytest.raises(UsageError, match="unknown method"):
        GuidedFeatureInversion(net, method="nope")
    with pytest.raises(SettingsError, match="no setting"):
        GuidedFeatureInversion(net, iterations=3)
    a = GuidedFeatureInversion(net, method="gradcam")
    with pytest.raises(UsageError, match="constant"):
        a.attribute(torch.zeros(1, 3, 16, 16), target=0)
    with pytest.raises(UsageError, match="3 targets for 2 inputs"):
        a.attribute(p, target=[0, 1, 2])
    with pytest.raises(UsageError, match="one input tensor"):
        a.attribute((p, p), target=0)
    with pytest.raises(UsageError, match=r"^GuidedFeatureInversion: model is a gfi\.Classifier, which has its own "
                                         r"mean and std; drop mean=/std="):
        GuidedFeatureInversion(clf, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    with pytest.raises(UsageError, match="give both mean= and std="):
        GuidedFeatureInversion(net, mean=(0.5, 0.5, 0.5))
    with pytest.raises(UsageError, match="mean has 2 values for inputs with 3 channels"):
        GuidedFeatureInversion(net, method="gradcam", mean=(0.5, 0.5), std=0.2).attribute(p, target=0)
    # a Classifier takes pixels: normalised inputs are refused by the native explainer
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        GuidedFeatureInversion(clf, method="gradcam").attribute(clf.normalize(p), target=0)


# -- targets and extra forward arguments as Captum reads them ----------------------------------------
def captum_gradient_map(model, x, target, additional_forward_args=None) -> torch.Tensor:
    """Captum's own Saliency, reduced as gfi's gradient method reduces |d y / d x|: the maximum over the
    channels, min-maxed per image."""
    from captum.attr import Saliency

    from gfi.masks.channel_mask import min_max

    sal = Saliency(model).attribute(x.clone().requires_grad_(True), target=target,
                                    additional_forward_args=additional_forward_args)
    return min_max(sal.amax(1))[0]


@pytest.mark.parametrize("target", [(2,), 2, torch.tensor([2]), [(1,), (3,)], [1, 3], torch.tensor([1, 3]),
                                    [np.int64(1), np.int64(3)]])
def test_targets_select_what_captum_selects(setup, target):
    """Each of Captum's target forms picks, for each example, the class Captum's own Saliency picks: the
    maps equal Saliency's (the gradient method rescales the inputs by their range, which scales every
    gradient alike, so the min-maxed maps agree to float rounding)."""
    net, clf, p = setup
    x = clf.normalize(p)
    got = GuidedFeatureInversion(net, method="gradient").attribute(x, target=target)[:, 0]
    theirs = target if not isinstance(target, list) or not isinstance(target[0], np.integer) else \
        [int(t) for t in target]  # Captum's own check wants Python ints in a list
    want = captum_gradient_map(net, x, theirs)
    assert (want.flatten(1).std(1) > 0.05).all(), "the maps are flat: the comparison would prove nothing"
    assert torch.allclose(got, want, atol=1e-5)
    other = captum_gradient_map(net, x, 0)
    assert (got - other).abs().max() > 0.05, "another class gives another map: the test can fail"


class Grid(nn.Module):
    """A model with a (N, 3, 4) output: conv 1x1 (3 -> 4) -> ReLU -> pooled -> linear (4 -> 12) -> (3, 4)."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(4)
            self.conv, self.relu, self.fc = nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Linear(4, 12)

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).mean((2, 3))).view(-1, 3, 4)


def test_a_tuple_is_an_index_not_a_list_of_classes(setup):
    """(3, 1) is Captum's index output[:, 3, 1], never 'class 3 for image 0 and class 1 for image 1': on
    an output of three dimensions it is that entry (Captum's own Saliency gives the same map); on
    (N, classes) scores an error (in Captum too); a tuple of one class is that class for every image."""
    from captum.attr import Saliency

    net, clf, p = setup
    x = clf.normalize(p)
    grid = Grid().eval()
    for target in [(2, 1), [(0, 3), (2, 1)]]:
        got = GuidedFeatureInversion(grid, method="gradient").attribute(x, target=target)[:, 0]
        want = captum_gradient_map(grid, x, target)
        assert (want.flatten(1).std(1) > 0.05).all(), "the maps are flat: the comparison would prove nothing"
        assert torch.allclose(got, want, atol=1e-5)
    a = GuidedFeatureInversion(net, method="gradcam")
    with pytest.raises(AssertionError):
        Saliency(net).attribute(x.clone().requires_grad_(True), target=(3, 1))
    with pytest.raises(TargetError, match=r"^target output:3,1 gives 2 index\(es\), but the model's output \(\d, 4\) "
                                          r"has 1 dim\(s\) after the batch"):
        a.attribute(x, target=(3, 1))
    assert torch.equal(a.attribute(x, target=(1,)), a.attribute(x, target=[1, 1]))
    with pytest.raises(UsageError, match=r"^GuidedFeatureInversion\.attribute: target must be an integer tensor"):
        a.attribute(x, target=torch.tensor([1.0, 2.0]))
    with pytest.raises(UsageError, match=r"target of shape \(2, 1\): Captum takes one class, or a 1-D tensor"):
        a.attribute(x, target=torch.tensor([[1], [2]]))
    with pytest.raises(UsageError, match=r"must be an index \(an int\), got True"):
        a.attribute(x, target=True)


@pytest.mark.parametrize(("n", "side"), [(2, 1.0), (2, torch.tensor([0.0, 1.0])), (1, torch.tensor([1.0]))])
def test_additional_forward_args_reach_the_model_as_in_captum(n, side):
    """A model whose forward takes which half of the image it looks at (HalfNet): the gradient map with
    additional_forward_args equals Captum's own Saliency with the same arguments (a number for every
    example, one value per example), through the module and through a plain callable."""
    from tests.methods.channel_nets import HalfNet

    net = HalfNet().eval()
    x = torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    want = captum_gradient_map(net, x, 0, additional_forward_args=(side,))
    for model in (net, lambda z, s: net(z, s)):
        got = GuidedFeatureInversion(model, method="gradient").attribute(x, target=0, additional_forward_args=(side,))
        assert torch.allclose(got[:, 0], want, atol=1e-5)
    # one argument given bare (not in a tuple) is one argument, as in Captum
    bare = GuidedFeatureInversion(net, method="gradient").attribute(x, target=(0,), additional_forward_args=side)
    assert torch.allclose(bare[:, 0], want, atol=1e-5)


def test_additional_forward_args_steer_gfi():
    """GFI through Captum's front end with a per-example argument: each map peaks in the half that
    example's argument shows the model."""
    from tests.methods.channel_nets import HalfNet, half_of

    net = HalfNet().eval()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    side = torch.tensor([0.0, 1.0])
    maps = GuidedFeatureInversion(net, **quick("gfi")).attribute(x, target=[(0,), (0,)],
                                                                 additional_forward_args=(side,))
    assert [half_of(maps[b, 0]) for b in range(2)] == [0, 1]
    with pytest.raises(TypeError):
        GuidedFeatureInversion(net, method="gradient").attribute(x, target=0)  # the model needs its argument


def test_an_all_zero_attribution_is_zeros_with_a_warning(setup):
    """Captum's visualize_image_attr asserts on an all-zero attribution; the front end returns finite
    zeros (no evidence found) and warns, naming the inputs and that figure's limit."""
    import warnings

    from gfi.evidence import EmptyMapWarning
    from tests.frontends.test_rule import small_net

    net, clf, p = setup
    dead = small_net()
    with torch.no_grad():
        for w in dead.parameters():
            w.zero_()
    attr = GuidedFeatureInversion(dead, method="gradcam")
    with pytest.warns(EmptyMapWarning, match=r"input\(s\) 0, 1 \(of 2\) is all zeros.*visualize_image_attr"):
        out = attr.attribute(clf.normalize(p), target=[1, 2])
    assert torch.isfinite(out).all() and (out == 0).all() and out.shape == p.shape
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmptyMapWarning)
        assert GuidedFeatureInversion(net, method="gradcam").attribute(clf.normalize(p), target=[1, 2]).max() > 0
