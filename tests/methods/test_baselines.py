"""Every baseline behind the common interface, on a model whose logits depend on one quadrant only.

``center`` is excluded from the region test: it is a fixed centred Gaussian whatever the input.
"""

from __future__ import annotations

import pytest
import torch

from gfi.methods.registry import METHODS, get_method
from tests.methods.region_net import SIZE, in_region, region_classifier, region_images

# small settings so the whole file runs in seconds; the methods' own defaults are the published ones
FAST = {
    "gfi": {"iters1": 10, "iters2": 20},
    "gfi-stage1": {"iters1": 10},
    "mask": {"iterations": 60, "mask_size": 8, "mask_blur_sigma": 1.0, "blur_sigma": 3.0},
    "smoothgrad": {"samples": 8},
    "integrated-gradients": {"steps": 16},
    "rise": {"n_masks": 500, "grid": 4},
    # no flip jitter: the test model looks at the left quadrant only, so it is not flip-invariant
    "extremal": {"iterations": 100, "step": 2, "sigma": 3.0, "areas": (0.1, 0.2), "jitter": False},
}


def minmax(sal):
    """(B, H, W) maps min-max normalised per map."""
    lo, hi = sal.amin((-2, -1), keepdim=True), sal.amax((-2, -1), keepdim=True)
    return (sal - lo) / (hi - lo)


@pytest.fixture(scope="module")
def region():
    return region_classifier(), region_images()


@pytest.mark.parametrize("name", [n for n in METHODS if n != "center"])
def test_map_maximum_lies_in_the_only_region_the_model_sees(region, name):
    clf, x = region
    e = get_method(name, clf, **FAST.get(name, {})).explain(x, 0)
    assert e.maps.shape == (2, 1, SIZE, SIZE)
    assert e.method == name
    assert float(e.maps.min()) >= 0 and float(e.maps.max()) <= 1
    for b in range(2):
        assert in_region(e.maps[b, 0]), f"{name}: image {b} map maximum outside the quadrant"


def test_every_method_has_a_summary_and_runs_through_the_registry():
    for name, cls in METHODS.items():
        assert cls.name == name and cls.summary, name


# --- mask (Meaningful Perturbation) -------------------------------------------------------------
def test_mask_first_loss_is_the_unperturbed_score(region):
    """At m = 1 nothing is deleted: Phi = x, both priors are 0, so the loss is f_c(x)."""
    clf, x = region
    e = get_method("mask", clf, iterations=1, jitter=1, mask_size=8).explain(x, [0, 1])
    with torch.no_grad():
        expected = clf(x).softmax(-1)[[0, 1], [0, 1]]
    torch.testing.assert_close(e.loss_history["mask"][0, :, 0], expected)
    torch.testing.assert_close(e.probs[:, 0], expected)


def test_mask_one_adam_step_moves_against_the_gradient_sign(region):
    """Adam's first step is lr * sign(g): the deleted amount 1 - m is lr where the score falls."""
    from gfi.masks.backgrounds import gaussian_blur, kernel_for_sigma
    from gfi.masks.channel_mask import upsample
    from gfi.methods.meaningful_perturbation import MeaningfulPerturbation

    clf, x = region
    mp = MeaningfulPerturbation(clf, iterations=1, jitter=1, mask_size=8, mask_blur_sigma=0.0, blur_sigma=3.0, lr=0.1)
    e = mp.explain(x[:1], 0)
    # independent computation of the gradient at m = 1 (the L1 and TV terms have zero gradient there)
    m = torch.ones(1, 1, 8, 8, requires_grad=True)
    p = gaussian_blur(x[:1], kernel_for_sigma(3.0), 3.0)
    big = upsample(m, (SIZE, SIZE))[:, 0]
    phi = x[:1] * big + p * (1 - big)
    clf(phi).softmax(-1)[0, 0].backward()
    deleted = 0.1 * (m.grad[0, 0] > 0).float()  # entries that lower the score when decreased
    expected = upsample(deleted.view(1, 1, 8, 8), (SIZE, SIZE))[0, 0]
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    torch.testing.assert_close(e.maps[0, 0], expected, atol=1e-4, rtol=0)


def test_mask_rejects_bad_settings(region):
    with pytest.raises(ValueError, match="iterations"):
        get_method("mask", region[0], iterations=0)


