"""A 1-channel Hugging Face classifier (``num_channels=1``): its channel count is read from the config,
a processor's one-value (or equal three-value) normalisation fits it, and ``gfi explain --model
hf:FOLDER`` reads a colour photo as grey for it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from gfi import Classifier, get_method
from tests.cli.test_reliability import run
from tests.conftest import ASSETS

T = pytest.importorskip("transformers", reason="transformers is a test dependency (pip install -e '.[test]')")


def _grey_resnet():
    torch.manual_seed(0)
    cfg = T.ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)
    return T.ResNetForImageClassification(cfg).eval()


def test_from_transformers_takes_the_configs_channel_count():
    model = _grey_resnet()
    clf = Classifier.from_transformers(model, T.ViTImageProcessor(size={"height": 32, "width": 32},
                                                                  image_mean=[0.5, 0.5, 0.5], image_std=[0.25] * 3))
    assert clf.channels == 1 and clf.mean.flatten().tolist() == [0.5] and clf.std.flatten().tolist() == [0.25]
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(clf(x), model(pixel_values=(x - 0.5) / 0.25).logits)
    e = get_method("gradcam", clf).explain(x, 0)
    assert e.maps.shape == (2, 1, 32, 32) and torch.isfinite(e.maps).all()
    no_norm = Classifier.from_transformers(model, T.ViTImageProcessor(do_normalize=False, size={"height": 32,
                                                                                                "width": 32}))
    assert no_norm.channels == 1 and no_norm.mean.flatten().tolist() == [0.0]


def test_cli_explains_a_photo_as_grey_with_a_1_channel_hf_folder(tmp_path, capsys):
    folder = tmp_path / "grey-resnet"
    _grey_resnet().save_pretrained(folder)
    T.ViTImageProcessor(size={"height": 48, "width": 48}, image_mean=[0.5], image_std=[0.5]).save_pretrained(folder)
    out = tmp_path / "out"
    rc, _, err = run(["explain", str(ASSETS / "chelsea.png"), "--model", f"hf:{folder}", "--method", "gradcam",
                      "--out", str(out), "--save-npy"], capsys)
    assert rc == 0, err
    assert "converted to grey" in err  # the colour photo, made grey for the 1-channel model
    rec = json.loads((out / "results.json").read_text())["images"][0]
    w, h = Image.open(ASSETS / "chelsea.png").size
    c = rec["targets"][0]["class"]
    sal = np.load(out / f"chelsea_{c}.npy")
    assert sal.shape == (h, w) and np.isfinite(sal).all()
