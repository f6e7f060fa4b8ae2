"""Presets resolve the paper's activations on randomly initialised torchvision networks."""

import re

import pytest
import torch
from torch import nn

from gfi.models import Classifier, LayerNotFoundError, NotAConvNetError, WeightsError, load_model
from gfi.models.classifier import auto_layers

X = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def acts(clf):
    feats, _ = clf.activations(X, [clf.inversion_layer, clf.channel_layer], stop=False)
    return feats[clf.inversion_layer], feats[clf.channel_layer]


@pytest.mark.parametrize("name,l0_shape,l1_shape", [
    ("vgg19", (1, 512, 7, 7), (1, 512, 14, 14)),
    ("resnet18", (1, 512, 7, 7), (1, 512, 7, 7)),
    ("alexnet", (1, 256, 6, 6), (1, 256, 6, 6)),
])
def test_paper_layers_shapes(name, l0_shape, l1_shape):
    clf, info = load_model(name, weights="random")
    assert info["weights"] == "random"
    f0, f1 = acts(clf)
    assert f0.shape == l0_shape and f1.shape == l1_shape


def test_vgg19_l1_is_relu_of_conv5_4_and_l0_is_its_pool():
    clf, _ = load_model("vgg19", weights="random")
    f0, f1 = acts(clf)
    with torch.no_grad():
        conv54 = clf.model.features[:35](clf.normalize(X))
    assert isinstance(clf.model.features[34], nn.Conv2d)
    assert torch.allclose(f1, torch.relu(conv54))  # not overwritten by the in-place ReLU
    assert torch.allclose(f0, nn.functional.max_pool2d(f1, 2))


def test_resnet18_l1_is_activation_after_next_to_last_conv():
    clf, _ = load_model("resnet18", weights="random")
    f0, f1 = acts(clf)
    m = clf.model
    with torch.no_grad():
        h = m.maxpool(m.relu(m.bn1(m.conv1(clf.normalize(X)))))
        h = m.layer4[0](m.layer3(m.layer2(m.layer1(h))))
        expected_l1 = torch.relu(m.layer4[1].bn1(m.layer4[1].conv1(h)))
        expected_l0 = m.layer4[1](h)
    assert torch.allclose(f1, expected_l1, atol=1e-6)
    assert torch.allclose(f0, expected_l0, atol=1e-6)


def test_alexnet_uses_pool5_for_both():
    clf, _ = load_model("alexnet", weights="random")
    f0, f1 = acts(clf)
    assert torch.equal(f0, f1)
    assert isinstance(clf.model.features[12], nn.MaxPool2d)


def test_stage1_forward_stops_at_l0():
    clf, _ = load_model("resnet18", weights="random")
    called = []
    h = clf.model.fc.register_forward_hook(lambda *a: called.append(1))
    try:
        _feats, logits = clf.activations(X, [clf.inversion_layer], stop=True)
    finally:
        h.remove()
    assert logits is None and not called


def test_auto_layers_on_user_models():
    import torchvision

    clf = Classifier(torchvision.models.resnet18(weights=None))
    assert str(clf.inversion_layer) == "layer4"
    clf = Classifier(torchvision.models.vgg11(weights=None))
    l0, _ = auto_layers(clf)
    assert l0.name == "features"  # pool5 (features.20's output), not avgpool, which resizes it to 7 x 7


class ViTLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3 * 16 * 16, 8)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        tokens = self.proj(x.unfold(2, 16, 16).unfold(3, 16, 16).permute(0, 2, 3, 1, 4, 5).flatten(3).flatten(1, 2))
        return self.head(tokens.mean(1))


def test_model_without_spatial_maps_or_blocks_gets_clear_error():
    # tokens, but no transformer blocks (no Sequential of token-to-token modules): nothing to choose
    clf = Classifier(ViTLike(), input_size=(32, 32))
    with pytest.raises(NotAConvNetError, match=r"no transformer blocks.*TokenGrid\(prefix_tokens"):
        _ = clf.inversion_layer


def test_wrong_layer_lists_nearest_names():
    with pytest.raises(LayerNotFoundError, match=r"layer 'layer4.1.conv3'.*Nearest names: .*layer4\.1\.conv2"):
        load_model("resnet18", weights="random")[0].with_layers(channel_layer="layer4.1.conv3")


def test_an_output_that_is_not_class_scores_needs_a_target():
    """A (B, C, H, W) output passes through forward (a target reads it); class probabilities, top-1 and
    an output that is no tensor are refused in one line."""
    from gfi.errors import TargetError
    from gfi.methods.registry import get_method

    clf = Classifier(nn.Conv2d(3, 4, 3), input_size=(8, 8))
    x = torch.rand(1, 3, 8, 8)
    assert clf(x).shape == (1, 4, 6, 6)
    with pytest.raises(ValueError, match=r"2-D \(batch, classes\) score tensor"):
        clf.scores(clf(x))
    with pytest.raises(TargetError, match=r"top-1 class, for which the model must return a 2-D \(batch, classes\) "
                                          r"score tensor; it returned a tensor of shape \(1, 4, 6, 6\): give a target"):
        get_method("gradient", clf).explain(x)

    class Strange(nn.Module):
        def forward(self, x):
            return "scores"

    with pytest.raises(ValueError, match=r"the model returned a str; gfi reads a tensor"):
        Classifier(Strange(), input_size=(8, 8))(x)


