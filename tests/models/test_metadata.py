"""Automatic layers from the library's own metadata (timm's ``forward_features`` / ``feature_info``,
torchvision's graph node names, Hugging Face's ``last_hidden_state`` and config), and the failures of
the generic rule they fix: MobileViT's unfolded patches, torchvision's ViT block names, float64 /
bfloat16 models, Hugging Face Swin's stage input. Tiny random models; no download."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gfi import Classifier, get_method
from gfi.models import NotAConvNetError
from gfi.models.layers import LayerRef
from gfi.models.metadata import _node_modules, _producer, _traced, feature_hint
from gfi.models.tokens import TokenGrid, find_token_layout, nhwc_to_nchw

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")
T = pytest.importorskip("transformers", reason="transformers is a test dependency (pip install -e '.[test]')")

GFI_CHEAP = {"iters1": 2, "iters2": 3}


def _explains(clf: Classifier, size: int) -> None:
    """GFI and Grad-CAM both run and give a finite map in [0, 1] (where the maps peak on a planted
    signal is tested by the model zoo, ``test_zoo.py``)."""
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    for method, settings in (("gradcam", {}), ("gfi", GFI_CHEAP)):
        maps = get_method(method, clf, **settings).explain(x, [[1]]).maps
        assert maps.shape == (1, 1, size, size) and torch.isfinite(maps).all(), method
        assert maps.min() >= 0 and maps.max() <= 1, method


# -- MobileViT: the last spatial conv map, not the transformer on unfolded patches ---------------------
def test_timm_mobilevit_final_conv():
    torch.manual_seed(0)
    model = timm.create_model("mobilevit_xxs", pretrained=False, num_classes=5)
    clf = Classifier(model, input_size=(64, 64))
    assert str(clf.inversion_layer) == "final_conv" and clf.channel_layer == clf.inversion_layer
    assert clf.auto_layers_source == "timm" and clf.token_layout is None
    # the generic token rule no longer takes the transformer's (batch x 4 patch pixels, N, C) tokens
    with torch.no_grad():
        assert find_token_layout(model.eval(), clf.probe_input(), (64, 64)) is None
    _explains(clf, 64)


def test_hf_mobilevit_conv_1x1_exp():
    torch.manual_seed(0)
    cfg = T.MobileViTConfig(image_size=64, num_labels=5, hidden_sizes=[32, 40, 48],
                            neck_hidden_sizes=[8, 8, 16, 24, 32, 40, 80], expand_ratio=2.0)
    clf = Classifier.from_transformers(T.MobileViTForImageClassification(cfg).eval(), mean=(0.5,) * 3,
                                       std=(0.5,) * 3)
    assert str(clf.inversion_layer) == "mobilevit.conv_1x1_exp" and clf.auto_layers_source == "transformers"
    _explains(clf, 64)


# -- torchvision's ViT: real module names --------------------------------------------------------------
def test_torchvision_vit_block_named_as_torchvision_names_it():
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(image_size=64, patch_size=16, num_layers=3, num_heads=2,
                                                 hidden_dim=32, mlp_dim=64, num_classes=5)
    clf = Classifier(model, input_size=(64, 64))
    assert str(clf.inversion_layer) == "encoder.layers.encoder_layer_2:input"  # not "encoder.layers.2"
    assert clf.reshape_transform == TokenGrid(1, (4, 4)) and clf.auto_layers_source == "torchvision"
    _explains(clf, 64)


@pytest.mark.slow
def test_cli_layers_marks_the_block_of_torchvision_vit_b_16(capsys):
    from gfi.cli import main

    assert main(["layers", "torchvision:vit_b_16"]) == 0
    marked = [line for line in capsys.readouterr().out.splitlines() if "<- l0" in line]
    assert len(marked) == 1 and marked[0].split()[0] == "encoder.layers.encoder_layer_11", marked
    assert "l0 (encoder.layers.encoder_layer_11:input), l1 (encoder.layers.encoder_layer_11:input)" in marked[0]


# -- float64 / bfloat16 / float16 models: the probe is cast as forward casts ------------------------------
def _vit(dtype: torch.dtype) -> Classifier:
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2,
                              embed_dim=32, num_heads=2, num_classes=5)
    return Classifier(model.to(dtype), input_size=(32, 32))


def _resnet(dtype: torch.dtype) -> Classifier:
    torch.manual_seed(0)
    return Classifier(timm.create_model("resnet18", pretrained=False, num_classes=5).to(dtype), input_size=(64, 64))


@pytest.mark.parametrize("build, size, layer", [(_vit, 32, "blocks.1:input"), (_resnet, 64, "layer4")])
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_automatic_layers_of_a_half_or_double_model(build, size, layer, dtype):
    clf = build(dtype)
    assert str(clf.inversion_layer) == layer and clf.dtype == dtype
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    maps = get_method("gradcam", clf).explain(x, [[2]]).maps
    assert maps.dtype == torch.float32 and torch.isfinite(maps).all()
    reference = get_method("gradcam", build(torch.float32)).explain(x, [[2]]).maps
    tol = 1e-4 if dtype == torch.float64 else 0.1  # the same weights: the map of the float32 model
    assert (maps - reference).abs().max() < tol


# -- Swin: the input of the last block, not of the last stage ---------------------------------------------
def test_hf_swin_last_block_of_the_last_stage():
    torch.manual_seed(0)
    cfg = T.SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 2], num_heads=[1, 2], window_size=4,
                       num_labels=5)
    clf = Classifier.from_transformers(T.SwinForImageClassification(cfg).eval(), mean=(0.5,) * 3, std=(0.5,) * 3)
    assert str(clf.inversion_layer) == "swin.encoder.layers.1.blocks.1:input"  # not "swin.encoder.layers.1:input"
    assert clf.reshape_transform == TokenGrid(0, (8, 8))
    _explains(clf, 64)


def test_torchvision_swin_channels_last_blocks():
    torch.manual_seed(0)
    model = torchvision.models.SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[1, 2], num_heads=[1, 2],
                                               window_size=[4, 4], num_classes=5)
    clf = Classifier(model, input_size=(64, 64))
    # past its final LayerNorm and Permute: the last block of the channels-last stages
    assert str(clf.inversion_layer) == "features.3.1:input"
    assert clf.reshape_transform is nhwc_to_nchw and clf.channels_last_model
    _explains(clf, 64)


# -- the metadata rules, piece by piece --------------------------------------------------------------------
def test_graph_nodes_named_by_the_outermost_module_they_end():
    nodes = ["conv1", "layer1.0.conv", "layer1.0.relu", "layer1.0.add", "layer1.1.add", "avgpool", "flatten", "fc"]
    modules = {"conv1", "layer1", "layer1.0", "layer1.0.conv", "layer1.0.relu", "layer1.1", "avgpool", "fc"}
    assert _node_modules(nodes, modules) == [
        "conv1", "layer1.0.conv", "layer1.0.relu", "layer1.0", "layer1", "avgpool", None, "fc"]


def test_producer_skips_identities_but_not_in_place_activations():
    body = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(inplace=True))
    model = nn.ModuleDict({"body": body, "norm": nn.Identity()})
    x = torch.randn(1, 3, 4, 4)
    y, calls = _traced(model, lambda: model["norm"](model["body"](x)))
    # the conv made y, body.1 changed it in place and returned it, norm passed it on untouched
    assert [c.name for c in calls if c.out() is y] == ["body.0", "body.1", "body", "norm"]
    assert _producer(calls, y) == "body" and _producer(calls, y, prefer="body.1") == "body.1"


def test_user_models_have_no_metadata_and_use_the_generic_rule():
    from tests.conftest import TinyNet

    model = TinyNet()
    assert feature_hint(model, torch.zeros(1, 3, 4, 4)) is None
    clf = Classifier(model, input_size=(4, 4))
    assert str(clf.inversion_layer) == "pool" and clf.auto_layers_source == "generic"  # its last 2 x 2 map
    flat = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(48, 3)), input_size=(4, 4))
    with pytest.raises(NotAConvNetError, match="no 4-D"):
        _ = flat.inversion_layer
    assert flat.auto_layers_source == "none" and flat.token_layout is None


class _Untraceable(torchvision.models.ResNet):
    """A user's torchvision subclass whose forward branches on the data (torch.fx cannot trace it)."""

    def forward(self, x):
        if x.sum() > 0:
            x = x * 1.0
        return super().forward(x)


