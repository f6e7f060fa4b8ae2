"""gfi.frontends.cam.GFICAM: the native maps in pytorch-grad-cam's calling convention, and what GradCAM
accepts besides (several target layers, eigen_smooth, aug_smooth, its target classes, outputs, device,
constant inputs, any channel count)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gfi.errors import TargetError, UsageError
from gfi.masks.channel_mask import min_max
from gfi.methods.registry import get_method
from gfi.models.classifier import Classifier
from tests.frontends.test_rule import quick, small_net

pytest.importorskip("pytorch_grad_cam", reason="grad-cam is a test dependency (gfi-explain[test]); GFICAM takes "
                                               "its ClassifierOutputTarget")
from pytorch_grad_cam.utils.model_targets import (
    BinaryClassifierOutputTarget,
    ClassifierOutputReST,
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
    FasterRCNNBoxScoreTarget,
    RawScoresOutputTarget,
    SemanticSegmentationTarget,
    SoftmaxOutputTarget,
)

from gfi.frontends.cam import DEFAULT_AUGMENTATIONS, GFICAM, first_component, gfi_target


def native(clf: Classifier, method: str, layer: str, pixels: torch.Tensor, classes) -> torch.Tensor:
    """(N, H, W): the method's own map with ``layer`` as l0 and l1."""
    e = get_method(method, clf.with_layers(layer, layer), **quick(method)).explain(pixels, classes)
    return e.maps[:, 0]


@pytest.mark.parametrize("layer", [0, 2])
@pytest.mark.parametrize("method", ["gfi", "gradcam"])
def test_cam_is_the_native_map_with_the_target_layer_as_l0_and_l1(setup, method, layer):
    """One layer: the native map, min-maxed per image (pytorch-grad-cam's final scaling; a map upsampled
    from a coarse layer can peak below 1)."""
    net, clf, p = setup
    want = native(clf, method, str(layer), p, [1, 2])
    with GFICAM(clf, target_layers=[net[layer]], method=method, **quick(method)) as cam:
        got = cam(input_tensor=p, targets=[ClassifierOutputTarget(1), ClassifierOutputTarget(2)])
    assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == (2, 16, 16)
    assert (want.flatten(1).std(1) > 0.05).all(), "the maps are flat: the comparison would prove nothing"
    np.testing.assert_allclose(got, min_max(want)[0].numpy(), rtol=0, atol=1e-6)
    assert np.allclose(got.reshape(2, -1).max(1), 1) and np.allclose(got.reshape(2, -1).min(1), 0)


def test_targets_none_is_the_top_1_class(setup):
    net, clf, p = setup
    want = min_max(native(clf, "gradcam", "2", p, None))[0].numpy()
    got = GFICAM(clf, [net[2]], method="gradcam")(p, None)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    top = np.asarray(torch.no_grad()(clf)(p).argmax(-1))  # numpy integers, as pytorch-grad-cam makes them
    again = GFICAM(clf, [net[2]], method="gradcam")(p, [ClassifierOutputTarget(c) for c in top])
    np.testing.assert_allclose(again, want, rtol=0, atol=1e-6)
    tensors = GFICAM(clf, [net[2]], method="gradcam")(p, [ClassifierOutputTarget(torch.tensor(c)) for c in top])
    np.testing.assert_allclose(tensors, want, rtol=0, atol=1e-6)


def test_normalised_inputs_of_the_raw_module_give_the_native_map_of_the_pixels(setup):
    """pytorch-grad-cam's users pass normalised tensors to the raw model; the map is the native one of
    the pixels up to float32 rounding of the normalisation round trip (1e-5 covers Grad-CAM's min-max
    division of differences of 1e-7; measured 2e-7)."""
    net, clf, p = setup
    for method, atol in (("gradcam", 1e-5), ("gfi", 1e-4)):
        want = min_max(native(clf, method, "2", p, [3, 0]))[0].numpy()
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
    want = get_method(method, clf.with_layers("2", "2"), **settings).explain(p, [1, 2]).maps[:, 0]
    assert (want.flatten(1).std(1) > 0.05).all(), "the maps are flat: the comparison would prove nothing"
    want = min_max(want)[0].numpy()
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