# --- guided backprop ------------------------------------------------------------------------------
class OneLayer(torch.nn.Module):
    """conv 1x1 (3 -> 4) -> ReLU -> flatten -> linear (4*4*4 -> 3)."""

    def __init__(self, relu=torch.nn.ReLU) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(5)
        self.conv = torch.nn.Conv2d(3, 4, 1)
        self.relu = relu()
        self.fc = torch.nn.Linear(64, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).flatten(1))


def _plain(model, size=(4, 4)):
    from gfi.models.classifier import Classifier

    return Classifier(model, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=size)


@pytest.mark.parametrize("relu", [torch.nn.ReLU, torch.nn.ReLU6])
def test_guided_backprop_matches_the_hand_derived_rule(relu):
    """y_c = v_c . relu(W x + b): guided d y_c / d x = W^T (max(v_c, 0) * 1[active]) per pixel."""
    net = OneLayer(relu)
    x = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(2)) * 2 - 0.5
    e = get_method("guided-backprop", _plain(net)).explain(x, 2)
    with torch.no_grad():
        z = net.conv(x)[0]  # (4, 4, 4)
        hi = 6.0 if relu is torch.nn.ReLU6 else float("inf")
        active = ((z > 0) & (z < hi)).float()
        v = net.fc.weight[2].view(4, 4, 4).clamp(min=0)
        g = torch.einsum("kc,khw->chw", net.conv.weight[:, :, 0, 0], v * active)  # (3, 4, 4)
        sal = g.abs().amax(0)
        expected = (sal - sal.min()) / (sal.max() - sal.min())
    torch.testing.assert_close(e.maps[0, 0], expected)
    # and it is not the plain gradient (the rule changes something on this net)
    plain = get_method("gradient", _plain(net)).explain(x, 2)
    assert not torch.allclose(plain.maps, e.maps)


def test_guided_backprop_equals_captums_on_a_relu_resnet_with_inplace_relus():
    """Where Captum's GuidedBackprop applies (nn.ReLU only), both give the same map."""
    import torchvision
    from captum.attr import GuidedBackprop

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=5).eval()
    clf = _plain(net, (32, 32))
    x = torch.rand(1, 3, 32, 32)
    ours = get_method("guided-backprop", clf).explain(x, 3).maps[0]
    raw = GuidedBackprop(clf).attribute(x.clone().requires_grad_(True), target=3)
    torch.testing.assert_close(ours, minmax(raw.abs().amax(1)))


def test_guided_backprop_leaves_no_hooks_and_refuses_nets_without_relu_modules():
    net = OneLayer(torch.nn.Tanh)
    with pytest.raises(ValueError, match=r"needs nn\.ReLU or nn\.ReLU6 modules"):
        get_method("guided-backprop", _plain(net)).explain(torch.rand(1, 3, 4, 4))
    relu_net = OneLayer()
    get_method("guided-backprop", _plain(relu_net)).explain(torch.rand(1, 3, 4, 4))
    assert not relu_net.relu._forward_hooks
    assert all(not p.requires_grad or p.grad is None for p in relu_net.parameters())


# --- Captum-based: the gfi reduction of Captum's raw output ---------------------------------------
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


def test_integrated_gradients_is_abs_channel_sum_of_captums_ig_and_complete(region):
    from captum.attr import IntegratedGradients

    clf, x = region
    e = get_method("integrated-gradients", clf, steps=32).explain(x, 0)
    raw = IntegratedGradients(clf).attribute(x, baselines=0.0, target=0, n_steps=32)
    sal = raw.sum(1).abs()
    expected = minmax(sal)
    torch.testing.assert_close(e.maps[:, 0], expected)
    with torch.no_grad():  # completeness: the attributions add up to y_c(x) - y_c(0)
        gap = clf(x)[:, 0] - clf(torch.zeros_like(x))[:, 0]
    torch.testing.assert_close(raw.sum((1, 2, 3)), gap, rtol=2e-2, atol=2e-3)


def test_lrp_is_positive_channel_sum_of_captums_relevance_and_conserves_it():
    from captum.attr import LRP as CaptumLRP

    net = OneLayer()
    clf = _plain(net)
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    e = get_method("lrp", clf).explain(x, 1)
    raw = CaptumLRP(net).attribute(x.clone().requires_grad_(True), target=1)
    sal = raw.sum(1).clamp(min=0)
    expected = minmax(sal)
    torch.testing.assert_close(e.maps[:, 0], expected)


