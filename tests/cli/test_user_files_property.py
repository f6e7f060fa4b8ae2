"""Property: whatever files a user keeps in ``--out``, ``gfi explain`` and ``gfi eval`` (with and
without ``--overwrite``, other arguments, killed at random points and resumed) leave every one of
them byte for byte, every link and what it points to, and end each run with exit code 0, or 2 and
one line, never a traceback; after a run that finishes, no temporary of gfi's is left.

Seeded, 200 cases. A case plants 1 to 6 random files (names like gfi's outputs, records, maps,
temporaries; plain, hidden, in subfolders, links to a file outside the folder; random bytes, JSON
that looks like gfi's records, a map, empty files), in a quarter of the cases one more at a name
that refuses the whole run (results, summaries, options, run file, lock, manifest), then makes 1
to 3 runs with random arguments (``--overwrite`` in 30%), 70% of them killed at a random
file-system call (``os._exit`` in the child: no ``finally`` runs, as with SIGKILL) and resumed with
the same command, which may be killed again. The runs use the small CNN
of tests/cli_tiny.py in processes forked from a server that imported them once: a few hundred
milliseconds each."""

from __future__ import annotations

import json
import os
import random
import sys
import traceback

import numpy as np
import pytest

from tests import cli_tiny
from tests.cli.test_fault_injection import images, sod

CASES = 200
KILL = 137
CLASS = "{c}"  # a class index in a name
# names at which a file of the user's makes gfi refuse the whole run (exit 2, one line)
REFUSED = {"explain": ["run.json", "results.json", "report.html", "records/im0.json", "records/im1.json", "thumbs",
                       "records", ".gfi.lock", ".gfi-manifest.jsonl"],
           "eval": ["options.json", "records.jsonl", "summary.json", "pr_curve.png", "pr_curve.json", "model_info.json",
                    "maps", "maps/_maps.json", "maps/.gfi-maps.jsonl", f"maps/im0_{CLASS}.npy", ".gfi.lock"]}
# names like gfi's outputs, records, maps and temporaries that a run writes around (or skips an image for)
AROUND = ["records/data.json", f"im0_{CLASS}.png", f"im1_gradcam_{CLASS}.png", f"im0_{CLASS}.npy", "im1_stage1.npy",
          "thumbs/im0_input.jpg", f"thumbs/im1_{CLASS}.jpg", "thumbs/im0.jpg", "notes.txt", "photo_final.png",
          "records.part0.jsonl", "maps/_seconds.1.jsonl", "maps/my_experiment.npy", "maps/im1.npy", "maps/notes.txt",
          ".backup.tmp", ".draft.tmp.md", ".x.tmpl", f".im0_{CLASS}.4242.tmp.png", ".gfi-tmp.1-deadbeef.report.html",
          "records/.im0.1.tmp.json", "thumbs/.t.tmp.jpg", f"maps/.gfi-tmp.2-00000000.im0_{CLASS}.npy",
          ".gfi.lock.rank1", "sub/results.json", "records/sub/x.json", f"maps/sub/im0_{CLASS}.npy",
          "thumbs/sub/im0_input.jpg", ".hidden/run.json", ".gfi-manifest.jsonl.bak"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    return images(root / "in", 2), sod(root / "sod", 2)


def content(rng: random.Random) -> bytes:
    kind = rng.randrange(5)
    if kind == 0:
        return b""
    if kind == 1:  # JSON like gfi's records, naming other files
        return json.dumps({"image": "x.png", "status": rng.choice(["ok", "started"]),
                           "files": ["notes.txt", "photo_final.png"], "targets": [{"overlay": "notes.txt"}]}).encode()
    if kind == 2:
        return json.dumps({"pid": 1, "host": "elsewhere"}).encode()
    if kind == 3:  # a map
        from io import BytesIO

        buf = BytesIO()
        np.save(buf, np.full((36, 40), 0.5, np.float32))
        return buf.getvalue()
    return rng.randbytes(rng.randint(1, 64))


def plant(rng: random.Random, out, outside, command: str) -> dict:
    """Random files of the user's in ``out``; returns {path: bytes, or ("link", target, target's bytes)}."""
    names = rng.sample(AROUND, rng.randint(1, 6))
    if rng.random() < 0.25:  # one that refuses the run, now and after every kill
        names.append(rng.choice(REFUSED[command] + REFUSED["explain" if command == "eval" else "eval"]))
    planted: dict = {}
    for name in names:
        path = out / name.replace(CLASS, str(rng.randrange(10)))
        if any(p in planted for p in path.parents) or any(path in q.parents for q in planted):
            continue  # a file where another planted file needs a folder
        path.parent.mkdir(parents=True, exist_ok=True)
        if rng.random() < 0.15:  # a link at the name, to a file outside the folder
            target = outside / f"victim{len(planted)}"
            target.write_bytes(content(rng))
            path.symlink_to(target)
            planted[path] = ("link", target, target.read_bytes())
        else:
            path.write_bytes(content(rng))
            planted[path] = path.read_bytes()
    return planted


def argv_for(rng: random.Random, command: str, out, inputs) -> list[str]:
    folder, data = inputs
    if command == "explain":
        argv = ["explain", str(folder), "--out", str(out), "--method", "gradcam", "--quiet", "--no-prefetch",
                "--batch-size", str(rng.choice([1, 2]))]
        argv += rng.choice([[], ["--target", "3"], ["--target", "top2"]])
        argv += rng.choice([[], ["--save-npy"], ["--cmap", "viridis"]])
    else:
        argv = ["eval", "saliency", "--data", str(data), "--out", str(out), "--quiet", "--no-prefetch",
                "--method", rng.choice(["gradcam", "center"]), "--batch-size", str(rng.choice([1, 2]))]
    return argv + (["--overwrite"] if rng.random() < 0.3 else [])


#: imported once by the server, not by every run
PRELOAD = ["gfi.cli", "gfi.cli.explain", "gfi.folder.job", "gfi.cli.eval", "gfi.cli.compare", "gfi.cli.info",
           "gfi.methods.registry", "gfi.evaluation.loop", "gfi.evaluation.registry", "gfi.viz.overlay",
           "gfi.viz.report", "gfi.data.images",
           "matplotlib.pyplot", "tqdm", "tqdm.contrib.logging", "PIL.PngImagePlugin", "PIL.JpegImagePlugin"]


def child(argv: list[str], kill_at: int | None, err: str) -> None:
    """The CLI in a child process; ``kill_at``: end it abruptly at that file-system call."""
    rc = 1
    try:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        sys.stderr = open(err, "w")  # noqa: SIM115
        cli_tiny.patch()
        if kill_at is not None:
            calls = [0]

            def counted(real):
                def call(*a, **k):
                    calls[0] += 1
                    if calls[0] >= kill_at:
                        os._exit(KILL)
                    return real(*a, **k)
                return call

            for name in ("open", "write", "replace", "link", "unlink", "mkdir", "ftruncate"):
                setattr(os, name, counted(getattr(os, name)))
        from gfi.cli import main

        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # a traceback is what the test looks for
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(rc)


@pytest.fixture(scope="module")
def processes():
    """Children forked from a server process that imported gfi and torch once and never ran a
    parallel region (a fork of the test process itself could hang in OpenMP)."""
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__, *PRELOAD])
    with pytest.MonkeyPatch.context() as m:
        m.setenv("OMP_NUM_THREADS", "1")
        first = ctx.Process(target=os._exit, args=(0,))
        first.start()  # the server starts now, with this environment
        first.join()
    return ctx