# -- several target layers ------------------------------------------------------------------------
class Gate(nn.Module):
    """Multiplies its input by a fixed (H, W) mask: the features of one side of the image."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, f):
        return f * self.mask


class Sides(nn.Module):
    """conv 1x1 (3 -> 2) firing on pixels above 0.6 -> ReLU -> ``left`` (the left half of those features)
    and ``right`` (the right half) -> each pooled -> linear (4 -> 3). Class 0 grows with both halves'
    bright pixels."""

    def __init__(self, size: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        left = (torch.arange(size) < size // 2).float().expand(size, size).clone()
        self.left, self.right = Gate(left), Gate(1 - left)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.conv.bias.fill_(-1.8)  # fires where the three channels sum above 1.8
            self.fc.weight.copy_(torch.tensor([[2.0, 1.0, 2.0, 1.0], [-1.0, 0.5, -1.0, 0.5], [0.2, -1.0, 0.3, -1.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        f = torch.relu(self.conv(x))
        pooled = [side(f).mean((2, 3)) for side in (self.left, self.right)]
        return self.fc(torch.cat(pooled, 1))


def two_patches(size: int = 16) -> torch.Tensor:
    """One image, dark noise in [0, 0.4] with a bright 4x4 patch in the left half (rows 2-5, columns 2-5)
    and one in the right half (rows 9-12, columns 10-13)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, size, size, generator=g) * 0.4
    x[..., 2:6, 2:6] = 0.8 + 0.2 * torch.rand(1, 3, 4, 4, generator=g)
    x[..., 9:13, 10:14] = 0.8 + 0.2 * torch.rand(1, 3, 4, 4, generator=g)
    return x


@pytest.mark.parametrize("method", ["gradcam", "gfi"])
def test_two_target_layers_light_what_each_layer_sees(method):
    """Planted: layer ``left`` sees only the left patch, ``right`` only the right one. Each one-layer map
    peaks on its own patch; the two-layer map is the mean of the layers' native maps min-maxed per
    image (pytorch-grad-cam's aggregate_multi_layers), and lights both patches."""
    net = Sides().eval()
    x = two_patches()
    clf = Classifier(net, mean=0.0, std=1.0, input_size=(16, 16))
    t = [ClassifierOutputTarget(0)]
    a = GFICAM(net, [net.left], method=method, **quick(method))(x, t)[0]
    b = GFICAM(net, [net.right], method=method, **quick(method))(x, t)[0]
    both = GFICAM(net, [net.left, net.right], method=method, **quick(method))(x, t)[0]
    left, right = (slice(2, 6), slice(2, 6)), (slice(9, 13), slice(10, 14))
    assert a[left].max() == 1 and a[right].max() < 0.1
    assert b[right].max() == 1 and b[left].max() < 0.1
    assert both[left].max() > 0.5 and both[right].max() > 0.5
    outside = np.ones((16, 16), bool)
    outside[left] = outside[right] = False
    assert both[outside].max() < 0.2
    per_layer = torch.stack([native(clf, method, name, x, [0])[0] for name in ("left", "right")])
    np.testing.assert_allclose(both, min_max(per_layer.mean(0))[0].numpy(), rtol=0, atol=1e-5)
    same = GFICAM(net, [net.left, net.left], method=method, **quick(method))(x, t)[0]
    np.testing.assert_array_equal(same, a)


def test_target_layer_errors(setup):
    net, clf, _ = setup
    with pytest.raises(UsageError, match=r"^GFICAM: target_layers must be a list of the model's layers, got an empty"):
        GFICAM(net, target_layers=[])
    with pytest.raises(UsageError, match=r"got a module, not a list; pass target_layers=\[layer\]"):
        GFICAM(net, target_layers=net[2])
    with pytest.raises(UsageError, match=r"\(Conv2d\) is not a module of this model"):
        GFICAM(net, target_layers=[net[0], nn.Conv2d(6, 8, 3)])
    with pytest.raises(UsageError, match="is not a module of this model"):
        GFICAM(clf, target_layers=[small_net()[2]])  # a layer of another copy of the network
    with pytest.raises(UsageError, match="the whole model"):
        GFICAM(net, target_layers=[net])


