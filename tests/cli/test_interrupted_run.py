"""A ``gfi explain`` run killed partway (SIGKILL, SIGINT, SIGTERM) and restarted with the same arguments
finishes the remaining images and gives the summary of an uninterrupted run.

The run is a real subprocess (``python -m tests.cli_tiny``: the CLI with the small CNN of
tests/cli_tiny.py, each forward slowed by GFI_TINY_DELAY so that the kill lands partway).
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from tests import cli_tiny
from tests.cli.test_reliability import assert_same_summary
from tests.conftest import REPO

N = 6


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N):
        Image.fromarray((rng.random((36 + 4 * i, 40, 3)) * 255).astype(np.uint8)).save(folder / f"im{i}.png")
    return folder


def argv(folder, out):
    return ["explain", str(folder), "--out", str(out), "--method", "gradcam", "--batch-size", "1", "--quiet"]


def start(folder, out, delay: float) -> subprocess.Popen:
    env = dict(os.environ, GFI_TINY_DELAY=str(delay), OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-m", "tests.cli_tiny", *argv(folder, out)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(out) -> int:
    """Images with a finished record (records are written atomically: never half a file)."""
    if not (out / "records").is_dir():
        return 0
    return sum(json.loads(p.read_text())["status"] == "ok" for p in (out / "records").glob("[!.]*.json"))


def wait_for_records(out, n: int, proc: subprocess.Popen, timeout: float = 120) -> int:
    t0 = time.time()
    while time.time() - t0 < timeout:
        done = finished(out)
        if done >= n:
            return done
        if proc.poll() is not None:
            pytest.fail(f"the run ended before {n} records: rc={proc.returncode}, {proc.communicate()}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"no {n} records after {timeout} s")


def reference(tmp_path, folder, monkeypatch):
    from gfi.cli import main

    cli_tiny.patch(monkeypatch)
    out = tmp_path / "reference"
    assert main(argv(folder, out)) == 0
    return json.loads((out / "results.json").read_text())


def test_sigkill_then_restart_finishes_with_the_same_summary(tmp_path, images, monkeypatch):
    out = tmp_path / "killed"
    proc = start(images, out, delay=0.25)
    wait_for_records(out, 1, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done = finished(out)
    assert 1 <= done < N, f"the kill should land partway, {done} of {N} were done"
    assert not (out / "results.json").exists() or not json.loads((out / "results.json").read_text())["complete"]
    # restart, same arguments (no delay): finishes the rest
    proc = start(images, out, delay=0)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    got = json.loads((out / "results.json").read_text())
    assert got["complete"] and len(got["images"]) == N and got["failures"] == []
    assert_same_summary(got, reference(tmp_path, images, monkeypatch))
    for r in got["images"]:
        for t in r["targets"]:
            assert Image.open(out / t["overlay"]).size[0] > 100
    assert not list(out.rglob(".*.tmp*"))  # temporaries of the killed run are gone
    page = (out / "report.html").read_text()
    assert len(re.findall(r"<tr(?: class=\"fails\")?><td", page)) == N  # a row per image (marked or not)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_saves_a_partial_summary_and_the_rerun_finishes(tmp_path, images, monkeypatch, sig):
    out = tmp_path / "interrupted"
    proc = start(images, out, delay=0.25)
    wait_for_records(out, 2, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "gfi: interrupted:" in err and "run the same command again to finish" in err and "Traceback" not in err
    partial = json.loads((out / "results.json").read_text())
    assert partial["complete"] is False and 2 <= len(partial["images"]) < N
    assert "INCOMPLETE run" in (out / "report.html").read_text()
    proc = start(images, out, delay=0)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert_same_summary(json.loads((out / "results.json").read_text()), reference(tmp_path, images, monkeypatch))
