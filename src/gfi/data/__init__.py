"""Image loading and dataset readers.

The names below are loaded on first use (PEP 562): :mod:`gfi.data.names`, which the command line
needs for every message, is imported without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gfi.data.images import ImageLoadError, find_images, load_image

__all__ = ["ImageLoadError", "find_images", "load_image"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        value = getattr(importlib.import_module("gfi.data.images"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