# -- eigen_smooth ---------------------------------------------------------------------------------
def test_first_component_is_pytorch_grad_cams_projection_with_the_sign_of_the_reference():
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    g = torch.Generator().manual_seed(0)
    u = torch.rand(3, 1, 5, 7, generator=g)  # a spatial pattern per image
    v = torch.rand(3, 16, 1, 1, generator=g) + 0.5  # positive channel loadings
    wf = u * v + 0.01 * torch.randn(3, 16, 5, 7, generator=g)  # rank one plus noise
    ours = first_component(wf, wf.sum(1))
    theirs = torch.from_numpy(get_2d_projection(wf.numpy()))
    assert torch.allclose(ours.abs(), theirs.abs(), atol=1e-4)  # theirs has LAPACK's sign
    centred = u[:, 0] - u[:, 0].mean((1, 2), keepdim=True)
    for b in range(3):  # the sign agrees with sum_i w_i f_i: the projection follows the planted pattern
        assert torch.corrcoef(torch.stack([ours[b].flatten(), centred[b].flatten()]))[0, 1] > 0.99
    flipped = first_component(wf, -wf.sum(1))
    assert torch.allclose(flipped, -ours)


class RankOne(nn.Module):
    """conv 1x1 (3 -> 4) whose every channel is a_i * (x_r + x_g + x_b), a_i > 0 (rank one features,
    the target layer) -> ReLU -> pooled -> linear (4 -> 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1, bias=False)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, 0.5, 2.0, 1.5]).view(4, 1, 1, 1).expand(4, 3, 1, 1))
            self.fc.weight.copy_(torch.tensor([[1.0, 2.0, 0.5, 1.0], [-1.0, 0.2, 0.1, -0.3], [0.1, -0.5, 0.3, 0.2]]))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def test_eigen_smooth_on_rank_one_features_is_the_centred_pattern():
    """Every channel of the target layer is a_i s(x, y) with s the sum of the colour channels, so w_i f_i
    is rank one: its first principal component is s - mean(s) with Eq. 6's sign, and the map is
    MinMax(ReLU(s - mean s)) whatever GFI's weights (when not all zero); the plain map is MinMax(s)."""
    net = RankOne().eval()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    s = x.sum(1)
    cam = GFICAM(net, [net.conv], **quick("gfi"))
    t = [ClassifierOutputTarget(0), ClassifierOutputTarget(0)]
    eigen = cam(x, t, eigen_smooth=True)
    want = min_max(torch.relu(s - s.mean((1, 2), keepdim=True)))[0].numpy()
    np.testing.assert_allclose(eigen, want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(cam(x, t), min_max(s)[0].numpy(), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(cam.forward(x, t, True), eigen)  # BaseCAM.forward's third argument
    with pytest.raises(UsageError, match=r"^GFICAM: eigen_smooth projects a layer's weighted channels, and method "
                                         r"'gradcam' has no channel weights; use method='gfi'"):
        GFICAM(net, [net.conv], method="gradcam")(x, t, eigen_smooth=True)


# -- aug_smooth -----------------------------------------------------------------------------------
def test_aug_smooth_averages_the_maps_of_the_augmented_inputs_mapped_back(setup):
    import ttach as tta

    net, clf, p = setup
    x = clf.normalize(p)
    t = [ClassifierOutputTarget(1), ClassifierOutputTarget(2)]
    plain = GFICAM(net, [net[2]], **quick("gfi"))
    mirror = plain(x.flip(-1), t)[..., ::-1]
    cam = GFICAM(net, [net[2]], tta_transforms=tta.Compose([tta.HorizontalFlip()]), **quick("gfi"))
    smooth = cam(x, t, aug_smooth=True)
    np.testing.assert_allclose(smooth, (plain(x, t) + mirror) / 2, rtol=0, atol=1e-6)
    assert np.abs(smooth - plain(x, t)).max() > 0.05, "the mirror image's map differs: the test can fail"
    with torch.no_grad():
        assert torch.equal(cam.outputs, net(x)), "outputs are the model's on the input, not its last copy"
    # the default: pytorch-grad-cam's Compose([HorizontalFlip(), Multiply([0.9, 1, 1.1])]), without ttach
    default = tta.Compose([tta.HorizontalFlip(), tta.Multiply(factors=[0.9, 1, 1.1])])
    theirs_images = [tr.augment_image(x) for tr in default]
    ours_images = [x.flip(3) * f if flip else x * f for flip, f in DEFAULT_AUGMENTATIONS]
    assert len(theirs_images) == 6 and all(torch.equal(a, b) for a, b in zip(theirs_images, ours_images, strict=True))
    ours = GFICAM(net, [net[2]], method="gradcam")(x, t, aug_smooth=True)
    theirs = GFICAM(net, [net[2]], method="gradcam", tta_transforms=default)(x, t, aug_smooth=True)
    np.testing.assert_array_equal(ours, theirs)


def test_aug_smooth_with_mean_and_std(setup):
    """The x1.1 copy of a normalised photo has pixels outside [0, 1] under mean/std: rescaled by its
    own range, which is exact for GFI's blur background (the map is the one without mean/std), and
    refused in one line under the mean background (a fixed pixel colour), and for a gfi.Classifier."""
    from gfi.constants import IMAGENET_MEAN, IMAGENET_STD

    net, clf, p = setup
    x = clf.normalize(p)
    t = [ClassifierOutputTarget(1), ClassifierOutputTarget(2)]
    norm = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    with_norm = GFICAM(net, [net[2]], **norm, **quick("gfi"))(x, t, aug_smooth=True)
    rescaled = GFICAM(net, [net[2]], **quick("gfi"))(x, t, aug_smooth=True)
    np.testing.assert_allclose(with_norm, rescaled, rtol=0, atol=1e-4)  # blur: both the native maps
    with pytest.raises(UsageError, match=r"^GFICAM: an aug_smooth copy \(times a factor above 1\) has pixels outside "
                                         r"\[0, 1\] under mean/std, which background='mean' \(a fixed pixel value\) "
                                         r"cannot explain exactly; use background='blur', clamp=True"):
        GFICAM(net, [net[2]], background="mean", **norm, **quick("gfi"))(x, t, aug_smooth=True)
    with pytest.raises(UsageError, match=r"^GFICAM: an aug_smooth copy of the pixels leaves \[0, 1\] \(a "
                                         r"gfi\.Classifier takes pixels in \[0, 1\]\); pass tta_transforms"):
        GFICAM(clf, [net[2]], method="gradcam")(torch.ones_like(p) * 0.95, t, aug_smooth=True)


# -- targets, outputs, inputs ---------------------------------------------------------------------
def test_target_objects_are_gfis_and_outputs_are_the_models(setup):
    """ClassifierOutputTarget(c) is class c (GFI's f_c), ClassifierOutputSoftmaxTarget(c) gfi's Softmax(c)
    (the same f_c in Eq. 9; GFI's stage 2 then starts from the softmax's Grad-CAM weights, not the
    logit's), any other target a function of each image's output: each the native GFI map of that target."""
    from gfi.targets import CallableTarget, Softmax

    net, clf, p = setup
    x = clf.normalize(p)
    cam = GFICAM(net, [net[2]], **quick("gfi"))
    rest = ClassifierOutputReST(2)
    for targets, native_targets in [
            ([ClassifierOutputTarget(1), ClassifierOutputTarget(2)], [1, 2]),
            ([ClassifierOutputSoftmaxTarget(1), ClassifierOutputSoftmaxTarget(2)], [Softmax(1), Softmax(2)]),
            ([rest, rest], CallableTarget(lambda z: 2 * z[:, 2] - z.logsumexp(1)))]:
        want = min_max(native(clf, "gfi", "2", p, native_targets))[0].numpy()
        assert (want.reshape(2, -1).std(1) > 0.05).all(), "the maps are flat: the comparison would prove nothing"
        np.testing.assert_allclose(cam(x, targets), want, rtol=0, atol=1e-4)
    with torch.no_grad():
        assert torch.equal(cam.outputs, net(x)) and not cam.outputs.requires_grad
    assert cam.device == torch.device("cpu")
    cam.activations_and_grads.release()  # what SESS's __del__ calls


def test_target_errors(setup):
    net, clf, p = setup
    cam = GFICAM(net, [net[2]], method="gradcam")
    x = clf.normalize(p)
    for vector in (SoftmaxOutputTarget(), RawScoresOutputTarget()):
        with pytest.raises(UsageError, match=rf"^GFICAM: {type(vector).__name__} returns a score per class, not one "
                                             r"per image .*pass ClassifierOutputTarget\(c\)$"):
            cam(x, [vector, vector])
    with pytest.raises(UsageError, match=r"^GFICAM: every target must be a pytorch-grad-cam target such as "
                                         r"ClassifierOutputTarget\(c\), or a function of one image's output, got "
                                         r"int$"):
        cam(x, [1, 2])
    with pytest.raises(TargetError, match=r"^GFICAM: ClassifierOutputTarget's category '1' is a string"):
        cam(x, [ClassifierOutputTarget("1"), ClassifierOutputTarget("1")])
    with pytest.raises(UsageError, match=r"^GFICAM: 1 targets for 2 inputs; give one target per input"):
        cam(x, [ClassifierOutputTarget(1)])
    with pytest.raises(UsageError, match=r"^GFICAM: targets must be a list"):
        cam(x, ClassifierOutputTarget(1))


class Segmenter(nn.Module):
    """conv 3x3 (3 -> 6) -> ReLU -> conv 3x3 (6 -> 8) -> ReLU [``body[3]``] -> conv 1x1 (8 -> 4): (N, 4, H, W)."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(1)
            self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1),
                                      nn.ReLU())
            self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.head(self.body(x))


class Detector(nn.Module):
    """torchvision's detection output for one fixed box of label 1 per image, scored by
    sigmoid(linear(pooled ReLU(conv(x)))): a list of dicts with boxes, labels, scores."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(2)
            self.conv, self.relu, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Linear(4, 1)
            with torch.no_grad():  # channels of both signs
                self.fc.weight.copy_(torch.tensor([[1.0, -1.0, 0.5, -0.5]]))

    def forward(self, x):
        s = torch.sigmoid(self.fc(self.relu(self.conv(x)).mean((2, 3))))[:, 0]
        return [{"boxes": torch.tensor([[0.0, 0, 8, 8]]), "labels": torch.tensor([1]), "scores": s[i:i + 1]}
                for i in range(x.shape[0])]


class OneLogit(nn.Module):
    """A binary classifier with one logit: conv -> ReLU -> pooled -> linear (4 -> 1), two channels for
    each class."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(3)
            self.conv, self.relu, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Linear(4, 1)
            with torch.no_grad():  # either class has a map
                self.fc.weight.copy_(torch.tensor([[1.0, -1.0, 0.5, -0.5]]))

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).mean((2, 3)))


def _peer_cases():
    net, seg, det, one = small_net(), Segmenter().eval(), Detector().eval(), OneLogit().eval()
    mask = np.zeros((16, 16), np.float32)
    mask[2:8, 3:9] = 1
    two = [net[0], net[2]]
    return [
        ("class", net, two, ClassifierOutputTarget(1)),
        ("softmax", net, two, ClassifierOutputSoftmaxTarget(1)),
        ("rest", net, two, ClassifierOutputReST(1)),
        ("lambda", net, two, lambda o: o[1] - o[3]),
        ("segmentation", seg, [seg.body[3]], SemanticSegmentationTarget(2, mask)),
        ("detection", det, [det.relu], FasterRCNNBoxScoreTarget([1], np.array([[0.0, 0, 8, 8]]))),
        ("binary-0", one, [one.relu], BinaryClassifierOutputTarget(0)),
        ("binary-1", one, [one.relu], BinaryClassifierOutputTarget(1)),
    ]


@pytest.mark.parametrize("case", _peer_cases(), ids=lambda c: c[0])
def test_gradcam_through_gficam_is_pytorch_grad_cams_gradcam(case):
    """GFICAM(method="gradcam") gives pytorch-grad-cam's own GradCAM map for each kind of its targets
    (classifier scores, a lambda, a segmentation mask, a detection box, a one-logit classifier), two
    target layers included. Measured differences: 3e-7 or less, but up to 3e-4 on the small CNN,
    whose Grad-CAM maps are small numbers and pytorch-grad-cam's min-max divides by max + 1e-7."""
    from pytorch_grad_cam import GradCAM

    _, model, layers, target = case
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    got = GFICAM(model, layers, method="gradcam")(x, [target, target])
    with GradCAM(model, layers) as cam:
        want = cam(x, [target, target])
    assert (want.reshape(2, -1).std(1) > 0.05).all(), "the maps are flat: the comparison would prove nothing"
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)


def test_gfi_target_scores_each_image_as_pytorch_grad_cam_does():
    """The adapter calls pytorch-grad-cam's target once per image's output and gives the (N,) scores,
    still differentiable; a target that returns more than one number per image is refused."""
    z = torch.randn(3, 5, requires_grad=True)
    for target, want in [(ClassifierOutputReST(2), 2 * z[:, 2] - z.logsumexp(1)),
                         (ClassifierOutputSoftmaxTarget(4), z.softmax(1)[:, 4]),
                         (lambda o: o[1] - o[3], z[:, 1] - z[:, 3])]:
        got = gfi_target(target)(z)
        assert got.shape == (3,) and torch.allclose(got, want, atol=1e-6) and got.requires_grad
    one = torch.randn(2, 1)
    assert torch.allclose(gfi_target(BinaryClassifierOutputTarget(0))(one), -one[:, 0])
    seg = torch.randn(2, 4, 6, 6)
    mask = np.zeros((6, 6), np.float32)
    mask[1:3, 2:5] = 1
    got = gfi_target(SemanticSegmentationTarget(3, mask))(seg)
    assert torch.allclose(got, seg[:, 3, 1:3, 2:5].sum((1, 2)))
    detections = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([7]),
                   "scores": torch.tensor([0.9])},
                  {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "scores": torch.zeros(0)}]
    got = gfi_target(FasterRCNNBoxScoreTarget([7], np.array([[0.0, 0, 10, 10]])))(detections)
    assert torch.allclose(got, torch.tensor([1.9, 0.0]))  # IoU 1 + score 0.9; no detection: 0
    with pytest.raises(UsageError, match=r"^GFICAM: target RawScoresOutputTarget returned a score of shape \(5,\) "
                                         r"for one image"):
        gfi_target(RawScoresOutputTarget())(z)


