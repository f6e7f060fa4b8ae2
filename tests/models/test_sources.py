"""Model sources by name (issue 15): ``timm:NAME`` and ``torchvision:NAME[:WEIGHTS]`` in Python and
on the CLI. Offline: random weights saved by the test, fake caches in tmp; no network."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import gfi
from gfi.cli import main
from gfi.models import WeightsError, imagenet_class_names
from gfi.models.sources import ModelSpecError
from tests.cli.test_reliability import run

PHOTO = Path(gfi.__file__).parent / "assets" / "chelsea.png"


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Both caches (torch hub, Hugging Face hub) point at empty folders in tmp."""
    hub, hf = tmp_path / "torch_hub", tmp_path / "hf_hub"
    hub.mkdir()
    hf.mkdir()
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf))
    return hub, hf


def explain_with_checkpoint(spec, tmp_path, capsys):
    """Random weights of ``spec`` saved as a state dict, then ``gfi explain --weights FILE``."""
    clf, _ = gfi.load_model(spec, weights="random")
    ckpt = tmp_path / "model.pth"
    torch.save(clf.model.state_dict(), ckpt)
    out = tmp_path / "out"
    rc, _, err = run(["explain", str(PHOTO), "--model", spec, "--weights", str(ckpt), "--method", "gradcam",
                      "--save-npy", "--quiet", "--out", str(out)], capsys)
    assert rc == 0, err
    res = json.loads((out / "results.json").read_text())
    maps = [np.load(p) for p in out.rglob("*.npy")]
    assert maps and all(np.isfinite(m).all() and m.shape == (300, 451) for m in maps)
    return clf, res, ckpt


def test_timm_model_explains_end_to_end_from_a_checkpoint(tmp_path, capsys):
    clf, res, ckpt = explain_with_checkpoint("timm:resnet18", tmp_path, capsys)
    info = res["model"]
    assert info["model"] == "timm:resnet18" and info["source"] == "timm" and info["architecture"] == "resnet18"
    assert info["weights"] == str(ckpt) and len(info["sha256"]) == 16
    from gfi.models.weights import file_sha256

    assert info["sha256"] == file_sha256(ckpt)
    # what was loaded is the local file: no hub id that would say the hub's weights were used
    assert "hf_hub_id" not in info and "timm/" not in json.dumps(info)
    assert info["input_size"] == [224, 224] and info["num_classes"] == 1000
    assert clf.class_names == list(imagenet_class_names())  # timm's ImageNet info, 1000 classes
    top = res["images"][0]["targets"][0]
    assert top["class_name"] == imagenet_class_names()[top["class"]]
    assert res["inversion_layer"] == "layer4" and res["channel_layer"] == "layer4"  # auto_layers


def test_torchvision_model_explains_end_to_end_from_a_checkpoint(tmp_path, capsys):
    import torchvision

    clf, res, ckpt = explain_with_checkpoint("torchvision:resnet18", tmp_path, capsys)
    info = res["model"]
    # the enum gave the class names and preprocessing, not the weights (a local file)
    assert info["source"] == "torchvision" and info["preprocessing_of"] == "ResNet18_Weights.IMAGENET1K_V1"
    assert "weights_enum" not in info
    assert info["weights"] == str(ckpt) and info["input_size"] == [224, 224] and info["resize_size"] == [256]
    categories = torchvision.models.ResNet18_Weights.DEFAULT.meta["categories"]
    assert clf.class_names == categories and len(categories) == 1000
    top = res["images"][0]["targets"][0]
    assert top["class_name"] == categories[top["class"]]
    assert res["inversion_layer"] == "layer4"


def test_timm_mean_std_size_interpolation_come_from_its_data_config():
    import timm
    from timm.data import resolve_model_data_config

    # a TF-ported model: mean = std = 0.5, bilinear; a ResNet trained at 176
    for spec, mean, size, interp in (("timm:tf_mobilenetv3_small_minimal_100", (0.5,) * 3, (224, 224), "bilinear"),
                                     ("timm:resnet10t", (0.485, 0.456, 0.406), (176, 176), "bicubic")):
        clf, info = gfi.load_model(spec, weights="random")
        config = resolve_model_data_config(timm.create_model(spec[5:], pretrained=False))
        assert info["mean"] == mean == tuple(config["mean"]) and info["std"] == tuple(config["std"])
        assert clf.input_size == size == tuple(config["input_size"][1:]) and info["interpolation"] == interp
        assert torch.allclose(clf.mean.flatten(), torch.tensor(mean))
        assert clf.prepare(torch.rand(3, 50, 70)).shape == (1, 3, *size)
        assert info["weights"] == "random" and info["sha256"] is None and clf.name == spec
        assert "hf_hub_id" not in info  # random weights: no hub id that would say where they came from


