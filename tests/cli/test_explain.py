"""``gfi explain`` end to end on the bundled photo (few iterations), and its error paths."""

import json

import numpy as np
import pytest
from PIL import Image

from gfi.cli import main
from tests.conftest import ASSETS

FAST = ["--iters1", "2", "--iters2", "2", "--quiet"]


def test_explain_writes_overlays_npy_and_results(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["explain", str(ASSETS / "dog_cat.jpg"), "--out", str(out), "--save-npy",
               "--target", "top1", "--target", "tabby cat", *FAST])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["model"]["model"] == "efficientnet_lite0" and res["model"]["sha256"]
    assert res["config"]["iters2"] == 2 and res["seed"] == 0
    rec = res["images"][0]
    classes = [t["class"] for t in rec["targets"]]
    assert classes[0] == rec["top5"][0]["class"] and classes[1] == 281
    w, h = Image.open(ASSETS / "dog_cat.jpg").size
    for c in classes:
        arr = np.load(out / f"dog_cat_{c}.npy")
        assert arr.dtype == np.float32 and arr.shape == (h, w)
        assert np.isfinite(arr).all() and arr.min() >= 0 and arr.max() <= 1
        assert Image.open(out / f"dog_cat_{c}.png").size[0] > 300
    assert np.load(out / "dog_cat_stage1.npy").shape == (h, w)
    assert "prob_kept" in rec["targets"][0] and "prob_removed" in rec["targets"][0]


def test_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["explain", str(ASSETS / "chelsea.png"), "--out", str(out), *FAST]) == 0
    # the same arguments again: the run is complete, nothing is redone or overwritten
    assert main(["explain", str(ASSETS / "chelsea.png"), "--out", str(out), *FAST]) == 0
    assert "nothing to do" in capsys.readouterr().err
    # other arguments on the same --out are refused
    assert main(["explain", str(ASSETS / "chelsea.png"), "--out", str(out), *FAST, "--iters2", "3"]) == 2
    assert "differs in: config.iters2" in capsys.readouterr().err
    assert main(["explain", str(ASSETS / "chelsea.png"), "--out", str(out), "--overwrite", *FAST]) == 0


def test_targets_csv(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("image,class\nchelsea.png,285\ndog_cat.jpg,207\n")
    out = tmp_path / "o"
    rc = main(["explain", str(ASSETS / "chelsea.png"), str(ASSETS / "dog_cat.jpg"), "--targets", str(csv),
               "--out", str(out), "--method", "gradcam", "--quiet"])
    assert rc == 0
    got = {r["image"].rsplit("/", 1)[-1]: r["targets"][0]["class"] for r in
           json.loads((out / "results.json").read_text())["images"]}
    assert got == {"chelsea.png": 285, "dog_cat.jpg": 207}


@pytest.mark.parametrize("argv,message", [
    (["--model", "vgg16"], "invalid choice"),
    (["--target", "unicornish"], "unknown class name"),
    (["--target", "1000"], "out of range"),
    (["--channel-layer", "blocks.99"], "Nearest names"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--gamma", "-1"], "gamma must be >= 0"),
    (["--method", "lime"], "unknown method"),
])
def test_bad_options_give_one_line_errors(tmp_path, capsys, argv, message):
    try:
        rc = main(["explain", str(ASSETS / "chelsea.png"), "--out", str(tmp_path / "o"), *FAST, *argv])
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_duplicate_stems_are_an_error(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        (tmp_path / d / "x.png").write_bytes((ASSETS / "chelsea.png").read_bytes())
    rc = main(["explain", str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png"), "--out", str(tmp_path / "o")])
    assert rc == 2 and "share the output name 'x'" in capsys.readouterr().err


def test_cuda_without_cuda(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc = main(["explain", str(ASSETS / "chelsea.png"), "--device", "cuda", "--out", str(tmp_path / "o")])
    assert rc == 2 and "CUDA is not available" in capsys.readouterr().err


def test_missing_and_unreadable_inputs(tmp_path, capsys):
    assert main(["explain", str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    rc = main(["explain", str(bad), str(ASSETS / "chelsea.png"), "--out", str(tmp_path / "o"), *FAST])
    assert rc == 0
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert len(res["images"]) == 1 and res["failures"][0]["image"] == str(bad)
    rc = main(["explain", str(bad), "--out", str(tmp_path / "o2"), *FAST])
    assert rc == 2 and "no image could be explained" in capsys.readouterr().err


def test_models_and_methods_lists(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet_lite0 [default]" in out and "weights available offline" in out
    assert "vgg19" in out and "resnet18" in out and "alexnet" in out
    assert main(["methods"]) == 0
    assert "gfi-stage1" in capsys.readouterr().out


def test_every_gfi_setting_is_one_option_with_its_help_default_and_choices(capsys):
    """The options are made from GFIConfig's field metadata (not its docstring): each setting once,
    one line of plain text with its default (and the paper's value and the choices where there are)."""
    from gfi.cli import build_parser
    from gfi.methods.gfi import GFIConfig
    from gfi.settings import describe

    explain = build_parser(["explain"])._subparsers._group_actions[0].choices["explain"]
    actions = {a.option_strings[0]: a for a in explain._actions if a.option_strings}
    text = explain.format_help().split("\n\n", 1)[1]  # after the usage lines
    for info in describe(GFIConfig):
        flag = "--" + info.name.replace("_", "-")
        assert flag in actions and actions[flag].help, flag
        assert text.count(flag + " ") == 1, flag  # each setting shown once
        assert "default: " in actions[flag].help and "``" not in actions[flag].help and ":func:" not in text
    assert "paper: 10" in actions["--gamma"].help and "default: 1.0" in actions["--gamma"].help
    assert "{blur,mean,noise}" in text
    assert "default: 0.003" in actions["--lr2"].help and actions["--lr1"].help != actions["--lr2"].help


def test_layers_shows_module_types_and_marks_the_presets_layers(capsys):
    """gfi layers listed names and shapes but not types (issue 16)."""
    assert main(["layers", "resnet18"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = {ln.split()[0]: ln for ln in lines[1:]}
    assert row["layer4.1.conv2"].split()[1] == "Conv2d" and row["maxpool"].split()[1] == "MaxPool2d"
    assert "<- l0 (layer4)" in row["layer4"] and "l1 (layer4.1.conv2:input)" in row["layer4.1.conv2"]
    assert "(512, 7, 7)" in row["layer4"]


def test_overlays_of_a_baseline_name_their_method(tmp_path, capsys):
    """Baseline overlays were <stem>_<class>.png with only the class in the title (issue 16)."""
    out = tmp_path / "o"
    assert main(["explain", str(ASSETS / "chelsea.png"), "--out", str(out), "--method", "gradcam", "--target", "281",
                 "--save-npy", "--quiet"]) == 0
    rec = json.loads((out / "results.json").read_text())["images"][0]["targets"][0]
    assert rec["overlay"] == "chelsea_gradcam_281.png" and (out / "chelsea_gradcam_281.png").is_file()
    assert rec["npy"] == "chelsea_281.npy"  # the map store's name, whatever the method
