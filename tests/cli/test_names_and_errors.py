"""File names that are not UTF-8 or hold control characters are shown escaped everywhere (terminal,
report.html) and kept losslessly in results.json; only gfi's own errors are one-line user errors,
and a bug's ValueError shows its traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gfi.cli import main
from gfi.data.names import printable
from gfi.errors import GFIError
from tests import cli_tiny
from tests.cli.test_reliability import FAST, run

BAD = b"bad\xff\xfe.png"  # not UTF-8
ESC = "esc\x1b[31mred.png"  # an escape sequence in the name
CLEAR = "text\x1b[2J.jpg"  # not an image: its name reaches the warning line


@pytest.fixture
def tiny_cli(monkeypatch):
    cli_tiny.patch(monkeypatch)


def hostile_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    pixels = (np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(os.fsdecode(os.fsencode(folder) + b"/" + BAD), format="PNG")
    Image.fromarray(pixels).save(folder / ESC, format="PNG")
    (folder / CLEAR).write_text("not an image")
    return folder


def test_names_that_are_not_utf8_or_hold_escapes_are_shown_escaped_and_kept_losslessly(tmp_path, capsys, tiny_cli):
    folder = hostile_folder(tmp_path)
    out = tmp_path / "out"
    rc, _, err = run(["explain", str(folder), "--out", str(out), *FAST], capsys)
    assert rc == 0, err
    assert "\x1b" not in err and "\udcff" not in err
    assert f"skipped: {folder}/text\\x1b[2J.jpg: not an image" in err
    html = (out / "report.html").read_bytes().decode("utf-8")  # valid UTF-8
    assert "bad\\xff\\xfe.png" in html and "esc\\x1b[31mred.png" in html and "\x1b" not in html
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert sorted(os.fsencode(r["image"]) for r in res["images"]) == sorted(
        [os.fsencode(folder) + b"/" + BAD, os.fsencode(folder / ESC)])  # the exact bytes of each name
    assert [r["image"] for r in res["failures"]] == [str(folder / CLEAR)]


def test_printable_escapes_bytes_controls_and_bidi_and_keeps_other_unicode():
    assert printable(os.fsdecode(b"a\xff.png")) == "a\\xff.png"
    assert printable("a\x1b[2J\r\x07\x9b.png") == "a\\x1b[2J\\r\\x07\\x9b.png"
    assert printable("evil\u202egnp.exe") == "evil\\u202egnp.exe"
    assert printable("chat_été_猫.png") == "chat_été_猫.png"
    assert printable("two\nlines") == "two\\nlines" and printable("two\nlines", newlines=True) == "two\nlines"
    assert printable(Path("/x/y\x1b.png")) == "/x/y\\x1b.png"


def test_a_gfi_error_is_one_printable_line(tmp_path, capsys, tiny_cli):
    rc, _, err = run(["explain", str(tmp_path / "gone\x1b[2J.png"), "--out", str(tmp_path / "o"), *FAST], capsys)
    assert rc == 2
    assert err.strip() == f"gfi: error: {tmp_path}/gone\\x1b[2J.png: no such file or folder"


def test_an_argparse_error_is_printable(capsys):
    with pytest.raises(SystemExit) as info:
        main(["explain", "--no-such\x1b[2J"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--no-such\\x1b[2J" in err and "\x1b" not in err


def test_a_value_error_from_a_bug_shows_its_traceback(tmp_path, tiny_cli, monkeypatch):
    from gfi.folder.job import FolderJob

    def bug(self, progress=None):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(FolderJob, "execute", bug)
    with pytest.raises(ValueError, match="an internal invariant broke"):  # not swallowed into exit code 2
        main(["explain", "--out", str(tmp_path / "o"), *FAST])


def test_a_bug_exits_1_with_a_traceback_from_the_command_line(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from tests import cli_tiny; cli_tiny.patch(); import gfi.folder.job as j\n"
            "def bug(self, progress=None): raise ValueError('an internal invariant broke')\n"
            "j.FolderJob.execute = bug\n"
            "from gfi.cli import main; sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "explain", "--out", str(tmp_path / "o"), *FAST],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "ValueError: an internal invariant broke" in done.stderr
    assert "gfi: error:" not in done.stderr


def test_errors_meant_for_users_are_gfi_errors():
    from gfi.masks.backgrounds import gaussian_kernel1d, make_background
    from gfi.methods.base import check_images
    from gfi.models.presets import load_model

    clf = cli_tiny.make()
    calls = [
        lambda: clf.class_index("no such class"),
        lambda: clf.class_index(99),
        lambda: clf.prepare(torch.rand(1, 2, 3, 4, 5)),
        lambda: clf.prepare([]),
        lambda: check_images(torch.rand(1, 3, 8, 8) * 255),
        lambda: check_images(torch.rand(1, 1, 8, 8)),
        lambda: load_model("no-such-model"),
        lambda: gaussian_kernel1d(4, 1.0),
        lambda: make_background(torch.rand(1, 1, 8, 8), "mean"),
    ]
    for call in calls:
        with pytest.raises(GFIError) as info:
            call()
        assert isinstance(info.value, ValueError)  # and still the built-in older callers catch