def test_torchvision_enum_gives_categories_and_the_crop_size_as_input_size():
    import torchvision

    clf, info = gfi.load_model("torchvision:resnet50:IMAGENET1K_V2", weights="random")
    enum = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
    # gfi resizes the whole image to the crop size (224); the resize size (232) is recorded, not used
    assert clf.input_size == (224, 224) and info["resize_size"] == [232] and info["interpolation"] == "bilinear"
    assert info["preprocessing_of"] == str(enum) and clf.class_names == enum.meta["categories"]
    assert info["weights"] == "random" and info["sha256"] is None and "weights_enum" not in info
    assert info["mean"] == (0.485, 0.456, 0.406) and info["std"] == (0.229, 0.224, 0.225)
    # the full enum name works too; DEFAULT is the default
    _, full = gfi.load_model("torchvision:resnet50:ResNet50_Weights.IMAGENET1K_V2", weights="random")
    assert full["preprocessing_of"] == str(enum)
    with pytest.raises(ModelSpecError, match=r"no member 'V9'; its weights: DEFAULT, IMAGENET1K_V1, IMAGENET1K_V2$"):
        gfi.load_model("torchvision:resnet50:V9", weights="random")


def test_missing_weights_are_one_line_naming_both_ways(empty_caches):
    hub, hf = empty_caches
    for spec, folder in (("timm:resnet18", hf), ("torchvision:resnet18", hub)):
        with pytest.raises(WeightsError) as exc:
            gfi.load_model(spec)
        message = str(exc.value)
        assert "\n" not in message and "--weights FILE" in message and str(folder) in message, message


def test_missing_weights_on_the_cli(tmp_path, capsys, empty_caches):
    rc, _, err = run(["explain", str(PHOTO), "--model", "timm:resnet18", "--method", "gradcam", "--quiet",
                      "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "--weights FILE" in err and str(empty_caches[1]) in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1


def test_default_weights_are_read_from_the_local_caches(empty_caches):
    """timm's file in the Hugging Face cache layout, torchvision's in the torch hub cache: found on disk."""
    from safetensors.torch import save_file

    hub, hf = empty_caches
    spec = "timm:tf_mobilenetv3_small_minimal_100"
    ref, _ = gfi.load_model(spec, weights="random")
    repo = hf / "models--timm--tf_mobilenetv3_small_minimal_100.in1k"
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    save_file({k: v.contiguous() for k, v in ref.model.state_dict().items()}, str(snapshot / "model.safetensors"))
    clf, info = gfi.load_model(spec)
    assert info["weights"] == str(snapshot / "model.safetensors")
    assert info["hf_hub_id"] == "timm/tf_mobilenetv3_small_minimal_100.in1k"  # the hub's weights: named
    assert all(torch.equal(a, b) for a, b in zip(clf.model.state_dict().values(), ref.model.state_dict().values(),
                                                  strict=True))

    tv, _ = gfi.load_model("torchvision:resnet18", weights="random")
    (hub / "checkpoints").mkdir()
    torch.save(tv.model.state_dict(), hub / "checkpoints" / "resnet18-f37072fd.pth")
    clf, info = gfi.load_model("torchvision:resnet18")
    assert info["weights"] == str(hub / "checkpoints" / "resnet18-f37072fd.pth")
    assert info["weights_enum"] == "ResNet18_Weights.IMAGENET1K_V1" and "preprocessing_of" not in info
    assert torch.equal(clf.model.fc.weight, tv.model.fc.weight)


def test_layers_are_automatic_and_overridable():
    from gfi.models.loading import load_checkpointed

    clf, _ = load_checkpointed("timm:resnet18", "random")
    assert (str(clf.inversion_layer), str(clf.channel_layer)) == ("layer4", "layer4")
    clf, _ = load_checkpointed("timm:resnet18", "random", inversion_layer="layer3",
                               channel_layer="layer4.1.conv2:input")
    assert (str(clf.inversion_layer), str(clf.channel_layer)) == ("layer3", "layer4.1.conv2:input")


@pytest.mark.parametrize("model,message", [
    ("resnet50", "invalid choice: 'resnet50' (choose from 'efficientnet_lite0'"),
    ("resnet50", "or a model source: timm:NAME, torchvision:NAME[:WEIGHTS] or hf:PATH"),
    ("timm:a:b", "'timm:a:b': expected timm:NAME"),
    ("torchvision:", "expected torchvision:NAME[:WEIGHTS]"),
])
def test_bad_model_names_are_argparse_errors(tmp_path, capsys, model, message):
    rc, _, err = run(["explain", str(PHOTO), "--model", model, "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and message in err and len(err.strip().splitlines()[-1]) > len(message)


def test_unknown_source_names_give_the_nearest(tmp_path, capsys):
    rc, _, err = run(["explain", str(PHOTO), "--model", "timm:resnt18", "--weights", "random", "--quiet",
                      "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "timm has no model 'resnt18'. Nearest: resnet18" in err
    with pytest.raises(ModelSpecError, match=r"torchvision has no classification, segmentation or detection "
                                             r"model 'resnt50'\. Nearest: resnet50"):
        gfi.load_model("torchvision:resnt50", weights="random")


def test_models_command_lists_the_sources(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet_lite0 [default]" in out
    assert "timm:NAME" in out and "--model timm:convnext_tiny" in out
    assert "torchvision:NAME[:WEIGHTS]" in out and "--model torchvision:resnet50:IMAGENET1K_V2" in out
