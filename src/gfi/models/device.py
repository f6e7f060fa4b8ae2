"""The device rule of every command: ``auto`` is the GPU when there is one, else the CPU.

Under ``torchrun`` (``LOCAL_RANK`` set) each process takes its own GPU.
"""

from __future__ import annotations

import os

import torch

from gfi.errors import UsageError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def available_cpus() -> int:
    """The CPU cores this process may run on (its affinity where the OS reports it): the most
    ``--threads`` accepts."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def choose_device(choice: str = "auto") -> torch.device:
    """``auto``: ``cuda:LOCAL_RANK`` when CUDA is available (LOCAL_RANK 0 outside torchrun), else the CPU;
    ``cuda`` without CUDA is a :class:`UsageError` naming the fix."""
    if choice not in DEVICE_CHOICES:
        raise UsageError(f"--device {choice!r}: choose one of {', '.join(DEVICE_CHOICES)}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda, but CUDA is not available here (no GPU or a CPU-only torch); "
                         "use --device cpu")
    if choice in ("auto", "cuda") and torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")
