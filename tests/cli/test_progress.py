"""Progress that says the truth: the cost estimate follows the costliest steps (a method whose
later steps cost more, like GFI's stage 2 after stage 1, is estimated again), one ``gfi:`` prefix,
a step bar inside ``gfi eval``'s batches, a finished run rerun says only "nothing to do", bars on
a terminal and plain lines in a log (no carriage return, no escape; an error is the last line),
and ``progress=`` in the Python API."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import gfi
from gfi.errors import GFIError
from gfi.progress import ConsoleReporter, Progress, Tracker
from tests import cli_tiny
from tests.cli.test_fault_injection import sod
from tests.cli.test_reliability import assert_same_summary, run, write_images
from tests.conftest import REPO

GFI_FEW = ["--method", "gfi", "--iters1", "4", "--iters2", "6"]
CONTROL = re.compile(r"[\r\x1b]")  # a carriage return, an escape sequence
ENV = dict(os.environ, OMP_NUM_THREADS="1",
           PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")]))


@pytest.fixture
def tiny_cli(monkeypatch):
    cli_tiny.patch(monkeypatch)


def cli(argv: list[str], stderr) -> subprocess.Popen:
    """``gfi`` with the small test CNN in a new process, its stderr to ``stderr``."""
    return subprocess.Popen([sys.executable, "-m", "tests.cli_tiny", *argv], cwd=REPO, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=stderr)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def two_phase_call(t: Tracker, clock: Clock, cheap=(100, 0.01), costly=(300, 0.05)) -> None:
    """One explain call of one image: ``cheap`` steps (count, seconds each), then ``costly`` ones."""
    total = cheap[0] + costly[0]
    t.begin_call(1)
    done = 0
    for n, sec in (cheap, costly):
        for _ in range(n):
            clock.t += sec
            done += 1
            t.step(done, total)
    t.end_call()
    t.advance(1)


def per_image(message: str) -> float:
    return float(re.search(r"([\d.]+) s per image", message).group(1))


def test_the_estimate_follows_the_costliest_steps_and_is_said_again_when_they_change():
    """The old estimate took the first twentieth of the steps: 4 s for a 16 s image here."""
    clock, seen = Clock(), []
    t = Tracker(seen.append, method="gfi", clock=clock)
    t.start(3)
    two_phase_call(t, clock)  # 100 x 0.01 s + 300 x 0.05 s = 16 s
    said = [p.message for p in seen if p.event == "message"]
    assert said[0].startswith("method gfi: 400 steps per call, about 4 s per image here (measured on its first "
                              "steps); 3 image(s) to go")
    assert "its later steps cost more" in said[1] and per_image(said[1]) == pytest.approx(16, abs=0.1)
    assert len(said) == 2  # the whole call measured 16 s: the same, not said again
    assert t.seconds_per_image() == pytest.approx(16) and t.seconds_left() == pytest.approx(32)
    two_phase_call(t, clock, cheap=(100, 0.01), costly=(300, 0.1))  # slower: measured on whole images now
    assert t.seconds_per_image() == pytest.approx((16 + 31) / 2)
    assert [p.message for p in seen if p.event == "message"] == said  # later calls: no new "steps" estimate
    assert not any(p.message and p.message.startswith("gfi") for p in seen)  # one prefix, the reporter's


def test_a_first_call_far_from_its_estimate_is_said_with_the_measured_cost():
    clock, seen = Clock(), []
    t = Tracker(seen.append, method="rise", clock=clock)
    t.start(2)
    t.begin_call(1)
    for i in range(1, 101):
        clock.t += 0.01
        t.step(i, 100)
    clock.t += 5.0  # e.g. a last pass outside the steps
    t.end_call()
    said = [p.message for p in seen if p.event == "message"]
    assert said[-1].startswith("method rise: 6 s per image here (measured on a whole call); 1 more image(s) to go")


def test_a_log_gets_plain_lines_a_terminal_gets_bars():
    clock = Clock()
    log = io.StringIO()
    t = Tracker(ConsoleReporter(log, interval=0), method="gfi", clock=clock)
    t.start(2)
    two_phase_call(t, clock)
    two_phase_call(t, clock)
    t.end()
    text = log.getvalue()
    assert not CONTROL.search(text)
    assert "gfi: method gfi, this batch: 400/400 steps in 16 s\n" in text
    assert "gfi: method gfi: 2/2 images in" in text and "gfi: gfi:" not in text
    term = io.StringIO()
    t = Tracker(ConsoleReporter(term, bars=True), method="gfi", clock=clock)
    t.start(2)
    two_phase_call(t, clock)
    t.end()
    assert "\r" in term.getvalue() and "1/2" in term.getvalue() and "img" in term.getvalue()


def test_the_cli_writes_no_bar_debris_into_a_log_and_its_error_is_the_last_line(tmp_path):
    folder = write_images(tmp_path / "in", 2)
    with open(tmp_path / "log", "w") as fh:  # as `2> log` does
        assert cli(["explain", str(folder), "--out", str(tmp_path / "o"), *GFI_FEW], fh).wait(timeout=300) == 0
    text = (tmp_path / "log").read_text()
    assert not CONTROL.search(text), text
    assert "gfi: method gfi, this batch: 10/10 steps in" in text and "gfi: method gfi: 2/2 images in" in text
    assert "gfi: gfi:" not in text
    (tmp_path / "bad").mkdir()
    for i in range(2):
        (tmp_path / "bad" / f"b{i}.png").write_bytes(b"not an image")
    with open(tmp_path / "log", "w") as fh:
        assert cli(["explain", str(tmp_path / "bad"), "--out", str(tmp_path / "p"), *GFI_FEW], fh).wait(300) == 2
    text = (tmp_path / "log").read_text()
    assert not CONTROL.search(text), text
    assert text.splitlines()[-1].startswith("gfi: error: no image could be explained (2 failed"), text


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal")
def test_on_a_terminal_the_cli_draws_bars(tmp_path):
    import fcntl
    import pty
    import struct
    import termios

    folder = write_images(tmp_path / "in", 2)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = cli(["explain", str(folder), "--out", str(tmp_path / "o"), *GFI_FEW], slave)
    os.close(slave)
    got = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        got += chunk
    os.close(master)
    assert proc.wait(timeout=300) == 0
    text = got.decode(errors="replace")
    assert "\r" in text and "2/2" in text and "img" in text


def test_a_finished_run_rerun_says_nothing_to_do_once(tmp_path, capsys, tiny_cli):
    folder = write_images(tmp_path / "in", 2)
    argv = ["explain", str(folder), "--out", str(tmp_path / "o"), "--method", "gradcam"]
    assert run(argv, capsys)[0] == 0
    rc, out, err = run(argv, capsys)
    assert rc == 0 and out == ""
    assert err.splitlines() == [f"gfi: nothing to do: all 2 images are already explained in {tmp_path / 'o'} "
                                "(pass --overwrite to redo them)"]


def test_eval_shows_the_steps_inside_a_batch_defaults_its_folder_and_says_nothing_to_do_once(
        tmp_path, capsys, tiny_cli, monkeypatch):
    data = sod(tmp_path / "sod", 3)
    monkeypatch.chdir(tmp_path)
    argv = ["eval", "saliency", "--data", str(data), "--batch-size", "3", *GFI_FEW]
    rc, _, err = run(argv, capsys)
    assert rc == 0, err
    assert "saliency, method gfi, this batch: 10/10 steps" in err and "3/3 images" in err
    assert not CONTROL.search(err)
    summary = json.loads((tmp_path / "gfi-eval" / "saliency" / "summary.json").read_text())
    assert summary["n_images"] == 3
    rc, _, err = run(argv, capsys)
    assert rc == 0 and "nothing to do: all 3 images are already scored" in err and "resuming" not in err


def test_python_progress_none_is_silent_a_callable_hears_every_step_and_image(tmp_path, capsys):
    clf = cli_tiny.make()
    x = np.random.default_rng(0).random((3, 40, 40)).astype("float32")
    import torch

    image = torch.from_numpy(x)
    gfi.explain(image, "gfi", model=clf, iters1=3, iters2=4)
    assert capsys.readouterr() == ("", "")
    seen: list[Progress] = []
    e = gfi.explain(image, "gfi", model=clf, iters1=3, iters2=4, progress=seen.append)
    steps = [(p.steps, p.steps_total) for p in seen if p.event == "step"]
    assert steps == [(i, 7) for i in range(1, 8)] and e.maps.shape == (1, 1, 40, 40)
    assert [p.event for p in seen if p.event != "step"][-2:] == ["image", "end"] and seen[-1].done == 1
    gfi.explain(image, "gfi", model=clf, iters1=3, iters2=4, progress=True)
    err = capsys.readouterr().err  # not a terminal here: plain lines
    assert "gfi: method gfi: 1/1 images in" in err and not CONTROL.search(err)
    with pytest.raises(TypeError, match="progress must be None, a bool or a callable"):
        gfi.explain(image, "gradcam", model=clf, progress="yes")


def test_explain_folder_writes_what_the_cli_writes_and_the_cli_resumes_it(tmp_path, capsys, tiny_cli):
    folder = write_images(tmp_path / "in", 3)
    argv = ["explain", str(folder), "--out", str(tmp_path / "cli"), "--method", "gradcam", "--target", "top2",
            "--save-npy", "--quiet"]
    assert run(argv, capsys)[0] == 0
    info = json.loads((tmp_path / "cli" / "run.json").read_text())["arguments"]["model"]
    seen: list[Progress] = []
    result = gfi.explain_folder(folder, tmp_path / "py", method="gradcam", model=cli_tiny.make(), targets="top2",
                                save_npy=True, model_info=info, progress=seen.append)
    assert result.explained == 3 and not result.failures and not result.resumed

    def files(name: str) -> list[str]:
        return sorted(q.relative_to(tmp_path / name).as_posix() for q in (tmp_path / name).rglob("*")
                      if q.is_file() and not q.name.startswith(".gfi"))

    assert files("cli") == files("py") and "im0_gradcam_2.png" in files("py") and "im2_2.npy" in files("py")
    a = json.loads((tmp_path / "cli" / "results.json").read_text())
    b = json.loads((tmp_path / "py" / "results.json").read_text())
    assert_same_summary(a, b)
    assert [p.record["image"] for p in seen if p.event == "image"] == [str(folder / f"im{i}.png") for i in range(3)]
    # the same arguments from the command line: the folder the library wrote is the same run
    rc, _, err = run([*argv[:3], str(tmp_path / "py"), *argv[4:-1]], capsys)
    assert rc == 0 and "nothing to do: all 3 images are already explained" in err


def test_explain_folder_stopped_saves_what_is_done_and_the_same_call_finishes(tmp_path):
    from gfi.folder.job import Interrupted

    folder = write_images(tmp_path / "in", 3)
    clf = cli_tiny.make()

    def stop_after_one(p: Progress) -> None:
        if p.event == "image" and p.done == 1:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as info:
        gfi.explain_folder(folder, tmp_path / "o", method="gradcam", model=clf, batch_size=1, progress=stop_after_one)
    assert (info.value.done, info.value.total) == (1, 3) and "call explain_folder again" in str(info.value)
    partial = json.loads((tmp_path / "o" / "results.json").read_text())
    assert not partial["complete"] and len(partial["images"]) == 1
    result = gfi.explain_folder(folder, tmp_path / "o", method="gradcam", model=clf, batch_size=1)
    assert result.explained == 2 and result.resumed and len(result.images) == 3 and result.summary["complete"]
    with pytest.raises(GFIError, match="other arguments"):
        gfi.explain_folder(folder, tmp_path / "o", method="gradcam", model=clf, cmap="viridis")


def test_explain_folder_takes_an_explainer_and_refuses_settings_beside_it(tmp_path):
    from gfi.methods.registry import get_method

    folder = write_images(tmp_path / "in", 2)
    explainer = get_method("gfi", cli_tiny.make(), iters1=2, iters2=3)
    result = gfi.explain_folder(folder, tmp_path / "o", method=explainer)
    assert result.summary["config"]["iters2"] == 3 and result.summary["preset"] == "default"
    assert re.fullmatch(r"im0_\d+\.png", result.images[0]["targets"][0]["overlay"])  # gfi's names: no tag
    for extra in ({"iters2": 5}, {"model": cli_tiny.make()}, {"preset": "fast"}):
        with pytest.raises(GFIError, match="explainer already made"):
            gfi.explain_folder(folder, tmp_path / "p", method=explainer, **extra)
    assert not (tmp_path / "p").exists()


LINE_CALLS = {"debug", "info", "warning", "error", "exception", "say", "line"}


def _first_text(node) -> str:
    import ast

    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values:
        return _first_text(node.values[0])
    return ""


def test_no_message_of_gfi_begins_with_the_prefix_the_cli_adds():
    """The command line's log formatter, its error line and the progress reporter each put "gfi: "
    before a message; a message that begins with it itself prints "gfi: gfi: ..." (it did: GFI's
    note on a target that is not a probability)."""
    import ast

    found = []
    for path in sorted((REPO / "src" / "gfi").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if (name in LINE_CALLS or name.endswith(("Error", "Applicable"))) and \
                    _first_text(node.args[0]).startswith("gfi:"):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not found
