"""``gfi explain`` on segmentation and detection models: ``--target mask:FILE:CLASS`` and
``--target box:X0,Y0,X1,Y1:CLASS`` on torchvision architectures whose weights plant the answer (a red
patch decides the score: tests/methods/target_nets.py), the image at twice the model's input size so
that the box is scaled and the mask resized; and the loader of torchvision's segmentation and
detection models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.cli.test_reliability import run
from tests.methods import target_nets as nets


def _save(x: torch.Tensor, path) -> None:
    Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)


def _patch_model(monkeypatch, clf, task: str) -> None:
    import gfi.models.presets as presets

    clf.task = task
    monkeypatch.setattr(presets, "load_model", lambda *a, **k: (clf, {"model": f"planted {task}", "weights": "random"}))


def _in(box, y, x) -> bool:
    x0, y0, x1, y1 = box
    return x0 <= x < x1 and y0 <= y < y1


def test_a_mask_target_on_a_segmentation_model(tmp_path, capsys, monkeypatch):
    """class "red" summed over a mask image: the map's maximum lies in the planted patch (in the
    image's own pixels, twice the model's input), the record holds the summed logits and the spec."""
    _patch_model(monkeypatch, nets.segmentation_model(), "segmentation")
    box = tuple(2 * v for v in nets.SEGMENTATION_BOX)
    x = torch.nn.functional.interpolate(nets.planted_images(1, nets.SEGMENTATION_SIZE, nets.SEGMENTATION_BOX),
                                        scale_factor=2, mode="nearest")[0]
    _save(x, tmp_path / "street.png")
    mask = np.zeros((256, 256), np.uint8)
    mask[box[1]:box[3], box[0]:box[2]] = 255
    Image.fromarray(mask).save(tmp_path / "patch.png")
    out = tmp_path / "o"
    rc, stdout, err = run(["explain", str(tmp_path / "street.png"), "--target", f"mask:{tmp_path / 'patch.png'}:red",
                           "--method", "gradcam", "--save-npy", "--out", str(out)], capsys)
    assert rc == 0, err
    rec = json.loads((out / "results.json").read_text())["images"][0]
    t = rec["targets"][0]
    assert rec["top5"] == [] and t["class"] == 1 and t["spec"] == f"mask:{tmp_path / 'patch.png'}:red"
    assert t["target"].startswith("mask:") and t["target"].endswith(":1") and t["evidence"]["holds"]
    m = np.load(out / t["npy"])
    assert m.shape == (256, 256) and _in(box, *divmod(int(m.argmax()), 256))
    assert t["prob"] > 0 and f"red (1), mask:{tmp_path / 'patch.png'}:red = " in stdout


def test_a_box_target_on_a_detection_model(tmp_path, capsys, monkeypatch):
    """The detection whose box matches --target box:... (given in the image's pixels, twice the
    model's input) is explained: the map's maximum lies in it; a box no detection matches gives a
    collapsed map, said in one line, not an error."""
    _patch_model(monkeypatch, nets.detection_model(), "detection")
    box = tuple(2 * v for v in nets.DETECTION_BOX)
    x = torch.nn.functional.interpolate(nets.planted_images(1, nets.DETECTION_SIZE, nets.DETECTION_BOX),
                                        scale_factor=2, mode="nearest")[0]
    _save(x, tmp_path / "scene.png")
    out = tmp_path / "o"
    spec = "box:{},{},{},{}:red".format(*box)
    rc, _, err = run(["explain", str(tmp_path / "scene.png"), "--target", spec, "--target", "box:0,0,40,40:1",
                      "--method", "gradcam", "--save-npy", "--out", str(out)], capsys)
    assert rc == 0, err
    hit, miss = json.loads((out / "results.json").read_text())["images"][0]["targets"]
    assert hit["target"] == "box:{},{},{},{}:1".format(*nets.DETECTION_BOX) and hit["spec"] == spec
    assert hit["npy"] == "scene_box-320.64.448.192-red.npy" and 0 < hit["prob"] < 1
    m = np.load(out / hit["npy"])
    assert _in(box, *divmod(int(m.argmax()), m.shape[1]))
    assert miss["prob"] == 0 and miss["collapsed"] and "box:0,0,40,40:1: the map collapsed" in err


@pytest.mark.parametrize("task,spec,message", [
    ("segmentation", "top1", "is a segmentation model, whose output has no one score per class for that; give "
                             "--target mask:MASK.png:CLASS"),
    ("detection", "red", "is a detection model, whose output has no one score per class for that; give "
                         "--target box:X0,Y0,X1,Y1:CLASS"),
    ("detection", "box:5,5,1,9:red", "box: takes X0,Y0,X1,Y1:CLASS, the box in the image's pixels with X1 > X0"),
    ("segmentation", "mask:nothere.png:red", "no mask image nothere.png"),
    ("segmentation", "mask:empty.png:red", "the mask empty.png is empty (every pixel 0)"),
    ("classification", "box:1,2,30,40:red", "a box target reads a detection model's output"),
])
def test_a_target_the_model_cannot_score_is_one_line_before_any_work(tmp_path, capsys, monkeypatch, task, spec,
                                                                     message):
    from tests import cli_tiny

    clf = {"segmentation": nets.segmentation_model, "detection": nets.detection_model}.get(task, cli_tiny.make)()
    _patch_model(monkeypatch, clf, task)
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save("empty.png")
    _save(torch.rand(3, 40, 40), tmp_path / "x.png")
    args = ["explain", "x.png", "--method", "gradcam", "--out", "o"] + (["--target", spec] if spec != "top1" else [])
    rc, _, err = run(args, capsys)
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_torchvision_segmentation_and_detection_models_load_with_their_task():
    from gfi.errors import GFIError
    from gfi.models.sources import load_source

    seg, info = load_source("torchvision:lraspp_mobilenet_v3_large", weights="random")
    assert (seg.task, seg.input_size, seg.num_classes, info["task"]) == ("segmentation", (520, 520), 21, "segmentation")
    assert seg.class_name(12) == "dog"
    det, info = load_source("torchvision:fasterrcnn_mobilenet_v3_large_320_fpn", weights="random")
    assert (det.task, det.input_size, str(det.inversion_layer)) == ("detection", (320, 320),
                                                                    "backbone.fpn.layer_blocks.0")
    assert det.mean.flatten().tolist() == [0.0] * 3 and det.std.flatten().tolist() == [1.0] * 3
    with pytest.raises(GFIError, match="torchvision has no classification, segmentation or detection model 'lraspp'"):
        load_source("torchvision:lraspp", weights="random")


def test_a_detector_given_without_layers_explains_its_fpn_map():
    """Automatic layers on a torchvision detector landed on ``rpn.head.bbox_pred`` (the generic rule's
    last spatial map); the library rule gives its finest FPN map."""
    import torchvision

    from gfi.models.classifier import Classifier

    net = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None,
                                                                             num_classes=3).eval()
    clf = Classifier(net, mean=(0, 0, 0), std=(1, 1, 1), input_size=(320, 320))
    assert (str(clf.inversion_layer), str(clf.channel_layer), clf.auto_layers_source) == (
        "backbone.fpn.layer_blocks.0", "backbone.fpn.layer_blocks.0", "torchvision")


def test_gfi_compare_refuses_a_segmentation_model_in_one_line(tmp_path, capsys, monkeypatch):
    from gfi.cli import main

    _patch_model(monkeypatch, nets.segmentation_model(), "segmentation")
    assert main(["compare", "--methods", "gradcam", "--out", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a segmentation model; explain it with gfi explain --target mask:MASK.png:CLASS" \
        in err[0]
    assert not (tmp_path / "c.png").exists()


def test_gfi_eval_refuses_a_detection_model_in_one_line(monkeypatch):
    import argparse

    from gfi.errors import UsageError
    from gfi.models.loading import load_classifier

    _patch_model(monkeypatch, nets.detection_model(), "detection")
    run = argparse.Namespace(model="planted", weights="random", allow_pickle=False, download=False,
                             inversion_layer=None, channel_layer=None, multilabel=False)
    with pytest.raises(UsageError, match=r"^gfi eval scores class maps against class labels, and --model planted is "
                                         r"a detection model; give a classifier"):
        load_classifier(run)