def test_untraceable_torchvision_subclass_falls_back_to_the_generic_rule():
    model = _Untraceable(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=5)
    clf = Classifier(model, input_size=(64, 64))
    assert str(clf.inversion_layer) == "layer4" and clf.auto_layers_source == "generic"


def test_traced_subclass_keeps_torchvision_metadata():
    class Mine(torchvision.models.ResNet):
        pass

    clf = Classifier(Mine(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=5), input_size=(64, 64))
    assert str(clf.inversion_layer) == "layer4" and clf.auto_layers_source == "torchvision"


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = nn.Linear(4, 4)

    def forward(self, x):
        return x + self.mlp(x)


class _OneStage(nn.Module):
    """Patch tokens through one stage that is itself a list of blocks (a one-stage Swin's layout)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2d(3, 4, 4, stride=4)
        self.stages = nn.Sequential(nn.Sequential(_Block(), _Block()))
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)
        return self.head(self.stages(t).mean(1))


def test_generic_rule_takes_the_innermost_list_of_blocks():
    clf = Classifier(_OneStage(), input_size=(16, 16))
    assert clf.inversion_layer == LayerRef("stages.0.1", use_input=True)  # not the stage "stages.0"
    assert clf.reshape_transform == TokenGrid(0, (4, 4)) and clf.auto_layers_source == "generic"
