"""Reading images into RGB tensors in [0, 1] at their own size.

Handles EXIF orientation, grayscale / palette / CMYK / RGBA (composited on white) and 16-bit
images (scaled by 65535, not clipped). Every failure is an :class:`ImageLoadError` whose message
names the file and the reason. Size limits (see docs/RELIABILITY.md):

- fewer than ``min_size`` (8) pixels on a side: refused (nothing to explain);
- fewer than 32 pixels on a side: loaded, with a warning (the model sees an upsampled blur);
- more than ``max_pixels`` pixels (read from the header, before decoding): refused, so a
  decompression bomb never allocates memory;
- a side longer than ``max_side`` (when given): reduced while decoding (JPEG ``draft``) and
  resampled so that the long side is ``max_side``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from gfi.errors import GFIError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif")
SMALL_SIDE = 32
DEFAULT_MAX_PIXELS = 20_000 * 20_000


class ImageLoadError(GFIError, ValueError):
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


def _shrink(img: Image.Image, max_side: int) -> Image.Image:
    """Resample so that the long side is ``max_side`` (area-averaging; modes Pillow cannot
    resample, such as 16-bit, go through 32-bit integers first)."""
    w, h = img.size
    scale = max_side / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if img.mode.startswith("I;16"):
        img = img.convert("I")
    if img.mode == "P":
        img = img.convert("RGBA")
    return img.resize(size, Image.Resampling.BOX, reducing_gap=2.0)


def load_image(
    path: str | os.PathLike,
    *,
    min_size: int = 8,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int | None = None,
) -> Tensor:
    """A (3, H, W) float32 tensor in [0, 1] from an image file, EXIF rotation applied.

    Args:
        path: the file.
        min_size: shorter sides are refused.
        max_pixels: larger images (W * H from the header) are refused before decoding.
        max_side: when given, images with a longer side are reduced to it (aspect kept).
    """
    path = Path(path)
    if not path.exists():
        raise ImageLoadError(f"{path}: no such file")
    if path.is_dir():
        raise ImageLoadError(f"{path}: is a folder, not an image")
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # the size is checked below, from the header, with a clearer message
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise ImageLoadError(
                    f"{path}: image is {w}x{h} pixels ({w * h / 1e6:.0f} megapixels), above the limit of "
                    f"{max_pixels / 1e6:.0f} megapixels; downscale it first (this guards against decompression bombs)")
            if max_side is not None and max(w, h) > max_side:
                # JPEG decodes at 1/2, 1/4 or 1/8 scale directly, never above the requested size
                k = max(w, h) / max_side
                img.draft(img.mode if img.mode in ("RGB", "L") else None, (int(w / k), int(h / k)))
            img.load()
            img = ImageOps.exif_transpose(img)
            w, h = img.size
            if min(w, h) < min_size:
                raise ImageLoadError(
                    f"{path}: image is {w}x{h} pixels, smaller than the minimum of {min_size} px a side")
            if max_side is not None and max(img.size) > max_side:
                img = _shrink(img, max_side)
            arr = _to_array(img)
    except UnidentifiedImageError as exc:
        raise ImageLoadError(f"{path}: not an image, or a format Pillow cannot read") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(exc, ImageLoadError):
            raise
        raise ImageLoadError(f"{path}: cannot read as an image ({type(exc).__name__}: {exc})") from exc
    finally:
        Image.MAX_IMAGE_PIXELS = old
    if min(w, h) < SMALL_SIDE:
        log.warning("%s: image is only %dx%d pixels; it is upsampled to the model's input size, "
                    "so its map is coarse", path, w, h)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of an image file as displayed (EXIF rotation applied), read from the header only."""
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(f"{path}: cannot read as an image ({type(exc).__name__}: {exc})") from exc
    finally:
        Image.MAX_IMAGE_PIXELS = old
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def find_images(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (non-recursive, sorted) into image paths; errors name the input.

    Every missing input and every folder without images is named in one error.
    """
    out: list[Path] = []
    problems: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file())
            if not found:
                problems.append(f"{p}: folder has no images (looked for {', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            problems.append(f"{p}: no such file or folder")
    if problems:
        raise ImageLoadError("; ".join(problems))
    return out