def forked(processes, argv: list[str], kill_at: int | None, log) -> tuple[int, str]:
    err = log.with_suffix(".err")
    p = processes.Process(target=child, args=(argv, kill_at, str(err)))
    p.start()
    p.join(120)
    assert p.exitcode is not None, f"{argv}: still running after 120 s"
    return p.exitcode, err.read_text() if err.exists() else ""


def check_run(rc: int, err: str, argv) -> None:
    assert rc in (0, 2, KILL), f"{argv}: rc {rc}\n{err}"
    assert "Traceback" not in err, f"{argv}\n{err}"
    if rc == 2:
        errors = [x for x in err.splitlines() if x.startswith("gfi: error:")]
        assert len(errors) == 1 and err.rstrip().endswith(errors[0]), f"{argv}\n{err}"


@pytest.mark.slow  # 200 runs, killed and resumed: about a minute on 2 cores
@pytest.mark.parametrize("seed", range(CASES))
def test_a_users_files_survive_any_run_kill_and_resume(tmp_path, processes, inputs, seed):
    rng = random.Random(seed)
    command = "explain" if seed % 2 == 0 else "eval"
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    planted = plant(rng, out, outside, command)
    last = None
    for n in range(rng.randint(1, 3)):
        argv = argv_for(rng, command, out, inputs)
        kill_at = rng.randint(1, 120) if rng.random() < 0.7 else None
        for attempt in range(4):  # killed, then resumed with the same command (maybe killed again)
            rc, err = forked(processes, argv, kill_at, tmp_path / f"run{n}.{attempt}")
            check_run(rc, err, argv)
            if rc != KILL:
                break
            kill_at = rng.randint(1, 120) if attempt < 2 and rng.random() < 0.3 else None
        last = rc
    for path, data in planted.items():
        if isinstance(data, tuple):
            assert path.is_symlink() and os.readlink(path) == str(data[1]), path
            assert data[1].read_bytes() == data[2], path
        else:
            assert not path.is_symlink() and path.is_file() and path.read_bytes() == data, path
    assert not [p for p in outside.iterdir() if not p.name.startswith("victim")]  # nothing written through a link
    if last == 0:  # finished: every image done or listed as failed, no temporary of gfi's left
        if command == "explain":
            res = json.loads((out / "results.json").read_text())
            assert res["complete"] and len(res["images"]) + len(res["failures"]) == 2
        else:
            summary = json.loads((out / "summary.json").read_text())
            assert summary["n_images"] + summary["n_failed"] == 2
        left = [p for p in out.rglob(".gfi-tmp.*") if p not in planted]
        assert not left, left
        assert out / ".gfi.lock" in planted or not (out / ".gfi.lock").exists()
