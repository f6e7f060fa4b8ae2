"""The inputs of ``gfi explain``: the ``--targets`` CSV as spreadsheets save it (issue 14 case 5)
and the same file given twice (issue 16)."""

import json

import pytest

from gfi.cli.targets import read_targets_csv
from gfi.errors import UsageError
from gfi.folder.targets import unique_inputs
from tests.cli.test_reliability import run, write_images


def test_a_csv_with_a_byte_order_mark_and_a_header_is_read(tmp_path):
    f = tmp_path / "t.csv"
    f.write_bytes("\ufeffimage,class\r\na.png,207\r\nb.png,\"tabby, tabby cat\"\r\n# a comment\r\n\r\na.png,281\r\n"
                  .encode("utf-8"))
    assert read_targets_csv(f) == {"a.png": ["207", "281"], "b.png": ["tabby, tabby cat"]}
    f.write_text("a.png,207\n")  # no header
    assert read_targets_csv(f) == {"a.png": ["207"]}


@pytest.mark.parametrize("text,message", [
    ("image,class\na.png,207\nb.png,\n", "line 3: no class for b.png"),
    ("image,class\na.png\n", "line 2: expected `image,class`, got 'a.png'"),
    ("image,class\n,207\n", "line 2: no image"),
])
def test_every_csv_error_names_its_line(tmp_path, text, message):
    f = tmp_path / "t.csv"
    f.write_text(text)
    with pytest.raises(UsageError, match="t.csv, " + message.replace("(", r"\(").replace(")", r"\)")):
        read_targets_csv(f)


def test_a_csv_that_is_not_utf8_says_so(tmp_path):
    f = tmp_path / "t.csv"
    f.write_bytes("a.png,caf\xe9\n".encode("latin-1"))
    with pytest.raises(UsageError, match=r"not UTF-8 text .*save the CSV as UTF-8"):
        read_targets_csv(f)


def test_the_same_file_twice_is_one_input(tmp_path):
    write_images(tmp_path, 2)
    a, b = tmp_path / "im0.png", tmp_path / "im1.png"
    assert unique_inputs([a, b, a, tmp_path / "." / "im0.png"]) == [a, b]
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "im0.png").write_bytes(a.read_bytes())
    with pytest.raises(UsageError, match="two inputs share the output name 'im0'"):
        unique_inputs([a, tmp_path / "x" / "im0.png"])
    (tmp_path / "IM1.jpg").write_bytes(b.read_bytes())
    with pytest.raises(UsageError, match=r"^two inputs share output names 'im1' and 'IM1' \(equal but for case\): "):
        unique_inputs([a, b, tmp_path / "IM1.jpg"])  # one file on macOS: the second's outputs would replace the first's


def test_a_file_given_twice_and_in_the_csv_has_its_targets_merged(tmp_path, capsys, monkeypatch):
    from tests import cli_tiny

    cli_tiny.patch(monkeypatch)
    folder = write_images(tmp_path / "in", 1)
    csv = tmp_path / "t.csv"
    csv.write_text("image,class\nim0.png,2\n" + f"{folder / 'im0.png'},5\n")
    rc, _, err = run(["explain", str(folder / "im0.png"), str(folder / "im0.png"), "--targets", str(csv),
                      "--out", str(tmp_path / "o"), "--method", "gradcam", "--quiet"], capsys)
    assert rc == 0, err
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert len(res["images"]) == 1 and [t["class"] for t in res["images"][0]["targets"]] == [2, 5]


def test_a_word_of_one_class_name_is_that_class_and_said_so(tmp_path, capsys, monkeypatch):
    """--target greyhound was refused though one class name ("Italian greyhound") holds the word: a
    whole word of exactly one class's name is that class, and the run says how it read it."""
    from tests import cli_tiny

    cli_tiny.patch(monkeypatch)  # class 3 is "<b>bold</b> & 'q'": "bold" is a word of that name only
    folder = write_images(tmp_path / "in", 1)
    out = tmp_path / "o"
    rc, _, err = run(["explain", str(folder), "--target", "bold", "--out", str(out), "--method", "gradcam"], capsys)
    assert rc == 0, err
    assert [t["class"] for t in json.loads((out / "results.json").read_text())["images"][0]["targets"]] == [3]
    assert "target 'bold': read as class 3, <b>bold</b> & 'q' (the one class whose name holds that word)" in err


def _logits(path):
    """The tiny model's logits of one image as gfi explain reads it (the CLI's own loader)."""
    import torch

    from gfi.data.images import load_image
    from tests import cli_tiny

    clf = cli_tiny.make()
    with torch.no_grad():
        return clf(clf.prepare([load_image(path)]))[0]


