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