def test_a_constant_batch_is_explained_as_the_model_sees_it(setup):
    """A constant batch has no range to rescale: it is read as pixels 0.5 that the model sees as the
    given value v, i.e. the native map of a classifier with mean 0.5 - v and std 1 (no error)."""
    net, _, _ = setup
    for value in (0.0, -1.3):
        x = torch.full((2, 3, 16, 16), value)
        got = GFICAM(net, [net[2]], **quick("gfi"))(x, None)
        clf = Classifier(net, mean=0.5 - value, std=1.0, input_size=(16, 16))
        with torch.no_grad():
            assert torch.allclose(clf(torch.full_like(x, 0.5)), net(x), atol=1e-6)
        want = min_max(native(clf, "gfi", "2", torch.full_like(x, 0.5), None))[0].numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_a_one_channel_model_lights_its_planted_patch():
    """A grey model (pytorch-grad-cam's test_one_channel: a 1-channel first conv), given its normalised
    inputs: GFI's and Grad-CAM's maxima lie on the planted patch of each image."""
    from tests.methods.channel_nets import PatchNet, in_patch, patch_images

    mean, std = (0.4,), (0.25,)
    net = PatchNet(1, 0, mean, std).eval()
    x = (patch_images(1) - mean[0]) / std[0]
    for method in ("gfi", "gradcam"):
        maps = GFICAM(net, [net.relu], method=method, mean=mean, std=std, **quick(method))(x, None)
        assert maps.shape == (2, 32, 32)
        assert all(in_patch(torch.from_numpy(maps[b]), b) for b in range(2)), method


