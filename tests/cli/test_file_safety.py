"""gfi replaces or deletes only the files it can prove it wrote, never follows a planted link, and
ends a failed write in one line. One test per case of the third reliability round (each failed
before the manifest of gfi's files, the lock on ``filelock`` and the fixed batch chunks); the
property test over random user files is tests/cli/test_user_files_property.py."""

from __future__ import annotations

import errno
import json
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

from tests import cli_tiny
from tests.cli.test_fault_injection import sod
from tests.cli.test_reliability import run, without_evidence_lines, write_images

FAST = ["--method", "gradcam", "--quiet"]
USER = b"the user's bytes\n"


@pytest.fixture
def tiny_cli(monkeypatch):
    cli_tiny.patch(monkeypatch)


def one_line(err: str) -> str:
    err = without_evidence_lines(err)  # an image explained before the error may warn of its map
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# -- 1. the lock never follows a link ----------------------------------------------------------------
@pytest.mark.parametrize("kind", ["symlink", "dangling", "hardlink", "folder", "foreign"])
def test_the_lock_never_follows_a_link_nor_takes_what_it_did_not_make(tmp_path, capsys, tiny_cli, kind):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(USER)
    out = tmp_path / "o"
    out.mkdir()
    lock = out / ".gfi.lock"
    if kind == "symlink":
        lock.symlink_to(victim)
    elif kind == "dangling":
        lock.symlink_to(tmp_path / "created-through-the-link")
    elif kind == "hardlink":
        os.link(victim, lock)
    elif kind == "folder":
        lock.mkdir()
    else:
        lock.write_bytes(USER)
    rc, _, err = run(["explain", str(write_images(tmp_path / "in", 1)), "--out", str(out), *FAST], capsys)
    assert rc == 2 and f"{lock} " in one_line(err) and "move it away" in err
    expected = {"symlink": "is a link", "dangling": "is a link", "hardlink": "has other hard links",
                "folder": "is a folder", "foreign": "holds other data"}[kind]
    assert expected in err
    assert victim.read_bytes() == USER and not (tmp_path / "created-through-the-link").exists()
    assert lock.is_symlink() == (kind in ("symlink", "dangling")) and not (out / "results.json").exists()
    if kind == "foreign":
        assert lock.read_bytes() == USER


def test_the_lock_is_filelocks_portable_lock(tmp_path, monkeypatch):
    """The folder lock is filelock's descriptor lock (flock on POSIX, LockFileEx on Windows): a
    contended lock is refused at once, naming the holder; a stale lock file is taken over."""
    import filelock

    from gfi.persist import FolderLock, OutputFolderError

    calls = []
    real = filelock.lock_descriptor
    monkeypatch.setattr(filelock, "lock_descriptor", lambda fd, **k: calls.append(k) or real(fd, **k))
    (tmp_path / ".gfi.lock").write_text(json.dumps({"pid": 1, "host": "h", "since": "then"}))  # a dead run's
    with FolderLock(tmp_path) as held:
        assert held.held and calls == [{"blocking": False}]
        holder = json.loads((tmp_path / ".gfi.lock").read_text())
        assert holder["pid"] == os.getpid()
        with pytest.raises(OutputFolderError, match=rf"another gfi run \(pid {os.getpid()} on "):
            FolderLock(tmp_path).acquire()  # another open file description: refused at once
    assert not (tmp_path / ".gfi.lock").exists()


# -- 2. --overwrite deletes only what gfi wrote ----------------------------------------------------
def test_overwrite_deletes_no_file_of_the_user(tmp_path, capsys, tiny_cli):
    folder = write_images(tmp_path / "in", 2)
    out = tmp_path / "o"
    argv = ["explain", str(folder), "--out", str(out), *FAST]
    assert run(argv, capsys)[0] == 0
    mine = {
        out / "records" / "data.json": json.dumps({"status": "ok", "files": ["notes.txt"], "stage1_npy": "x.npy",
                                                   "targets": [{"overlay": "plot.png"}]}).encode(),
        out / "notes.txt": USER, out / "x.npy": USER, out / "plot.png": USER, out / "thumbs" / "mine.jpg": USER,
    }
    for p, data in mine.items():
        p.write_bytes(data)
    rc, _, err = run([*argv, "--cmap", "viridis", "--overwrite"], capsys)
    assert rc == 0, err
    assert {p: p.read_bytes() for p in mine} == mine
    res = json.loads((out / "results.json").read_text())
    assert len(res["images"]) == 2 and res["failures"] == []


