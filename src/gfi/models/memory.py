"""How many targets fit in memory: a cap on K, the targets per image of one call, from the free
memory of the model's device and the size of the model's activations.

Every method runs its image-target rows (B images x K targets) through the network together (GFI's
stage 2, Grad-CAM's backward, the perturbation methods' masks), so memory grows with B x K. One row
costs about ``ROW_FACTOR`` times the bytes of one image's forward activations at the input size
(measured: GFI's stage 2 on EfficientNet-Lite0 at 224 x 224, 155-178 MB a row against 100 MB of
activations; Grad-CAM 80 MB). The activations are measured once per model, input size and dtype by
one forward pass of a blank image without a graph (leaf modules' outputs summed).

A call whose B x K is at most ``CHECKED_ROWS`` is not checked (no probe, no cost): the check is for
requests far beyond the usual, such as every class of an ImageNet model.
"""

from __future__ import annotations

import math
import weakref
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from gfi.models.layers import frozen, run_with_forward_hooks

ROW_FACTOR = 2.0
CHECKED_ROWS = 32
_MEMINFO = Path("/proc/meminfo")
_ACTIVATIONS: weakref.WeakKeyDictionary[nn.Module, dict[tuple, int]] = weakref.WeakKeyDictionary()


def available_bytes(device: torch.device | str) -> int | None:
    """Memory that a new allocation on ``device`` can still get: a GPU's free memory plus what
    torch's caching allocator holds unused; on the CPU, the kernel's ``MemAvailable``. None where
    it cannot be read (then nothing is capped)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type == "cpu":
        try:
            for line in _MEMINFO.read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


def activation_bytes(classifier, size: tuple[int, int]) -> int:
    """Bytes of the outputs of every leaf module in one forward pass of one (C, H, W) image: the
    activations one image-target row keeps. Measured once per model, size, dtype and device (the
    model frozen in eval mode, so BatchNorm statistics do not move)."""
    model = classifier.model
    dtype, device = classifier.dtype, classifier.device
    key = (tuple(size), dtype, str(device))
    cache = _ACTIVATIONS.setdefault(model, {})
    if key not in cache:
        total = [0]

        def add(_m, _args, out) -> None:
            if isinstance(out, Tensor):
                total[0] += out.numel() * out.element_size()

        x = classifier.normalize(torch.zeros(1, classifier.channels, *size, device=device)).to(dtype)
        with frozen(model):
            run_with_forward_hooks(model, x, {m: add for m in model.modules() if not any(True for _ in m.children())})
        cache[key] = total[0]
    return cache[key]


class TargetCap(NamedTuple):
    """The most targets per image that fit (``most``), the estimated bytes of one target, and the
    free bytes it was measured against."""

    most: int
    per_target: int
    free: int

    def refusal(self, k: int, what: str, fix: str) -> str:
        """The one-line message refusing ``k`` targets per image of ``what``, ending with ``fix``."""
        return (f"{k} targets per image of {what} need about {human_bytes(k * self.per_target)} (about "
                f"{human_bytes(self.per_target)} a target), more than the {human_bytes(self.free)} of memory free: "
                f"at most {self.most} target(s) per image fit; {fix}")


def target_cap(classifier, images: int, size: tuple[int, int], *, extra_per_target: int = 0,
               available: int | None = None) -> TargetCap | None:
    """How many targets per image fit in a call on ``images`` images of ``size`` = (H, W) at the
    model's input, each target also costing ``extra_per_target`` bytes (e.g. the CLI's maps at the
    image's own size); None when the free memory is unknown."""
    free = available_bytes(classifier.device) if available is None else available
    if free is None:
        return None
    per_target = math.ceil(images * ROW_FACTOR * activation_bytes(classifier, size)) + extra_per_target
    return TargetCap(max(0, free // max(1, per_target)), per_target, free)


def human_bytes(n: float) -> str:
    """``n`` bytes as a short number with a unit (``1.5 GB``)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"
