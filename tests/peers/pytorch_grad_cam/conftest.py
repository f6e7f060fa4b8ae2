"""pytorch-grad-cam's vendored tests (README.md here): the skips with their reasons, the slow marks,
and a fixed seed for each test (restored afterwards)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent

#: test (file::name) -> why it is skipped
SKIPS = {
    "test_3d_cam_weights.py::test_gradient_cam_methods_support_3d_conv_layers":
        "GFI's mask and background are 2-D images (Eq. 2, 6-7): GFICAM refuses a 5-D volume with a one-line "
        "error (tests/frontends/test_cam.py::test_volumes_are_refused_in_one_line, on this test's model)",
    "test_context_release_cuda.py::test_memory_usage_in_loop":
        "needs CUDA (skipped only where torch.cuda.is_available() is false; the original returns at once "
        "there, which would count as a pass)",
    "test_3d_cam_weights.py::test_grad_cam_plusplus_accepts_3d_activations":
        "tests pytorch-grad-cam's GradCAMPlusPlus.get_cam_weights: no GradCAM, nothing of gfi runs",
    "test_3d_cam_weights.py::test_xgrad_cam_accepts_3d_activations":
        "tests pytorch-grad-cam's XGradCAM.get_cam_weights: no GradCAM, nothing of gfi runs",
    "test_sess.py::test_sliding_window":
        "tests pytorch-grad-cam's sliding_window helper: no GradCAM, nothing of gfi runs",
}
#: skipped only without CUDA
NEEDS_CUDA = {"test_context_release_cuda.py::test_memory_usage_in_loop"}
#: tests that take 2 s or more on a 2-core CPU (measured: the 100-call memory loop 60 s, 16 grey images 38 s,
#: RefineCAM 4-9 s, SESS 3-8 s, VGG-11 2-3 s; the ResNet-18 runs of test_run_all_models 8-10 s each, 70 s
#: together, on a loaded machine)
SLOW = re.compile(r"test_context_release\.py::|test_one_channel\.py::|test_refine_cam\.py::"
                  r"|test_sess\.py::test_sess(\[|_options|_without_targets)|test_run_all_models\.py::")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE not in Path(item.path).resolve().parents:
            continue
        node = f"{Path(item.path).name}::{item.originalname}"
        reason = SKIPS.get(node)
        if reason is not None and (node not in NEEDS_CUDA or not torch.cuda.is_available()):
            item.add_marker(pytest.mark.skip(reason=reason))
        if SLOW.match(f"{Path(item.path).name}::{item.name}"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _seeded():
    """Each test starts from seed 0 (the vendored modules' own module-level seeding is removed), and
    the session's random state is restored after it."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        yield
