"""What the vendored pytorch-grad-cam tests import in place of pytorch-grad-cam's own names (the
import line that scripts/vendor_grad_cam_tests.py adds after each file's imports).

* :class:`GradCAM`: gfi's :class:`~gfi.frontends.cam.GFICAM`, made with GradCAM's constructor
  ``(model, target_layers, reshape_transform=None)`` and cheap GFI settings (:data:`ITERS`).
* :class:`SESS`: pytorch-grad-cam's SESS, whose default base method is that GradCAM (the tests that
  give no ``base_method`` test SESS over GradCAM).
* :data:`PHOTO`: gfi's bundled photo, in place of the repository's ``examples/both.png``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pytorch_grad_cam import SESS as _SESS
from torch import nn

import gfi
from gfi.frontends.cam import GFICAM

__all__ = ["ITERS", "PHOTO", "SESS", "GradCAM"]

#: GFI's iterations: these tests check shapes, ranges, determinism and memory, not a map's quality
ITERS = {"iters1": 1, "iters2": 1}
PHOTO = str(Path(gfi.__file__).resolve().parent / "assets" / "dog_cat.jpg")


class GradCAM(GFICAM):
    """GFICAM with GradCAM's constructor and :data:`ITERS` (a keyword given overrides them)."""

    def __init__(self, model: nn.Module, target_layers: Sequence[nn.Module],
                 reshape_transform: Callable | None = None, **kwargs: Any) -> None:
        super().__init__(model, target_layers, reshape_transform, **{**ITERS, **kwargs})


class SESS(_SESS):
    """pytorch-grad-cam's SESS with :class:`GradCAM` (GFICAM) as its default base method."""

    def __init__(self, *args: Any, base_method: type = GradCAM, **kwargs: Any) -> None:
        super().__init__(*args, base_method=base_method, **kwargs)