def test_unknown_model_lists_valid_ones():
    with pytest.raises(ValueError, match="valid models: efficientnet_lite0"):
        load_model("vgg16")


def test_checkpoint_errors(tmp_path):
    import torchvision

    good = tmp_path / "alexnet.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), good)
    _clf, info = load_model("alexnet", weights=good)
    assert info["sha256"] and len(info["sha256"]) == 16
    wrong = tmp_path / "resnet.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), wrong)
    with pytest.raises(WeightsError, match=r"missing keys: features\.0\.weight"):
        load_model("alexnet", weights=wrong)
    pickled = tmp_path / "pickle.pth"
    torch.save({"net": nn.Linear(2, 2)}, pickled)
    with pytest.raises(WeightsError, match="--unsafe-allow-pickle"):
        load_model("alexnet", weights=pickled)
    with pytest.raises(WeightsError, match="does not exist"):
        load_model("alexnet", weights=tmp_path / "nope.pth")


def test_torchvision_weights_missing_offline_say_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsError, match="--weights FILE"):
        load_model("vgg19")


def test_class_names_and_lookup(lite0):
    assert lite0.class_name(281).startswith("tabby")
    assert lite0.class_index("tabby cat") == 281
    assert lite0.class_index("281") == 281
    with pytest.raises(ValueError, match="out of range"):
        lite0.class_index(1000)
    with pytest.raises(ValueError, match="unknown class name"):
        lite0.class_index("unicornish")


def test_lite0_offline_weights_reproduce_known_predictions(lite0):
    from gfi.data import load_image
    from tests.conftest import ASSETS

    x = lite0.prepare(load_image(ASSETS / "chelsea.png"))
    with torch.no_grad():
        top = lite0(x).topk(3).indices[0].tolist()
    assert set(top) <= {281, 282, 283, 284, 285, 287} and top[0] in (281, 282, 285)


@pytest.mark.parametrize("name,expected", [
    ("horse", "not a class name of efficientnet_lite0, but a word in 3: 344: hippopotamus"),
    ("dog", "but a word in 14: 153: Maltese dog"),
    ("crane", "ambiguous: it names 2 classes (134: crane; 517: crane)"),
    ("retriev", "unknown class name 'retriev'"),
])
def test_class_names_match_exactly_never_on_a_prefix(lite0, name, expected):
    """--target horse explained "horse cart" and --target dog "dogsled" (issue 16): a name must be a
    class's full name or one of its synonyms; anything else is an error that lists the candidates."""
    with pytest.raises(ValueError, match=re.escape(expected)):
        lite0.class_index(name)
    assert lite0.class_index("Tabby Cat") == 281 and lite0.class_index("golden retriever") == 207
    assert lite0.class_index("German shepherd dog") == 235 and lite0.class_index("dog sled") == 537
    assert [i for i, _ in lite0.find_classes("retriever")] == [205, 206, 207, 208, 209]


def test_a_word_of_exactly_one_class_name_is_that_class(lite0):
    """--target greyhound was refused although "Italian greyhound" is the one ImageNet name that holds
    the word (there is no class "greyhound"; 172 is "whippet"): a whole word of exactly one class's
    name resolves to it; a word of several stays an error listing them, a part of a word matches nothing."""
    assert lite0.class_index("greyhound") == lite0.class_index("Greyhound ") == 171
    assert lite0.class_name(171) == "Italian greyhound"
    assert lite0.class_index("italian") == 171
    with pytest.raises(ValueError, match=re.escape("a word in 14")):
        lite0.class_index("dog")
    with pytest.raises(ValueError, match="ambiguous"):
        lite0.class_index("crane")
    with pytest.raises(ValueError, match="unknown class name 'greyhou'"):
        lite0.class_index("greyhou")


def test_gfi_classes_lists_indices_and_names(capsys):
    from gfi.cli import main

    assert main(["classes", "retriever"]) == 0
    assert capsys.readouterr().out.splitlines()[2].split() == ["207", "golden", "retriever"]
    assert main(["classes", "zzzz"]) == 2 and "no class name" in capsys.readouterr().err


def test_download_without_a_network_is_one_line(monkeypatch, tmp_path, capsys):
    """--download offline printed a 68-line traceback ending in URLError (issue 16)."""
    import urllib.error

    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    from gfi.cli import main

    rc = main(["explain", "--model", "resnet18", "--download", "--out", str(tmp_path / "o"), "--method", "gradcam"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "could not fetch the weights of resnet18 from https://download.pytorch.org" in err
    assert "resnet18-f37072fd.pth into" in err and "--weights FILE" in err