def test_eval_overwrite_deletes_no_map_of_the_user(tmp_path, capsys, tiny_cli):
    data = sod(tmp_path / "sod", 2)
    out = tmp_path / "ev"
    (out / "maps").mkdir(parents=True)
    (out / "maps" / "my_experiment.npy").write_bytes(USER)
    (out / "maps" / "_seconds.1.jsonl").write_bytes(USER)
    rc, _, err = run(["eval", "saliency", "--data", str(data), "--method", "gradcam", "--out", str(out), "--quiet",
                      "--overwrite"], capsys)
    assert rc == 0, err
    assert (out / "maps" / "my_experiment.npy").read_bytes() == USER
    assert (out / "maps" / "_seconds.1.jsonl").read_bytes() == USER
    assert len(list((out / "maps").glob("im*.npy"))) == 2


# -- 3. no loss without --overwrite ----------------------------------------------------------------
def test_hidden_files_like_temporaries_are_kept(tmp_path, capsys, tiny_cli):
    out = tmp_path / "o"
    names = [".backup.tmp", ".draft.tmp.md", ".x.tmpl", ".im0_3.123.tmp.png", "records/.r.tmp.json",
             "thumbs/.t.tmp", ".gfi-tmp.1-00000000.report.html"]
    for n in names:
        (out / n).parent.mkdir(parents=True, exist_ok=True)
        (out / n).write_bytes(USER)
    argv = ["explain", str(write_images(tmp_path / "in", 2)), "--out", str(out), *FAST]
    for _ in range(2):  # a run and its rerun
        rc, _, err = run(argv, capsys)
        assert rc == 0, err
        assert all((out / n).read_bytes() == USER for n in names)


def test_a_users_record_is_refused_before_any_work(tmp_path, capsys, tiny_cli):
    out = tmp_path / "o"
    (out / "records").mkdir(parents=True)
    (out / "records" / "im1.json").write_bytes(USER)
    rc, _, err = run(["explain", str(write_images(tmp_path / "in", 2)), "--out", str(out), *FAST], capsys)
    assert rc == 2 and "records/im1.json exists and gfi did not write it; move it away" in one_line(err)
    assert (out / "records" / "im1.json").read_bytes() == USER
    assert not (out / "results.json").exists() and not list(out.glob("*.png"))


@pytest.mark.parametrize("name", ["summary.json", "pr_curve.png", "options.json", "records.jsonl"])
def test_eval_refuses_a_users_summary_or_plot_before_any_work(tmp_path, capsys, tiny_cli, name):
    data = sod(tmp_path / "sod", 2)
    out = tmp_path / "ev"
    out.mkdir()
    (out / name).write_bytes(USER)
    for extra in ([], ["--overwrite"]):
        rc, _, err = run(["eval", "saliency", "--data", str(data), "--method", "gradcam", "--out", str(out),
                          "--quiet", *extra], capsys)
        assert rc == 2 and f"{name} exists" in one_line(err) and "move " in err
        assert (out / name).read_bytes() == USER
        assert not (out / "maps").exists() and (name == "options.json" or not (out / "options.json").exists())


# -- 7. the map store keeps its settings record ----------------------------------------------------
def test_maps_are_never_stored_without_their_settings(tmp_path, capsys, tiny_cli):
    data = sod(tmp_path / "sod", 2)
    out = tmp_path / "ev"
    (out / "maps").mkdir(parents=True)
    np.save(out / "maps" / "my_experiment.npy", np.zeros(3, np.float32))
    rc, _, err = run(["eval", "saliency", "--data", str(data), "--method", "gradcam", "--out", str(out), "--quiet"],
                     capsys)
    assert rc == 0, err
    assert json.loads((out / "maps" / "_maps.json").read_text())["method"] == "gradcam"
    rc, _, err = run(["eval", "saliency", "--data", str(data), "--method", "gfi", "--maps", str(out / "maps"),
                      "--out", str(tmp_path / "ev2"), "--quiet"], capsys)
    assert rc == 2 and "were made with other settings" in one_line(err)


def test_a_map_file_gfi_did_not_store_is_never_served(tmp_path, capsys, tiny_cli):
    """A map-named file the store's manifest does not list: refused in OUT/maps; in a folder with no
    _maps.json given with --maps, read as it is and never written to."""
    from gfi.data.images import load_image

    data = sod(tmp_path / "sod", 2)
    clf = cli_tiny.make()
    top = int(clf(clf.prepare([load_image(data / "images" / "im0.png")])).argmax())  # the class mapped
    out = tmp_path / "ev"
    (out / "maps").mkdir(parents=True)
    np.save(out / "maps" / f"im0_{top}.npy", np.ones((36, 40), np.float32))
    argv = ["eval", "saliency", "--data", str(data), "--method", "gradcam", "--quiet"]
    rc, _, err = run([*argv, "--out", str(out)], capsys)
    assert rc == 2 and f"im0_{top}.npy is a map file gfi did not store" in one_line(err) and "--maps" in err
    before = {p.name: p.read_bytes() for p in (out / "maps").iterdir()}
    rc, _, err = run([*argv, "--out", str(tmp_path / "ev2"), "--maps", str(out / "maps")], capsys)
    assert rc == 0, err
    assert {p.name: p.read_bytes() for p in (out / "maps").iterdir()} == before  # nothing stored there
    lines = [json.loads(x) for x in (tmp_path / "ev2" / "records.jsonl").read_text().splitlines()]
    assert [r["cached"] for r in lines] == [True, False]