def test_lrp_refuses_residual_additions_and_unknown_layers():
    import torchvision

    resnet = _plain(torchvision.models.resnet18(weights=None), (32, 32))
    with pytest.raises(ValueError, match="residual addition"):
        get_method("lrp", resnet).explain(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="no propagation rule for ReLU6"):
        get_method("lrp", _plain(OneLayer(torch.nn.ReLU6))).explain(torch.rand(1, 3, 4, 4))


# --- CAM ------------------------------------------------------------------------------------------
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
        get_method("cam", _plain(vgg_like, (8, 8))).explain(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"not the output of one nn\.Linear"):
        squashed = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                       torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.Tanh())
        get_method("cam", _plain(squashed)).explain(torch.rand(1, 3, 4, 4))


# --- RISE -----------------------------------------------------------------------------------------
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


# --- pixel-mask -----------------------------------------------------------------------------------
def test_pixel_mask_first_step_follows_the_sign_of_eq3s_gradient(region):
    """One Adam step of Eq. (3) from m = 0.5 moves each pixel by lr against its gradient's sign."""
    from gfi.masks.backgrounds import make_background
    from gfi.methods.gfi import inversion_error

    clf, x = region
    e = get_method("pixel-mask", clf, iters1=1, iters2=0, alpha=1.0, lr=0.05).explain(x[:1], 0)
    m = torch.full((1, 1, SIZE, SIZE), 0.5, requires_grad=True)
    p = make_background(x[:1], "blur")
    with torch.no_grad():
        f_x = clf.model.features(x[:1])
    phi = x[:1] * m[:, 0] + p * (1 - m[:, 0])
    loss = inversion_error(clf.model.features(phi), f_x, relative=True) + 1.0 * m.mean()
    loss.sum().backward()
    stepped = 0.5 - 0.05 * torch.sign(m.grad[0, 0])
    torch.testing.assert_close(e.stage1_map[0], minmax(stepped), atol=1e-4, rtol=0)
    torch.testing.assert_close(e.maps[0, 0], e.stage1_map[0])  # no stage-2 iteration


# --- extremal -------------------------------------------------------------------------------------
def test_extremal_smooth_mask_of_one_parameter_by_hand():
    """One parameter at grid cell (3, 2): every pixel's smooth max sees one non-zero value,
    t = k(d / sigma), so m = t e^{20 t} / (e^{20 t} + K - 1)."""
    from gfi.methods.extremal import SmoothMaskGenerator

    gen = SmoothMaskGenerator((16, 16), step=2, sigma=3.0)
    mbar = torch.zeros(1, *gen.shape_in)
    mbar[0, 3, 2] = 1.0
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    d = ((yy - 6) ** 2 + (xx - 4) ** 2).sqrt()
    t = torch.exp(-2 * (d / 3.0 - 0.5).clamp(min=0) ** 2)
    big_k = (2 * gen.radius + 1) ** 2
    near = ((yy // 2 - 3).abs() <= gen.radius) & ((xx // 2 - 2).abs() <= gen.radius)
    expected = torch.where(near, t * torch.exp(20 * t) / (torch.exp(20 * t) + big_k - 1), torch.zeros(()))
    torch.testing.assert_close(gen(mbar)[0], expected)


def test_extremal_area_loss_and_perturbation_by_hand():
    from gfi.methods.extremal import area_loss, blur_pyramid, perturb

    m = torch.zeros(2, 4, 5)
    m[0, :2, :] = 1  # exactly 10 of 20 pixels
    loss = area_loss(m, torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(loss, torch.tensor([0.0, 10 / 20]))
    x = torch.rand(1, 3, 8, 8)
    pyr = blur_pyramid(x, 8, 20.0)
    torch.testing.assert_close(perturb(pyr, torch.ones(1, 8, 8)), x)
    torch.testing.assert_close(perturb(pyr, torch.zeros(1, 8, 8)), pyr[:, 0])
    half = perturb(pyr, torch.full((1, 8, 8), 1.5 / 7))  # halfway between levels 1 and 2
    torch.testing.assert_close(half, (pyr[:, 1] + pyr[:, 2]) / 2)


def test_extremal_rejects_bad_areas(region):
    with pytest.raises(ValueError, match="areas must be fractions"):
        get_method("extremal", region[0], areas=(0.0, 1.5))
