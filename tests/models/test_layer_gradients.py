"""layer_gradients: one forward of the images for all K targets, each target's gradient equal to the
gradient of its own forward pass."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gfi.models.layers import LayerRef, frozen, layer_gradients
from gfi.targets import Logit, TargetGrid


def _by_hand(clf, x, targets, layer):
    """Each (image, target) row on its own: a forward of that image and d y_c / d A."""
    acts, grads = [], []
    for b in range(x.shape[0]):
        for c in targets[b].tolist():
            store: dict = {}
            module = clf.model.get_submodule(layer)
            handle = module.register_forward_hook(lambda _m, _a, out, store=store: store.setdefault("a", out))
            try:
                with torch.enable_grad():
                    y = clf(x[b:b + 1].clone().requires_grad_(True))
                    grads.append(torch.autograd.grad(y[0, c], store["a"])[0])
            finally:
                handle.remove()
            acts.append(store["a"].detach())
    return torch.cat(acts), torch.cat(grads)


def test_k_targets_share_one_forward_and_get_their_own_gradients(tiny, tiny_images):
    targets = torch.tensor([[1, 3, 4], [0, 1, 2]])
    rows = [0]
    handle = tiny.model.register_forward_pre_hook(lambda _m, a: rows.__setitem__(0, rows[0] + a[0].shape[0]))
    try:
        with frozen(tiny.model):
            act, grad = layer_gradients(tiny, tiny_images, targets, LayerRef("relu"))
    finally:
        handle.remove()
    assert rows[0] == 2  # the two images once, not once per target
    want_act, want_grad = _by_hand(tiny, tiny_images, targets, "relu")
    torch.testing.assert_close(act, want_act)
    torch.testing.assert_close(grad, want_grad)
    assert not torch.equal(grad[0], grad[1])  # targets 1 and 3 of image 0 differ


def test_target_objects_are_read_on_the_shared_forward(tiny, tiny_images):
    """A target grid of Logit objects gives the same rows as the class indices."""
    targets = torch.tensor([[2, 4], [3, 0]])
    grid = TargetGrid([[Logit(int(c)) for c in row] for row in targets.tolist()])
    with frozen(tiny.model):
        plain = layer_gradients(tiny, tiny_images, targets, LayerRef("relu"))
        objects = layer_gradients(tiny, tiny_images, grid, LayerRef("relu"))
    for a, b in zip(plain, objects, strict=True):
        torch.testing.assert_close(a, b)


class _Pairs(nn.Module):
    """A model whose output rows are not its images (two rows per image): targets cannot share."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        y = self.net(x)
        return torch.cat([y, y * 2])


def test_a_model_without_one_output_row_per_image_repeats_the_image(tiny, tiny_images):
    from gfi.models.classifier import Classifier

    clf = Classifier(_Pairs(tiny.model), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=(4, 4),
                     inversion_layer="net.pool", channel_layer="net.relu")
    targets = torch.tensor([[1, 3]])
    with frozen(clf.model):
        act, grad = layer_gradients(clf, tiny_images[:1], targets, LayerRef("net.relu"))
    want = _by_hand(tiny, tiny_images[:1], targets, "relu")
    torch.testing.assert_close(act, want[0])
    # the repeated images' rows: row k of the output is target k's own image
    torch.testing.assert_close(grad, want[1])


def test_a_segmentation_output_shares_the_forward_too():
    """A dict output ({"out": (N, C, H, W)}) scored by two segmentation targets of different regions:
    one forward of the image, and each target's rows equal to its own call's."""
    pytest.importorskip("torchvision")
    from gfi.targets import SegmentationTarget
    from tests.methods import target_nets as nets

    clf = nets.segmentation_model()
    x = nets.planted_images(1, nets.SEGMENTATION_SIZE, nets.SEGMENTATION_BOX)
    region = torch.zeros(128, 128, dtype=torch.bool)
    region[:64] = True
    targets = [SegmentationTarget(1), SegmentationTarget(1, region)]
    layer = clf.channel_layer
    rows = [0]
    handle = clf.model.register_forward_pre_hook(lambda _m, a: rows.__setitem__(0, rows[0] + a[0].shape[0]))
    try:
        with frozen(clf.model):
            act, grad = layer_gradients(clf, x, TargetGrid([targets]), layer)
    finally:
        handle.remove()
    assert rows[0] == 1
    for k, t in enumerate(targets):
        with frozen(clf.model):
            one_act, one_grad = layer_gradients(clf, x, TargetGrid([[t]]), layer)
        torch.testing.assert_close(act[k:k + 1], one_act)
        torch.testing.assert_close(grad[k:k + 1], one_grad)
    assert not torch.allclose(grad[0], grad[1])