def test_a_score_of_the_output_is_a_target_on_the_command_line(tmp_path, capsys, monkeypatch):
    """--target logit:C / softmax:C / output:I reach the method as gfi.targets objects: Grad-CAM reads a
    class as its logit, so class 2, logit:2 and output:2 give the same map, softmax:2 another; each
    record holds the target's own score (the logit computed here by hand), its description, and its
    files are named by it (no '_', so the stem stays parseable)."""
    import numpy as np
    import torch

    from tests import cli_tiny

    cli_tiny.patch(monkeypatch)
    folder = write_images(tmp_path / "in", 1)
    out = tmp_path / "o"
    rc, stdout, err = run(["explain", str(folder), "--target", "2", "--target", "logit:2", "--target", "output:2",
                           "--target", "softmax:2", "--out", str(out), "--method", "gradcam", "--save-npy"], capsys)
    assert rc == 0, err
    recs = json.loads((out / "results.json").read_text())["images"][0]["targets"]
    assert [(t["class"], t.get("target")) for t in recs] == [(2, None), (2, "logit:2"), (None, "output:2"),
                                                             (2, "softmax:2")]
    assert [t["npy"] for t in recs] == ["im0_2.npy", "im0_logit-2.npy", "im0_output-2.npy", "im0_softmax-2.npy"]
    maps = [np.load(out / t["npy"]) for t in recs]
    assert np.array_equal(maps[0], maps[1]) and np.array_equal(maps[0], maps[2])
    assert np.abs(maps[0] - maps[3]).max() > 1e-3, "softmax's gradient mixes in the other classes"
    z = _logits(folder / "im0.png")
    assert recs[1]["prob"] == pytest.approx(float(z[2]), abs=1e-5) == recs[2]["prob"]
    assert recs[0]["prob"] == pytest.approx(float(torch.softmax(z, 0)[2]), abs=1e-6) == recs[3]["prob"]
    assert f"output:2 = {recs[2]['prob']:.3g} -> " in stdout


def test_contrastive_on_the_command_line(tmp_path, capsys, monkeypatch):
    """--contrastive BETA: each class against the image's others (y_c - BETA x mean of the others'
    logits, by hand here); recorded; another BETA in the same folder is refused; one class, a
    score target, or a negative BETA are refused before anything is written."""
    from tests import cli_tiny

    cli_tiny.patch(monkeypatch)
    folder = write_images(tmp_path / "in", 1)
    out = tmp_path / "o"
    args = ["explain", str(folder), "--target", "1", "--target", "4", "--target", "6", "--out", str(out),
            "--method", "gradcam", "--quiet"]
    rc, _, err = run([*args, "--contrastive", "0.5"], capsys)
    assert rc == 0, err
    res = json.loads((out / "results.json").read_text())
    recs = res["images"][0]["targets"]
    z = _logits(folder / "im0.png")
    assert res["contrastive"] == 0.5 and [t["class"] for t in recs] == [1, 4, 6]
    assert recs[0]["target"] == "logit:1-0.5*mean(logit:4,logit:6)"
    for t, others in zip(recs, [(4, 6), (1, 6), (1, 4)], strict=True):
        assert t["prob"] == pytest.approx(float(z[t["class"]] - 0.5 * (z[others[0]] + z[others[1]]) / 2), abs=1e-5)
    rc, _, err = run([*args, "--contrastive", "1"], capsys)
    assert rc == 2 and "contrastive" in err
    for extra, message in [(["--target", "top1"], "--contrastive needs two classes or more per image"),
                           (["--target", "top2", "--target", "logit:3"], "--target logit:3 is a score of its own"),
                           (["--target", "top2", "--contrastive", "-1"], "--contrastive must be a finite number >= 0")]:
        fresh = tmp_path / "fresh"
        rc, _, err = run(["explain", str(folder), *extra, "--out", str(fresh), "--method", "gradcam",
                          *(["--contrastive", "0.5"] if "--contrastive" not in extra else [])], capsys)
        assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
        assert not fresh.exists()


@pytest.mark.parametrize("spec,message", [
    ("box:1,2,30,40:3", "a box target reads a detection model's output, and tiny is a classifier"),
    ("mask:m.png:3", "a mask target reads a segmentation model's output, and tiny is a classifier"),
    ("output:x", "output: takes the output's index"),
    ("logit:", "logit: needs a class"),
    ("sigmoid:nosuch", "--target sigmoid:nosuch: unknown class name 'nosuch'"),
])
def test_a_target_the_command_line_cannot_take_is_one_line(tmp_path, capsys, monkeypatch, spec, message):
    from tests import cli_tiny

    cli_tiny.patch(monkeypatch)
    folder = write_images(tmp_path / "in", 1)
    rc, _, err = run(["explain", str(folder), "--target", spec, "--out", str(tmp_path / "o"), "--method", "gradcam"],
                     capsys)
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()
