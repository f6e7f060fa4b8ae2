"""Smaller defects of the command line: ``--threads`` beyond the cores is refused (100000 crashed
OpenMP), a FIFO, device or socket given as a file is refused before it is opened (a FIFO blocked),
and a refused foreign pickle shows gfi's line only (no torch warning before it). Each case that
could hang or crash the test runner runs in a subprocess with a timeout."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from gfi.models.device import available_cpus
from gfi.models.weights import WeightsError, read_state_dict

REPO = Path(__file__).resolve().parents[2]
FAST = ["--method", "gradcam", "--quiet"]
fifo_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")


def tiny_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.cli_tiny", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_threads_beyond_the_cores_are_refused_in_one_line(tmp_path):
    done = tiny_cli("explain", "--out", str(tmp_path / "o"), "--threads", "100000", *FAST)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip() == (f"gfi: error: --threads 100000: gfi may use {available_cpus()} CPU core(s) here; "
                                   f"give at most {available_cpus()} (or 0 for torch's default)")
    assert not (tmp_path / "o").exists()


def test_eval_threads_beyond_the_cores_are_refused():
    from gfi.evaluation.experiment import EvalError, EvalRun

    with pytest.raises(EvalError, match="--threads 100000: gfi may use"):
        EvalRun(data=Path("d"), out=Path("o"), threads=100000)
    EvalRun(data=Path("d"), out=Path("o"), threads=available_cpus())


@fifo_only
def test_a_fifo_given_as_an_image_is_refused_before_it_is_opened(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    done = tiny_cli("explain", str(fifo), "--out", str(tmp_path / "o"), *FAST, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"gfi: error: {fifo}: is a FIFO (named pipe), not a regular file; gfi reads "
                                   "image files only")
    assert not (tmp_path / "o").exists()


@fifo_only
def test_a_fifo_as_targets_csv_or_weights_is_refused(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    done = tiny_cli("explain", "--targets", str(fifo), "--out", str(tmp_path / "o"), *FAST, timeout=60)
    assert done.returncode == 2 and f"--targets {fifo}: is a FIFO (named pipe), not a regular file" in done.stderr
    done = tiny_cli("explain", "--weights", str(fifo), "--out", str(tmp_path / "o"), *FAST, timeout=60)
    assert done.returncode == 2 and "is a FIFO (named pipe), not a regular file; give a checkpoint file" in done.stderr


@fifo_only
def test_load_image_refuses_a_fifo_and_a_folder_skips_one(tmp_path):
    code = ("import os, sys; from pathlib import Path; from gfi.data.images import ImageLoadError, find_images, "
            "load_image\n"
            "d = Path(sys.argv[1]); os.mkfifo(d / 'p.png')\n"
            "try:\n    load_image(d / 'p.png')\nexcept ImageLoadError as e:\n    print(e)\n"
            "(d / 'in').mkdir(); os.mkfifo(d / 'in' / 'q.png'); (d / 'in' / 'r.png').write_bytes(b'')\n"
            "print([p.name for p in find_images([d / 'in'])])")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{tmp_path}/p.png: is a FIFO (named pipe), not a regular file; gfi reads "
                                        "image files only", "['r.png']"]


def test_a_device_is_refused(tmp_path):
    if not Path("/dev/null").exists():
        pytest.skip("no /dev/null here")
    from gfi.data.images import ImageLoadError, find_images

    with pytest.raises(ImageLoadError, match="/dev/null: is a character device, not a regular file"):
        find_images(["/dev/null"])


def test_a_refused_foreign_pickle_warns_nothing_before_gfis_line(tmp_path):
    import torch

    path = tmp_path / "foreign.pkl"
    path.write_bytes(pickle.dumps({"w": torch.zeros(3)}, protocol=4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(WeightsError, match=r"foreign\.pkl is a pickle that torch\.load cannot read"):
            read_state_dict(path)
    assert [str(w.message) for w in caught] == []
    with warnings.catch_warnings(record=True) as caught:  # the filter was scoped to the load
        warnings.simplefilter("always")
        warnings.warn("Detected pickle protocol 4 elsewhere", UserWarning, stacklevel=1)
    assert len(caught) == 1


def test_a_refused_foreign_pickle_on_the_command_line_is_one_line(tmp_path):
    import torch

    path = tmp_path / "foreign.pkl"
    path.write_bytes(pickle.dumps({"w": torch.zeros(3)}, protocol=4))
    done = tiny_cli("explain", "--weights", str(path), "--out", str(tmp_path / "o"), *FAST)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"gfi: error: {path} is a pickle that torch.load cannot read")
