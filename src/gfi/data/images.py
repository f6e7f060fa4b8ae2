"""Reading images into RGB tensors in [0, 1] at their own size.

Handles EXIF orientation, grayscale / palette / CMYK / RGBA (composited on white) and 16-bit
images (scaled by 65535, not clipped).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif")


class ImageLoadError(ValueError):
    """An input that cannot be read as an image; the message names the file and the reason."""


def _to_array(img: Image.Image) -> np.ndarray:
    """An (H, W, 3) float32 array in [0, 1]."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        maxval = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / maxval, 0, 1)
        return np.repeat(arr[..., None], 3, axis=-1)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        return np.repeat(arr[..., None], 3, axis=-1)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def load_image(path: str | os.PathLike, *, min_size: int = 8, max_pixels: int = 40_000 * 40_000) -> Tensor:
    """A (3, H, W) float32 tensor in [0, 1] from an image file, EXIF rotation applied."""
    path = Path(path)
    if not path.exists():
        raise ImageLoadError(f"{path}: no such file")
    if path.is_dir():
        raise ImageLoadError(f"{path}: is a folder, not an image")
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            arr = _to_array(img)
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageLoadError(f"{path}: cannot read as an image ({type(exc).__name__}: {exc})") from exc
    finally:
        Image.MAX_IMAGE_PIXELS = old
    h, w = arr.shape[:2]
    if min(h, w) < min_size:
        raise ImageLoadError(f"{path}: image is {w}x{h} pixels, smaller than the minimum {min_size} px")
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def find_images(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (non-recursive, sorted) into image paths; errors name the input."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file())
            if not found:
                raise ImageLoadError(f"{p}: folder has no images ({', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise ImageLoadError(f"{p}: no such file or folder")
    return out