# -- 9. output names never collide -----------------------------------------------------------------
def test_an_image_named_like_another_ones_output_gets_its_own_files(tmp_path, capsys, tiny_cli):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (40, 36), (255, 0, 0)).save(folder / "a.png")
    Image.new("RGB", (40, 36), (0, 0, 255)).save(folder / "a_3.png")
    Image.new("RGB", (40, 36), (0, 255, 0)).save(folder / "a_stage1.png")
    out = tmp_path / "o"
    rc, _, err = run(["explain", str(folder), "--out", str(out), "--target", "3", "--method", "gfi", "--iters1", "2",
                      "--iters2", "2", "--quiet"], capsys)
    assert rc == 0, err
    res = json.loads((out / "results.json").read_text())
    assert res["failures"] == [] and len(res["images"]) == 3
    files = [f for r in res["images"] for f in (r["thumb_input"], r["thumb_stage1"], r["targets"][0]["thumb"],
                                                 r["targets"][0]["overlay"])]
    assert len(set(files)) == len(files) == 12
    colour = {r["image"].rsplit("/", 1)[1]: Image.open(out / r["thumb_input"]).convert("RGB").getpixel((5, 5))
              for r in res["images"]}
    assert colour["a.png"][0] > 200 and colour["a_3.png"][2] > 200 and colour["a_stage1.png"][1] > 200


def test_output_names_of_different_stems_never_collide():
    import random

    from gfi.folder.outputs import planned_files

    rng = random.Random(9)
    parts = ["a", "3", "243", "stage1", "input", "gradcam", "x-y", "", "0"]
    for _ in range(2000):
        s1, s2 = ("_".join(rng.choice(parts) for _ in range(rng.randint(1, 4))) or "a" for _ in range(2))
        if s1 == s2:
            continue
        tag = rng.choice(["", "gradcam", "gfi-stage1"])
        c1, c2 = ([rng.randint(0, 300) for _ in range(3)] for _ in range(2))
        a = set(planned_files(s1, c1, True, True, tag)) | {f"records/{s1}.json"}
        b = set(planned_files(s2, c2, True, True, tag)) | {f"records/{s2}.json"}
        assert not a & b, (s1, s2)


# -- 10. a full or read-only disk mid-run --------------------------------------------------------
def _short_writes(monkeypatch, after: int) -> None:
    """numpy's short write on a full disk: an OSError with no errno; the disk then has no room."""
    real = np.save
    calls = {"n": 0}

    def save(file, arr, *a, **k):
        calls["n"] += 1
        if calls["n"] > after:
            raise OSError("90000 requested and 4096 written")
        return real(file, arr, *a, **k)

    class Full:
        f_bavail, f_frsize = 0, 4096

    monkeypatch.setattr(np, "save", save)
    monkeypatch.setattr(os, "statvfs", lambda path: Full())


def test_numpys_short_write_is_a_full_disk_in_one_line_and_the_run_resumes(tmp_path, capsys, tiny_cli,
                                                                            monkeypatch):
    folder = write_images(tmp_path / "in", 3)
    out = tmp_path / "o"
    argv = ["explain", str(folder), "--out", str(out), *FAST, "--save-npy", "--batch-size", "1"]
    with monkeypatch.context() as m:
        _short_writes(m, after=1)
        rc, _, err = run(argv, capsys)
    assert rc == 2 and f"the disk holding {out} is full: 1 of 3 images are done and saved" in one_line(err)
    assert "run the same command again to finish" in err
    rc, _, err = run(argv, capsys)
    assert rc == 0, err
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] and len(res["images"]) == 3 and not list(out.rglob(".gfi-tmp.*"))
    data = sod(tmp_path / "sod", 3)
    argv = ["eval", "saliency", "--data", str(data), "--method", "gradcam", "--out", str(tmp_path / "ev"), "--quiet",
            "--batch-size", "1"]
    with monkeypatch.context() as m:
        _short_writes(m, after=1)
        rc, _, err = run(argv, capsys)
    assert rc == 2 and "is full: 1 of 3 images are scored and their lines saved" in one_line(err)
    rc, _, err = run(argv, capsys)
    assert rc == 0 and json.loads((tmp_path / "ev" / "summary.json").read_text())["n_images"] == 3


