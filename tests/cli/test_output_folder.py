"""Issue 14, cases 1-3: gfi never deletes or replaces a file it did not write, one writer per output
folder, and every output-folder failure is one line with exit code 2. The data-loss and
concurrency cases run real ``gfi`` processes (``python -m tests.cli_tiny``, the CLI with the small
CNN of tests/cli_tiny.py) and check the user's own files byte for byte."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from tests import cli_tiny
from tests.cli.test_reliability import run, without_evidence_lines, write_images
from tests.conftest import REPO

USER_BYTES = b"x\n"


def start(argv, delay: float = 0.0) -> subprocess.Popen:
    env = dict(os.environ, GFI_TINY_DELAY=str(delay), OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-m", "tests.cli_tiny", *argv], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if predicate():
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended first: rc={proc.returncode}, {proc.communicate()}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"timed out after {timeout} s")


def started_records(out) -> list[dict]:
    """The ``started`` records in OUT/records, read while a run may be deleting old ones
    (--overwrite) or writing new ones: a file that vanishes between the listing and the read is
    skipped (records are written by atomic rename, so a file that is there is whole)."""
    folder = out / "records"
    recs = []
    for p in folder.glob("[!.]*.json") if folder.is_dir() else []:
        try:
            recs.append(json.loads(p.read_text()))
        except FileNotFoundError:
            continue
    return [r for r in recs if r.get("status") == "started"]


@pytest.mark.slow  # kills a run at many points and resumes each
def test_a_killed_run_never_costs_the_user_a_file(tmp_path):
    """Case 1: a killed run left a ``started`` record; the next run with other arguments is refused
    (not "started afresh" by deleting every STEM_*), and --overwrite deletes only gfi's own files."""
    photo = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)).save(photo)
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "photo_final.png").write_bytes(USER_BYTES)
    (keep / "photo_final.npy").write_bytes(USER_BYTES)
    proc = start(["explain", str(photo), "--save-npy", "--out", str(keep), "--quiet"], delay=0.5)
    wait_for(lambda: bool(started_records(keep)), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert started_records(keep), "the kill should land while the image is being explained"
    proc = start(["explain", str(photo), "--iters1", "3", "--out", str(keep), "--quiet"])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and err.count("\n") == 1 and "holds a run with other arguments" in err
    assert "differs in: config.iters1" in err and "--overwrite" in err
    assert (keep / "photo_final.png").read_bytes() == USER_BYTES
    assert (keep / "photo_final.npy").read_bytes() == USER_BYTES
    proc = start(["explain", str(photo), "--iters1", "3", "--out", str(keep), "--quiet", "--overwrite"])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert (keep / "photo_final.png").read_bytes() == USER_BYTES  # never gfi's: kept even with --overwrite
    assert (keep / "photo_final.npy").read_bytes() == USER_BYTES
    assert json.loads((keep / "results.json").read_text())["complete"]


def test_a_users_file_in_the_way_is_refused_before_the_image_is_explained(tmp_path, capsys, monkeypatch):
    cli_tiny.patch(monkeypatch)
    folder = write_images(tmp_path / "in", 1)
    out = tmp_path / "o"
    out.mkdir()
    (out / "im0_gradcam_3.png").write_bytes(USER_BYTES)
    calls = []
    from gfi.methods.registry import METHODS

    original = METHODS["gradcam"].explain
    monkeypatch.setattr(METHODS["gradcam"], "explain", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    rc, _, err = run(["explain", str(folder), "--out", str(out), "--method", "gradcam", "--target", "3", "--quiet"],
                     capsys)
    assert rc == 2 and "im0_gradcam_3.png exists and gfi did not write it; move it away or choose another --out" in err
    assert "--overwrite" not in err  # it would not replace the file either
    assert calls == []  # refused before the work, not after it
    assert (out / "im0_gradcam_3.png").read_bytes() == USER_BYTES


def test_two_runs_on_one_folder_the_second_is_refused_at_once(tmp_path):
    """Case 2: one writer per output folder; the first run completes as if alone."""
    folder = write_images(tmp_path / "six", 6)
    out = tmp_path / "conc"
    argv = ["explain", str(folder), "--out", str(out), "--method", "gradcam", "--quiet", "--batch-size", "1"]
    first = start(argv, delay=0.2)
    wait_for(lambda: (out / ".gfi.lock").exists() and (out / "run.json").exists(), first)
    t0 = time.time()
    second = start(argv)
    _, err2 = second.communicate(timeout=60)
    assert second.returncode == 2 and "is being written by another gfi run (pid" in err2, err2
    assert err2.count("\n") == 1 and time.time() - t0 < 30
    _, err1 = first.communicate(timeout=180)
    assert first.returncode == 0, err1
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] and len(res["images"]) == 6 and res["failures"] == []
    assert not (out / ".gfi.lock").exists()
    # a lock left by a killed run is stale: the next run takes it over
    proc = start([*argv, "--overwrite"], delay=0.5)
    wait_for(lambda: (out / ".gfi.lock").exists() and bool(started_records(out)), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert (out / ".gfi.lock").exists()
    proc = start([*argv, "--overwrite"])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err


def test_lock_names_its_holder_and_is_released_after_an_exception(tmp_path):
    from gfi.persist import FolderLock, OutputFolderError

    with FolderLock(tmp_path) as lock:
        assert lock.held and json.loads((tmp_path / ".gfi.lock").read_text())["pid"] == os.getpid()
        # a second holder in another process is refused (flock is per open file, so use a child)
        code = ("import sys; from gfi.persist import FolderLock\n"
                f"try:\n FolderLock({str(tmp_path)!r}).acquire()\nexcept Exception as e:\n print(e); sys.exit(2)")
        child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
        assert child.returncode == 2 and f"pid {os.getpid()}" in child.stdout
    assert not (tmp_path / ".gfi.lock").exists()
    with pytest.raises(RuntimeError), FolderLock(tmp_path):
        raise RuntimeError("boom")
    assert FolderLock(tmp_path).acquire().held  # released by the exception
    assert OutputFolderError


@pytest.mark.parametrize("case", ["file", "readonly", "full"])
def test_output_folder_failures_are_one_line_and_come_before_the_model(tmp_path, capsys, monkeypatch, case):
    """Case 3: --out an existing file, a folder gfi may not write, a full disk: exit 2, one line,
    and the model is never loaded."""
    import tempfile

    loaded = []
    cli_tiny.patch(monkeypatch)
    import gfi.models.presets as presets

    original = presets.load_model
    monkeypatch.setattr(presets, "load_model", lambda *a, **k: loaded.append(1) or original(*a, **k))
    out = tmp_path / "o"
    if case == "file":
        out.write_text("mine")
    else:
        exc = PermissionError(errno.EACCES, "Permission denied") if case == "readonly" else \
            OSError(errno.ENOSPC, "No space left on device")

        def refuse(*a, **k):
            raise exc

        monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    rc, _, err = run(["explain", str(write_images(tmp_path / "in", 1)), "--out", str(out), "--method", "gradcam"],
                     capsys)
    expected = {"file": "is an existing file, not a folder", "readonly": "no permission to write there",
                "full": "the disk is full"}[case]
    assert rc == 2 and expected in err and err.count("\n") == 1 and loaded == []
    if case == "file":
        assert out.read_text() == "mine"


def test_disk_full_mid_run_says_what_is_saved_and_the_same_command_resumes(tmp_path, capsys, monkeypatch):
    cli_tiny.patch(monkeypatch)
    import gfi.persist

    folder = write_images(tmp_path / "in", 3)
    out = tmp_path / "o"
    argv = ["explain", str(folder), "--out", str(out), "--method", "gradcam", "--quiet", "--batch-size", "1"]
    real = gfi.persist._publish
    calls = {"n": 0}

    def publish(tmp, path, **kw):
        calls["n"] += 1
        if calls["n"] > 6:  # run.json, the first image's records and files, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tmp, path, **kw)

    monkeypatch.setattr(gfi.persist, "_publish", publish)
    rc, _, err = run(argv, capsys)
    err = without_evidence_lines(err)  # an image explained before the full disk may warn of its map
    assert rc == 2 and err.count("\n") == 1 and "is full:" in err and "run the same command again" in err
    assert "of 3 images are done and saved" in err
    monkeypatch.setattr(gfi.persist, "_publish", real)
    rc, _, err = run(argv, capsys)
    assert rc == 0, err
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] and len(res["images"]) == 3 and not list(out.rglob(".*.tmp*"))


def test_eval_folder_has_one_writer(tmp_path):
    """Case 2 for ``gfi eval``: a second run on the same --out is refused at once while the first goes on."""
    from tests.cli.test_fault_injection import sod

    data = sod(tmp_path / "sod", 6)
    out = tmp_path / "ev"
    argv = ["eval", "saliency", "--data", str(data), "--method", "gradcam", "--out", str(out), "--batch-size", "1",
            "--quiet"]
    first = start(argv, delay=0.3)
    wait_for(lambda: (out / "options.json").exists(), first)
    second = start(argv)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 2 and "is being written by another gfi run" in err and err.count("\n") == 1, err
    _, err = first.communicate(timeout=180)
    assert first.returncode == 0, err
    assert json.loads((out / "summary.json").read_text())["n_images"] == 6 and not (out / ".gfi.lock").exists()
