"""How the ``gfi`` program ends: without the interpreter's teardown of every module (about 0.4 s
after ``import torch``), yet with nothing lost: the exit code, the ``atexit`` functions, every
open file's buffered text. Where the usual exit is needed (another thread, a profiler) it is
taken. A closed pipe on stdout (``gfi classes | head``) ends quietly, without a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

SCRIPT = """
import atexit, sys, threading, time
from gfi.cli import end_without_teardown

kept = open(sys.argv[1], "w")
kept.write("buffered, never flushed, never closed")
atexit.register(lambda: open(sys.argv[2], "w").write("atexit ran"))

if sys.argv[3] == "thread":
    threading.Thread(target=time.sleep, args=(0.5,)).start()
if sys.argv[3] == "profiler":
    sys.setprofile(lambda *a: None)
sys.stdout.write("said;")  # in stdout's buffer (a pipe)
code = end_without_teardown(3)
sys.stdout.write(f"returned {code};")
sys.exit(code)
"""


def _run(tmp_path: Path, mode: str) -> tuple[subprocess.CompletedProcess, Path, Path]:
    kept, mark = tmp_path / f"kept-{mode}.txt", tmp_path / f"atexit-{mode}.txt"
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(kept), str(mark), mode], capture_output=True,
                          text=True, timeout=120, env=env)
    return done, kept, mark


def test_the_program_ends_at_once_and_keeps_everything(tmp_path):
    done, kept, mark = _run(tmp_path, "plain")
    assert done.returncode == 3, done.stderr
    assert done.stdout == "said;"  # flushed, and ended there: the usual return did not come
    assert kept.read_text() == "buffered, never flushed, never closed"
    assert mark.read_text() == "atexit ran"
    assert done.stderr == ""


def test_the_usual_exit_where_a_thread_or_a_profiler_needs_it(tmp_path):
    for mode in ("thread", "profiler"):
        done, kept, mark = _run(tmp_path, mode)
        assert done.returncode == 3, done.stderr
        assert done.stdout == "said;returned 3;", mode
        assert kept.read_text() == "buffered, never flushed, never closed" and mark.read_text() == "atexit ran"


def test_a_closed_pipe_on_stdout_ends_quietly():
    proc = subprocess.Popen([sys.executable, "-m", "gfi", "classes"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})
    proc.stdout.close()  # the reader goes away before gfi writes (as `| head` does after its lines)
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 1
    assert "Traceback" not in err and err == "", err
