"""Issue 14: SIGKILL at random points of a ``gfi explain`` and a ``gfi eval`` run (seeded, at least
10 kill points per command), resumed each time with the same command: the final folder equals an
uninterrupted run's (maps to 1e-6, records, results.json / summary.json, report.html rows), with
no temporary file left. Real processes: ``python -m tests.cli_tiny`` (tests/cli_tiny.py)."""

from __future__ import annotations

import json
import random
import re
import signal
import time

import numpy as np
import pytest
from PIL import Image

from tests.cli.test_output_folder import start
from tests.cli.test_reliability import assert_same_summary

KILLS = 10
TIMING = {"seconds", "metric_seconds", "cached", "seconds_per_image", "seconds_total", "metric_seconds_per_image",
          "batch_images", "n_maps_cached", "options"}


def images(folder, n):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((36 + 2 * i, 40, 3)) * 255).astype(np.uint8)).save(folder / f"im{i}.png")
    return folder


def sod(root, n):
    images(root / "images", n)
    (root / "masks").mkdir()
    for i in range(n):
        m = np.zeros((36 + 2 * i, 40), np.uint8)
        m[8:24, 10:30] = 255
        Image.fromarray(m).save(root / "masks" / f"im{i}.png")
    return root


def progress(out) -> int:
    """Files in ``out`` plus lines of its JSONL records: it grows with every step of a run."""
    if not out.exists():
        return 0
    files = [p for p in out.rglob("*") if p.is_file()]
    return len(files) + sum(p.read_bytes().count(b"\n") for p in files if p.suffix == ".jsonl")


def kill_and_resume(argv, out, seed: int, delay: float) -> tuple[int, int]:
    """Run ``argv`` with a SIGKILL after a seeded random number of steps (new files, record lines)
    and a random fraction of a second, KILLS times, then let it finish; returns (kills, runs)."""
    rng = random.Random(seed)
    kills = runs = 0
    while True:
        proc = start(argv, delay=delay)
        runs += 1
        if kills < KILLS:
            target = progress(out) + rng.randint(1, 3)
            while progress(out) < target and proc.poll() is None:
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.1))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                kills += 1
                continue
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        return kills, runs


def strip(obj):
    if isinstance(obj, dict):
        return {k: strip(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    return obj


def same_npy(a, b) -> None:
    names = sorted(p.relative_to(a) for p in a.rglob("*.npy"))
    assert names and names == sorted(p.relative_to(b) for p in b.rglob("*.npy"))
    for n in names:
        np.testing.assert_allclose(np.load(a / n), np.load(b / n), atol=1e-6, rtol=0)


def no_temporaries(out) -> None:
    assert not [p for p in out.rglob("*") if ".tmp" in p.name], "temporary files left"


@pytest.mark.slow
def test_explain_killed_ten_times_ends_as_an_uninterrupted_run(tmp_path):
    folder = images(tmp_path / "in", 8)
    argv = lambda out: ["explain", str(folder), "--out", str(out), "--method", "gradcam", "--save-npy",  # noqa: E731
                        "--batch-size", "1", "--quiet", "--target", "top2"]
    ref = tmp_path / "ref"
    proc = start(argv(ref))
    assert proc.communicate(timeout=300) and proc.returncode == 0
    out = tmp_path / "killed"
    kills, runs = kill_and_resume(argv(out), out, seed=14, delay=0.1)
    assert kills >= KILLS, f"only {kills} kills landed in {runs} runs"
    got, want = (json.loads((d / "results.json").read_text()) for d in (out, ref))
    assert got["complete"] and len(got["images"]) == 8 and not got["failures"]
    assert_same_summary(strip(got), strip(want))
    for p in sorted((ref / "records").glob("*.json")):
        assert strip(json.loads((out / "records" / p.name).read_text())) == strip(json.loads(p.read_text()))
    same_npy(out, ref)
    rows = lambda d: re.findall(r"<tr(?: class=\"fails\")?><td.*?</tr>", (d / "report.html").read_text(), re.S)  # noqa: E731
    assert len(rows(out)) == len(rows(ref)) == 16
    no_temporaries(out)


@pytest.mark.slow
def test_eval_killed_ten_times_ends_as_an_uninterrupted_run(tmp_path):
    data = sod(tmp_path / "sod", 10)
    argv = lambda out: ["eval", "saliency", "--data", str(data), "--method", "gradcam", "--out", str(out),  # noqa: E731
                        "--batch-size", "1", "--quiet"]
    ref = tmp_path / "ref"
    proc = start(argv(ref))
    assert proc.communicate(timeout=300) and proc.returncode == 0
    out = tmp_path / "killed"
    kills, runs = kill_and_resume(argv(out), out, seed=15, delay=0.1)
    assert kills >= KILLS, f"only {kills} kills landed in {runs} runs"
    lines = lambda d: [strip(json.loads(x)) for x in (d / "records.jsonl").read_text().splitlines()]  # noqa: E731
    assert lines(out) == lines(ref) and len(lines(ref)) == 10
    got, want = (json.loads((d / "summary.json").read_text()) for d in (out, ref))
    for key in ("f_beta", "precision", "recall", "mae", "n_images", "n_failed"):
        assert got[key] == pytest.approx(want[key], abs=1e-6), key
    same_npy(out / "maps", ref / "maps")
    no_temporaries(out)
