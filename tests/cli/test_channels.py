"""``gfi explain`` end to end with a 1-channel model from a local checkpoint, on a 16-bit greyscale PNG:
the image is read as one channel, and the map's maximum lies on the patch that decides the score
(tests/methods/channel_nets.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from gfi.cli import main
from tests.methods.channel_nets import CORNERS, PATCH, SIZE, PatchNet, patch_classifier, patch_images

SCALE = 2  # the PNG is twice the model's input size: maps come back at the image's own size


@pytest.fixture
def grey_model(monkeypatch, tmp_path):
    """The presets' loader builds a 1-channel PatchNet with random weights and loads ``--weights FILE``
    (the planted checkpoint written here) into it, as for a user's own checkpoint."""
    import gfi.models.presets as presets
    from gfi.models.weights import file_sha256, load_into, read_state_dict

    planted = patch_classifier(1)
    ckpt = tmp_path / "grey.pt"
    torch.save(planted.model.state_dict(), ckpt)

    def load_model(name="grey", *, weights="default", allow_pickle=False, download=False):
        model = PatchNet(1, 0, (0.0,), (1.0,))
        with torch.no_grad():
            for p in model.parameters():
                p.normal_()  # not the planted weights: those come from the checkpoint
        info = {"model": "grey", "weights": "random", "sha256": None}
        if weights not in (None, "default", "random"):
            load_into(model, read_state_dict(weights, allow_pickle=allow_pickle), source=str(weights))
            info.update(weights=str(weights), sha256=file_sha256(weights))
        return patch_classifier(1, model=model), info

    monkeypatch.setattr(presets, "load_model", load_model)
    return ckpt


def write_grey_png(path, b: int = 0):
    x = patch_images(1)[b, 0]
    big = x.repeat_interleave(SCALE, 0).repeat_interleave(SCALE, 1)
    Image.fromarray((big.numpy() * 65535).round().astype(np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")  # a 16-bit grey file
    return path


@pytest.mark.parametrize("method", ["gfi", "gradcam"])
def test_gfi_explain_on_a_grey_png_with_a_1_channel_checkpoint(grey_model, tmp_path, capsys, method):
    image = write_grey_png(tmp_path / "scan.png")
    out = tmp_path / "out"
    argv = ["explain", str(image), "--out", str(out), "--weights", str(grey_model), "--save-npy", "--quiet",
            "--target", "0", "--method", method]
    if method == "gfi":
        argv += ["--iters1", "10", "--iters2", "20"]
    assert main(argv) == 0, capsys.readouterr().err
    res = json.loads((out / "results.json").read_text())
    rec = res["images"][0]
    assert rec["status"] == "ok" and rec["size"] == [SIZE * SCALE, SIZE * SCALE]
    assert rec["top5"][0]["class"] == 0 and rec["top5"][0]["class_name"] == "patch"
    sal = np.load(out / "scan_0.npy")
    assert sal.shape == (SIZE * SCALE, SIZE * SCALE)
    y, x = np.unravel_index(int(sal.argmax()), sal.shape)
    r, c = CORNERS[0]
    assert r * SCALE <= y < (r + PATCH) * SCALE and c * SCALE <= x < (c + PATCH) * SCALE, (y, x)
    thumb = np.asarray(Image.open(out / "thumbs" / "scan_input.jpg").convert("RGB")).astype(int)
    assert np.abs(thumb - thumb[..., :1]).max() <= 2  # the input is shown grey


def test_an_rgb_npy_for_a_1_channel_model_is_refused_and_listed(grey_model, tmp_path, capsys):
    np.save(tmp_path / "rgb.npy", np.zeros((3, 40, 40), np.float32))
    out = tmp_path / "out"
    main(["explain", str(tmp_path / "rgb.npy"), "--out", str(out), "--weights", str(grey_model), "--quiet",
          "--method", "gradcam"])
    err = capsys.readouterr().err
    assert "but the model takes 1 channel(s)" in err and "Traceback" not in err


def test_gfi_compare_reads_the_image_as_grey_for_a_1_channel_model(grey_model, tmp_path, capsys):
    image = write_grey_png(tmp_path / "scan.png")
    out = tmp_path / "cmp.png"
    rc = main(["compare", str(image), "--weights", str(grey_model), "--methods", "gradcam,gradient", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert Image.open(out).size[0] > 100
