"""Memory stays flat over many explanations: hooks removed, no graph kept across images, no
growing caches. Two hundred small images go through GFI and Grad-CAM with the small CNN of
tests/cli_tiny.py in a fresh Python process (so that memory freed by other tests cannot hide
growth); the resident set size (RSS) is read along the way and the slope of a line fitted to the
second half of the readings must be about zero (a leak of one 32x32 activation per image would show:
the second test checks that the same measure sees it)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import REPO

STATM = Path("/proc/self/statm")
IMAGES = 200
EVERY = 4
LEAK = 8 * 32 * 32 * 4  # bytes of one 8x32x32 float32 activation


def rss_bytes() -> int:
    return int(STATM.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def live_tensors() -> int:
    import gc

    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))


def slope_per_image(readings: list[tuple[int, int]]) -> float:
    """Bytes per image over the second half of (image, RSS) readings: the median of the slopes between
    every two readings (Theil-Sen), so that one step of the allocator's heap (a few hundred KiB, once)
    does not read as growth, while a leak (every pair rising) does."""
    half = readings[len(readings) // 2:]
    x, y = np.array(half, dtype=np.float64).T
    i, j = np.triu_indices(len(x), k=1)
    return float(np.median((y[j] - y[i]) / (x[j] - x[i])))


def probe(leak: bool, with_gfi: bool = True) -> dict:
    """The loop, run in this process: RSS readings, live tensors, and what is left on the model."""
    import gc

    from gfi.methods.gfi import GFIConfig, GuidedFeatureInversion
    from gfi.methods.grad_cam import GradCAM
    from tests import cli_tiny

    torch.manual_seed(0)
    clf = cli_tiny.make()
    gfi = GuidedFeatureInversion(clf, config=GFIConfig(iters1=2, iters2=2))
    cam = GradCAM(clf)
    g = torch.Generator().manual_seed(0)
    readings, tensors, kept, graphs = [], [], [], 0
    for i in range(IMAGES):
        x = torch.rand(1, 3, 32, 32, generator=g)
        e1 = gfi.explain(x, [[i % 10, (i + 1) % 10]]) if with_gfi else cam.explain(x, 0)
        e2 = cam.explain(x, i % 10)
        graphs += (e1.maps.grad_fn is not None) + (e2.maps.grad_fn is not None)
        if leak:
            kept.append(torch.ones(LEAK // 4))
        if i % EVERY == EVERY - 1:
            readings.append((i, rss_bytes()))
        if i in (IMAGES // 3, IMAGES - 1):
            del e1, e2, x
            gc.collect()
            tensors.append(live_tensors())
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
                for m in clf.model.modules())
    grads = sum(p.grad is not None for p in clf.model.parameters())
    return {"readings": readings, "tensors": tensors, "hooks": hooks, "grads": grads, "graphs": graphs}


def run_probe(leak: bool, with_gfi: bool = True) -> dict:
    # glibc's malloc moves its mmap threshold and trims the heap's top as it goes, which steps the RSS
    # up and down by up to a MiB at random images; fixed thresholds leave the RSS to what is kept
    env = dict(os.environ, OMP_NUM_THREADS="1", MALLOC_MMAP_THRESHOLD_="65536",
               MALLOC_TRIM_THRESHOLD_=str(1 << 30), MALLOC_ARENA_MAX="2",
               PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")]))
    code = f"import json, tests.test_memory as t; print(json.dumps(t.probe({leak}, {with_gfi})))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


needs_proc = pytest.mark.skipif(not STATM.exists() or sys.platform != "linux",
                                reason="reads RSS from /proc/self/statm (Linux)")


@needs_proc
def test_memory_is_flat_over_hundreds_of_explanations():
    got = run_probe(leak=False)
    slope = slope_per_image(got["readings"])
    # an eighth of one leaked activation per image, for allocator noise
    assert slope < LEAK / 8, f"RSS grows by {slope:.0f} bytes per image over the second half"
    assert got["tensors"][1] <= got["tensors"][0], f"live tensors grew: {got['tensors']}"
    assert got["hooks"] == 0 and got["grads"] == 0 and got["graphs"] == 0


@needs_proc
def test_the_slope_detects_a_leak():
    """The same loop (Grad-CAM only, for speed) keeping one 32 KiB tensor per image: the measure sees it."""
    got = run_probe(leak=True, with_gfi=False)
    assert slope_per_image(got["readings"]) > LEAK / 2