@pytest.mark.parametrize("command", ["explain", "eval"])
def test_a_folder_turned_read_only_mid_run_is_one_line_and_the_run_resumes(tmp_path, capsys, tiny_cli,
                                                                          monkeypatch, command):
    """(Root writes anywhere, so the read-only folder is simulated: after a few files, every rename
    or link into the folder fails with EROFS, the summary's too.)"""
    out = tmp_path / "o"
    after = 12 if command == "explain" else 5  # in the third image
    if command == "explain":
        argv = ["explain", str(write_images(tmp_path / "in", 4)), "--out", str(out), *FAST, "--batch-size", "1"]
    else:
        argv = ["eval", "saliency", "--data", str(sod(tmp_path / "sod", 4)), "--method", "gradcam", "--out", str(out),
                "--quiet", "--batch-size", "1"]
    calls = {"n": 0}

    def readonly(real):
        def op(src, dst, *a, **k):
            calls["n"] += 1
            if calls["n"] > after and str(out) in str(dst):
                raise OSError(errno.EROFS, "Read-only file system")
            return real(src, dst, *a, **k)
        return op

    with monkeypatch.context() as m:
        m.setattr(os, "replace", readonly(os.replace))
        m.setattr(os, "link", readonly(os.link))
        rc, _, err = run(argv, capsys)
    assert rc == 2 and "(Read-only file system)" in one_line(err), err
    assert re.search(r"\d of 4 images are (done and saved|scored and their lines saved)", err)
    assert "make it writable and run the same command again to finish" in err
    rc, _, err = run(argv, capsys)
    assert rc == 0, err


# -- 12. the summary keeps the model's info ----------------------------------------------------------
def test_model_info_survives_a_rerun_that_loads_no_model(tmp_path, capsys, tiny_cli):
    weights = tmp_path / "tiny.pt"
    torch.save(cli_tiny.SmallNet(seed=3).state_dict(), weights)
    data = sod(tmp_path / "sod", 2)
    out = tmp_path / "ev"
    argv = ["eval", "saliency", "--data", str(data), "--method", "gradcam", "--weights", str(weights), "--quiet"]
    assert run([*argv, "--out", str(out)], capsys)[0] == 0
    first = json.loads((out / "summary.json").read_text())["model_info"]
    assert first["weights"] == str(weights) and len(first["sha256"]) >= 12
    (out / "summary.json").unlink()
    assert run([*argv, "--out", str(out)], capsys)[0] == 0  # every line done: no model loaded
    assert json.loads((out / "summary.json").read_text())["model_info"] == first
    # without that record either: the weights and their hash from the run's options
    (out / "model_info.json").unlink()
    (out / "summary.json").unlink()
    assert run([*argv, "--out", str(out)], capsys)[0] == 0
    info = json.loads((out / "summary.json").read_text())["model_info"]
    assert (info["weights"], info["sha256"], info["loaded"]) == (str(weights), first["sha256"], False)


# -- 13. a refused --range writes nothing; a resumed eval computes what an uninterrupted one did -----
def test_a_bad_range_is_refused_before_anything_is_written(tmp_path, capsys, tiny_cli):
    data = sod(tmp_path / "sod", 2)
    out = tmp_path / "ev"
    rc, _, err = run(["eval", "saliency", "--data", str(data), "--out", str(out), "--range", "1:x"], capsys)
    assert rc == 2 and "--range '1:x'" in one_line(err)
    assert not out.exists()


class Killed(BaseException):
    """A kill in the middle of a batch (after some of its maps were stored, before its lines)."""


def test_a_resumed_eval_stores_the_maps_an_uninterrupted_one_does(tmp_path, capsys, tiny_cli, monkeypatch):
    from gfi.evaluation.mapstore import MapStore

    data = sod(tmp_path / "sod", 6)
    argv = lambda out: ["eval", "saliency", "--data", str(data), "--method", "gfi", "--iters1", "3", "--iters2", "3",  # noqa: E731
                        "--out", str(out), "--quiet", "--batch-size", "3"]
    assert run(argv(tmp_path / "ref"), capsys)[0] == 0
    real, saved = MapStore.save, []

    def save(self, *a, **k):
        if len(saved) == 5:  # the first batch stored, two maps of the second: killed
            raise Killed
        saved.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(MapStore, "save", save)
    with pytest.raises(Killed):
        run(argv(tmp_path / "killed"), capsys)
    monkeypatch.setattr(MapStore, "save", real)
    assert run(argv(tmp_path / "killed"), capsys)[0] == 0
    for ref in sorted((tmp_path / "ref" / "maps").glob("*.npy")):
        got = np.load(tmp_path / "killed" / "maps" / ref.name)
        assert np.array_equal(got, np.load(ref)), ref.name  # bit for bit, not only to 1e-6