class Tiny3D(nn.Module):
    """The model of pytorch-grad-cam's test_gradient_cam_methods_support_3d_conv_layers: conv 3x3x3
    (1 -> 2) -> ReLU -> global average pool -> linear (2 -> 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 2, kernel_size=3, padding=1)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


def test_volumes_are_refused_in_one_line():
    """The skip of the vendored 3-D test (tests/peers/pytorch_grad_cam) says this."""
    net = Tiny3D().eval()
    with pytest.raises(UsageError, match=r"^GFICAM explains \(N, C, H, W\) images, got \(1, 1, 3, 4, 5\): GFI's mask "
                                         r"and background are 2-D \(Eq\. 2, 6-7\), so 3-D volumes are not "
                                         r"supported$"):
        GFICAM(net, [net.conv])(torch.randn(1, 1, 3, 4, 5), None)


def test_the_context_manager_lets_errors_through(setup):
    """pytorch-grad-cam's __exit__ swallows an IndexError; GFICAM's lets every error through."""
    net = setup[0]
    with pytest.raises(IndexError), GFICAM(net, [net[2]], method="gradcam") as cam:
        assert isinstance(cam, GFICAM)
        raise IndexError("from the block")


def test_the_users_model_keeps_its_mode(setup):
    net = small_net().train()
    x = torch.rand(1, 3, 16, 16)
    cam = GFICAM(net, [net[2]], method="gradcam")
    cam(x, None)
    assert net.training and all(m.training for m in net.modules())
