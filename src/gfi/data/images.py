"""Reading images into (C, H, W) tensors in [0, 1] at their own size.

Handles EXIF orientation, grayscale / palette / CMYK / RGBA (composited on white) and 16-bit
images (scaled by 65535, not clipped). Every failure is an :class:`ImageLoadError` whose message
names the file and the reason.

Channels (``load_image(path, channels=C)``, C the model's :attr:`~gfi.models.classifier.Classifier.channels`):

- 3 (or left out): RGB; a grey image has its grey repeated in the three channels;
- 1: grey; a grey file (8- or 16-bit) as it is, a colour file converted to its luma (ITU-R 601-2,
  Pillow's ``L``; a warning says so when its channels differ);
- another C: the file's own bands, when it has C of them: a ``.npy`` array, a multi-page TIFF (the
  bands of its pages in order, e.g. one grey page per band), or a picture whose mode has C bands
  (RGBA as 4 bands, its alpha kept, not composited; CMYK). Pillow reads no TIFF of more than 4
  bands in one page (nor planar float ones): such a file is refused in one line naming the ways
  out (one band per page, or a ``.npy``).

``.npy`` files hold one image, a float array (C, H, W) or (H, W, C) in [0, 1] (uint8 and uint16
arrays are divided by 255 and 65535; a 2-D array is one channel), read without pickles; the
channel axis is the one of size C (when C is left out: the first or last axis, whichever is
smaller than the other two). They and multi-page TIFFs are decoded whole, then reduced to
``max_side``.

Size limits (see docs/RELIABILITY.md):

- fewer than ``min_size`` (8) pixels on a side: refused (nothing to explain);
- fewer than 32 pixels on a side: loaded, with a warning (the model sees an upsampled blur);
- more than ``max_pixels`` pixels (read from the header, before decoding): refused, so a
  decompression bomb never allocates memory;
- a side longer than ``max_side`` (when given): reduced while decoding, so that memory is bounded
  by ``max_side`` and not by the file (PNG: decoded and box-reduced strip by strip; JPEG: decoded
  at 1/2, 1/4 or 1/8 scale by ``draft``; other formats: decoded in their own mode, e.g. 1 byte a
  pixel for ``L``/``P``, then reduced strip by strip), and box-resampled so that the long side is
  ``max_side``.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from gfi.errors import GFIError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif")
ARRAY_SUFFIXES = (".npy",)
#: what ``find_images`` takes from a folder: picture files and ``.npy`` arrays
INPUT_SUFFIXES = IMAGE_SUFFIXES + ARRAY_SUFFIXES
SMALL_SIDE = 32
DEFAULT_MAX_PIXELS = 20_000 * 20_000


class ImageLoadError(GFIError, ValueError):
    """An input that cannot be read as an image; the message names the file and the reason."""


_SIXTEEN = ("I;16", "I;16B", "I;16L")
# EXIF orientation -> the transpose that shows the image upright (as ImageOps.exif_transpose)
_ORIENT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
           5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_90}
_STRIP_BYTES = 8 << 20  # decoded bytes per strip of a large image


def _read(img: Image.Image, *, sixteen: bool | None = None, channels: int | None = 3) -> tuple[np.ndarray, bool]:
    """(array, converted): a (C, H, W) float32 array in [0, 1], RGB for ``channels`` 3 or None
    (:func:`_to_array`), grey for 1 (:func:`_grey`), the image's own bands otherwise
    (:func:`_bands`); ``converted``: a colour image was made grey."""
    if channels == 1:
        return _grey(img, sixteen)
    if channels not in (None, 3):
        return _bands(img, sixteen), False
    return _to_array(img, sixteen=sixteen), False


def _to_array(img: Image.Image, *, sixteen: bool | None = None) -> np.ndarray:
    """A (3, H, W) float32 array in [0, 1], filled channel by channel (one float array at a time).

    ``sixteen``: the pixels are 16-bit levels (divided by 65535); by default read from the mode.
    """
    w, h = img.size
    out = np.empty((3, h, w), np.float32)
    if img.mode in (*_SIXTEEN, "I"):
        arr = np.asarray(img, dtype=np.float32)
        if sixteen is None:
            sixteen = img.mode.startswith("I;16") or arr.max() > 255
        out[:] = np.clip(arr / (65535.0 if sixteen else 255.0), 0, 1)
        return out
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        out[:] = (arr - lo) / (hi - lo) if hi > lo else 0.0
        return out
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    rgb = np.asarray(img.convert("RGB"))
    for c in range(3):
        out[c] = rgb[..., c]
    out /= 255.0
    return out


def _on_white(img: Image.Image) -> Image.Image:
    """An image with transparency composited on white (RGBA), others as they are."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return img


def _grey(img: Image.Image, sixteen: bool | None) -> tuple[np.ndarray, bool]:
    """((1, H, W) float32 array in [0, 1], converted): the channel :func:`_to_array` repeats in RGB for
    a grey image (16-bit levels divided by 65535, a float image spread over [0, 1], transparency on
    white); a colour image's luma (Pillow's ``L``, ITU-R 601-2), ``converted`` when its channels
    differ somewhere."""
    if img.mode in (*_SIXTEEN, "I", "F"):
        return _to_array(img, sixteen=sixteen)[:1].copy(), False
    img = _on_white(img)
    colour = False
    if img.mode not in ("L", "1"):
        img = img.convert("RGB")
        arr = np.asarray(img)
        colour = bool((arr != arr[..., :1]).any())
    return (np.asarray(img.convert("L"), dtype=np.float32) / 255.0)[None], colour


def _bands(img: Image.Image, sixteen: bool | None) -> np.ndarray:
    """The image's own bands, (k, H, W) float32: 8-bit levels divided by 255, 16-bit by 65535, a
    float band as it is (checked to lie in [0, 1] by the caller); a palette as its colours."""
    if img.mode in (*_SIXTEEN, "I"):
        arr = np.asarray(img, dtype=np.float32)
        if sixteen is None:
            sixteen = img.mode.startswith("I;16") or arr.max() > 255
        return (arr / (65535.0 if sixteen else 255.0))[None]
    if img.mode == "F":
        return np.asarray(img, dtype=np.float32)[None].copy()
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode == "1":
        img = img.convert("L")
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr[None] if arr.ndim == 2 else np.ascontiguousarray(np.moveaxis(arr, -1, 0))


def _reducible(img: Image.Image) -> Image.Image:
    """The image in a mode Pillow box-reduces with the meaning kept: 1 -> L, 16-bit -> I,
    palette -> its colours (RGBA when it has a transparent index)."""
    if img.mode == "1":
        return img.convert("L")
    if img.mode.startswith("I;16"):
        return img.convert("I")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):  # alpha-weighted averages, as Image.resize does
        img = img.convert({"LA": "La", "RGBA": "RGBa"}[img.mode])
    return img


def _target_size(w: int, h: int, max_side: int) -> tuple[int, int]:
    scale = max_side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _png_layout(path: Path, img: Image.Image) -> tuple[int, int] | None:
    """(bytes per row, bytes per pixel for the PNG filters) of a PNG that can be decoded strip by
    strip from the file; None for what must be decoded whole (interlaced, unusual layouts)."""
    if img.format != "PNG" or len(img.tile) != 1 or img.tile[0][0] != "zip" or img.info.get("interlace"):
        return None
    with open(path, "rb") as fh:
        head = fh.read(33)
    if len(head) < 33 or head[12:16] != b"IHDR":
        return None
    width, _, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", head[16:29])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(color)
    if channels is None or interlace or width != img.size[0]:
        return None
    rawmode = img.tile[0][3] if isinstance(img.tile[0][3], str) else img.tile[0][3][0]
    try:  # the last row of each strip is packed back to the file's layout for the next strip's filters
        Image.new(img.mode, (1, 1)).tobytes("raw", rawmode)
    except (ValueError, OSError):
        return None
    bits = depth * channels
    return (width * bits + 7) // 8, max(1, bits // 8)


def _png_data(path: Path, offset: int) -> Iterator[bytes]:
    """The inflated image data of a PNG, piece by piece (IDAT chunks from ``offset``, CRC checked)."""
    inflate = zlib.decompressobj()
    with open(path, "rb") as fh:
        fh.seek(offset - 8)
        while True:
            head = fh.read(8)
            if len(head) < 8:
                raise OSError("image file is truncated")
            length, kind = struct.unpack(">I4s", head)
            if kind != b"IDAT":
                break
            crc = zlib.crc32(kind)
            left = length
            while left:
                piece = fh.read(min(left, 1 << 20))
                if not piece:
                    raise OSError("image file is truncated")
                left -= len(piece)
                crc = zlib.crc32(piece, crc)
                while piece:
                    out = inflate.decompress(piece, _STRIP_BYTES)
                    piece = inflate.unconsumed_tail
                    if out:
                        yield out
            stored = fh.read(4)
            if len(stored) < 4 or struct.unpack(">I", stored)[0] != crc & 0xFFFFFFFF:
                raise OSError("broken PNG file (bad CRC in an IDAT chunk)")
        rest = inflate.flush()
        if rest:
            yield rest


def _png_strips(path: Path, img: Image.Image, layout: tuple[int, int], rows: int) -> Iterator[Image.Image]:
    """The PNG's pixels in strips of ``rows`` rows (in the file's own mode), never the whole image.

    Each strip is decoded by Pillow's own PNG decoder: its filtered rows are handed over behind the
    previous strip's last row (unfiltered, filter type 0), which the filters of its first row read.
    """
    w, h = img.size
    row_bytes, _ = layout
    rawmode = img.tile[0][3] if isinstance(img.tile[0][3], str) else img.tile[0][3][0]
    stride = row_bytes + 1
    previous = b"\x00" * stride  # the row above the first one is black
    buf = bytearray()
    data = _png_data(path, img.tile[0][2])
    y = 0
    while y < h:
        n = min(rows, h - y)
        while len(buf) < n * stride:
            piece = next(data, None)
            if piece is None:
                raise OSError("image file is truncated")
            buf += piece
        body = bytes(buf[:n * stride])
        del buf[:n * stride]
        strip = Image.frombytes(img.mode, (w, n + 1), zlib.compress(previous + body, 0), "zip", rawmode)
        previous = b"\x00" + strip.crop((0, n, w, n + 1)).tobytes("raw", rawmode)
        strip = strip.crop((0, 1, w, n + 1))
        if img.mode == "P" and img.palette is not None:  # img.getpalette() would decode the whole image
            strip.putpalette(img.palette)
        if "transparency" in img.info:
            strip.info["transparency"] = img.info["transparency"]
        yield strip
        y += n


def _load_reduced(path: Path, img: Image.Image, max_side: int) -> tuple[Image.Image, bool]:
    """The image (not yet EXIF-rotated) box-resampled so that its long side is ``max_side``, decoded
    and reduced strip by strip: memory beyond the result is a strip, plus the file's own decoded
    pixels for formats that cannot be read in strips (all but PNG; JPEG is first decoded at 1/2,
    1/4 or 1/8 scale by ``draft``). Returns the image and whether its levels are 16-bit."""
    w, h = img.size
    layout = _png_layout(path, img)
    if layout is None:
        # JPEG decodes at 1/2, 1/4 or 1/8 scale directly, never below the requested size
        k = max(w, h) / max_side
        img.draft(img.mode if img.mode in ("RGB", "L") else None, (int(w / k), int(h / k)))
        img.load()
        w, h = img.size
    sixteen = img.mode.startswith("I;16")
    size = _target_size(w, h, max_side)
    fx, fy = max(1, w // size[0]), max(1, h // size[1])  # integer box reduction first, exact per strip
    rows = max(fy, _STRIP_BYTES // (4 * w) // fy * fy)  # Pillow holds up to 4 bytes a pixel
    if layout is not None:
        strips: Iterable[Image.Image] = _png_strips(path, img, layout, rows)
    else:
        strips = (img.crop((0, y, w, min(h, y + rows))) for y in range(0, h, rows))
    reduced: Image.Image | None = None
    for i, strip in enumerate(strips):
        part = _reducible(strip)
        if (fx, fy) != (1, 1):
            part = part.reduce((fx, fy))
        if reduced is None:
            reduced = Image.new(part.mode, (-(-w // fx), -(-h // fy)))
        reduced.paste(part, (0, i * (rows // fy)))
    assert reduced is not None
    if reduced.size != size:
        reduced = reduced.resize(size, Image.Resampling.BOX, box=(0, 0, w / fx, h / fy))
    if reduced.mode in ("La", "RGBa"):
        reduced = reduced.convert({"La": "LA", "RGBa": "RGBA"}[reduced.mode])
    return reduced, sixteen


def _png_exif(path: Path) -> bytes | None:
    """The eXIf chunk of a PNG, found by walking the chunk list (image data is skipped, not read)."""
    with open(path, "rb") as fh:
        fh.seek(8)
        while True:
            head = fh.read(8)
            if len(head) < 8:
                return None
            length, kind = struct.unpack(">I4s", head)
            if kind == b"eXIf":
                return fh.read(length)
            if kind == b"IEND":
                return None
            fh.seek(length + 4, os.SEEK_CUR)


def _orientation(path: Path, img: Image.Image) -> int:
    """The EXIF orientation (1 when none), without decoding the pixels: Pillow's PNG ``getexif()``
    loads the whole image when the eXIf chunk comes after the image data."""
    if img.format == "PNG" and "exif" not in img.info:
        data = _png_exif(path)
        if not data:
            return 1
        exif = Image.Exif()
        exif.load(data if data.startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + data)
        return int(exif.get(0x0112, 1))
    return int(img.getexif().get(0x0112, 1))


_SPECIAL = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def not_regular(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it exists but is neither a regular file nor a folder (``"a FIFO (named
    pipe)"``, a device, a socket; links followed), else None. Such a file is refused before it is
    opened: reading a FIFO or a device can block forever."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return next((name for test, name in _SPECIAL if test(mode)), None)


def _missing(path: Path, what: str) -> str:
    """Why an input that does not exist is missing: a symlink loop, a broken link, or nothing there."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"{path}: symlink loop (the link resolves back to itself); point it at a real file"
        if path.is_symlink():
            return f"{path}: broken symlink (it points to {os.readlink(path)}, which does not exist)"
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
            return f"{path}: cannot access ({exc.strerror})"
    return f"{path}: no such {what}"


def load_image(
    path: str | os.PathLike,
    *,
    channels: int | None = None,
    min_size: int = 8,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int | None = None,
) -> Tensor:
    """A (C, H, W) float32 tensor in [0, 1] from an image file or a ``.npy`` array, EXIF rotation applied.

    Args:
        path: the file.
        channels: C, the channels the model takes (``Classifier.channels``): 3 or None for RGB (a
            ``.npy`` array: its own channels), 1 for grey, another C for the file's own C bands
            (the rules of this module's docstring); a file that cannot give C channels is refused.
        min_size: shorter sides are refused.
        max_pixels: larger images (W * H from the header) are refused before decoding.
        max_side: when given, images with a longer side are reduced to it (aspect kept) while
            they are read, so that memory is bounded by ``max_side`` rather than by the file's size
            (PNG is decoded in strips; JPEG at a DCT scale; other formats in their own mode;
            ``.npy`` arrays and multi-page TIFFs are decoded whole, then reduced).
            Images within it are loaded exactly as without it.
    """
    path = Path(path)
    if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int) or channels < 1):
        raise ImageLoadError(f"channels must be a positive int (1 for grey, 3 for RGB) or None, got {channels!r}")
    if not path.exists():
        raise ImageLoadError(_missing(path, "file"))
    if path.is_dir():
        raise ImageLoadError(f"{path}: is a folder, not an image")
    special = not_regular(path)
    if special:
        raise ImageLoadError(f"{path}: is {special}, not a regular file; gfi reads image files only")
    if path.suffix.lower() in ARRAY_SUFFIXES:
        arr = _load_array(path, channels, min_size, max_pixels)
    else:
        arr = _load_picture(path, channels, min_size, max_pixels, max_side)
    h, w = arr.shape[-2:]
    out = torch.from_numpy(arr)
    if max_side is not None and max(h, w) > max_side and (path.suffix.lower() in ARRAY_SUFFIXES
                                                          or channels not in (None, 1, 3)):
        tw, th = _target_size(w, h, max_side)
        out = torch.nn.functional.interpolate(out[None], size=(th, tw), mode="area")[0].contiguous()
    if min(h, w) < SMALL_SIDE:
        log.warning("%s: image is only %dx%d pixels; it is upsampled to the model's input size, "
                    "so its map is coarse", path, w, h)
    return out


def _load_picture(path: Path, channels: int | None, min_size: int, max_pixels: int,
                  max_side: int | None) -> np.ndarray:
    """:func:`load_image` of a file Pillow reads: a (C, H, W) float32 array in [0, 1]."""
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # the size is checked below, from the header, with a clearer message
    bands = channels not in (None, 1, 3)
    converted = False
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise ImageLoadError(
                    f"{path}: image is {w}x{h} pixels ({w * h / 1e6:.0f} megapixels), above the limit of "
                    f"{max_pixels / 1e6:.0f} megapixels; downscale it first (this guards against decompression bombs)")
            if bands and getattr(img, "n_frames", 1) > 1:
                arr = _pages(path, img, min_size)
            elif max_side is not None and max(w, h) > max_side and not bands:
                orientation = _orientation(path, img)
                if orientation in (5, 6, 7, 8):
                    w, h = h, w
                if min(w, h) < min_size:
                    raise ImageLoadError(
                        f"{path}: image is {w}x{h} pixels, smaller than the minimum of {min_size} px a side")
                reduced, sixteen = _load_reduced(path, img, max_side)
                if orientation in _ORIENT:
                    reduced = reduced.transpose(_ORIENT[orientation])
                arr, converted = _read(reduced, sixteen=sixteen, channels=channels)
            else:
                img.load()
                img = ImageOps.exif_transpose(img)
                w, h = img.size
                if min(w, h) < min_size:
                    raise ImageLoadError(
                        f"{path}: image is {w}x{h} pixels, smaller than the minimum of {min_size} px a side")
                arr, converted = _read(img, channels=channels)
    except UnidentifiedImageError as exc:
        if bands and path.suffix.lower() in (".tif", ".tiff"):
            raise ImageLoadError(
                f"{path}: Pillow cannot read this TIFF (it reads at most 4 bands in a page, and no planar float "
                f"bands); for a {channels}-channel model save the bands as the pages of one TIFF (one grey page a "
                "band) or as a .npy (C, H, W) float array in [0, 1]") from exc
        raise ImageLoadError(f"{path}: not an image, or a format Pillow cannot read") from exc
    except (OSError, SyntaxError, ValueError, zlib.error, Image.DecompressionBombError) as exc:
        if isinstance(exc, ImageLoadError):
            raise
        raise ImageLoadError(f"{path}: cannot read as an image ({type(exc).__name__}: {exc})") from exc
    finally:
        Image.MAX_IMAGE_PIXELS = old
    if converted:
        log.warning("%s: a colour image, converted to grey (its luma, ITU-R 601-2) for a 1-channel model", path)
    if bands:
        if arr.shape[0] != channels:
            raise ImageLoadError(
                f"{path}: has {arr.shape[0]} band(s), but the model takes {channels} channels; give a file with "
                f"{channels} bands (a .npy (C, H, W) array, a TIFF of {channels} pages, or a {channels}-band image)")
        _check_range(arr, path)
    return arr


def _pages(path: Path, img: Image.Image, min_size: int) -> np.ndarray:
    """The bands of every page of a multi-page image (a TIFF), in order: (k, H, W) float32."""
    out: list[np.ndarray] = []
    for i in range(img.n_frames):
        img.seek(i)
        page = ImageOps.exif_transpose(img.copy())
        if i == 0 and min(page.size) < min_size:
            raise ImageLoadError(f"{path}: image is {page.size[0]}x{page.size[1]} pixels, smaller than the minimum "
                                 f"of {min_size} px a side")
        arr = _bands(page, None)
        if out and arr.shape[1:] != out[0].shape[1:]:
            raise ImageLoadError(f"{path}: page {i + 1} is {arr.shape[2]}x{arr.shape[1]} pixels, page 1 "
                                 f"{out[0].shape[2]}x{out[0].shape[1]}; the pages of a multi-band image must be "
                                 "the same size")
        out.append(arr)
    return np.concatenate(out)


def _check_range(arr: np.ndarray, path: Path) -> None:
    """Refuse values that are not finite or lie outside [0, 1] (beyond round-off), clip the round-off."""
    if not np.isfinite(arr).all():
        raise ImageLoadError(f"{path}: contains NaN or inf; give finite values in [0, 1]")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ImageLoadError(f"{path}: values lie in [{lo:.4g}, {hi:.4g}]; gfi takes floats in [0, 1]: rescale them "
                             "first (e.g. divide by the sensor's maximum), so that every image keeps the same scale")
    np.clip(arr, 0, 1, out=arr)


def _array_layout(shape: tuple[int, ...], channels: int | None, path: Path) -> str:
    """``"chw"``, ``"hwc"`` or ``"hw"`` for a ``.npy`` array of ``shape`` (the rule of the module's docstring)."""
    if len(shape) == 2:
        return "hw"
    if len(shape) != 3:
        raise ImageLoadError(f"{path}: a .npy array of shape {shape}; gfi takes one image per file, (C, H, W) or "
                             "(H, W, C) (or (H, W) for one channel)"
                             + ("; 3-D volumes are not supported" if len(shape) == 4 else ""))
    first, last = shape[0], shape[2]
    if channels is not None:
        if first == channels and last != channels:
            return "chw"
        if last == channels and first != channels:
            return "hwc"
        if first == last == channels:
            raise ImageLoadError(f"{path}: shape {shape} could be (C, H, W) or (H, W, C) with C = {channels}; "
                                 "save it with a side longer than the number of channels")
        raise ImageLoadError(f"{path}: has shape {shape}, but the model takes {channels} channel(s); give (C, H, W) or "
                             f"(H, W, C) with C = {channels}")
    if first < min(shape[1:]):
        return "chw"
    if last < min(shape[:2]):
        return "hwc"
    raise ImageLoadError(f"{path}: cannot tell which axis of shape {shape} holds the channels; pass channels= (the "
                         "model's number)")


def _load_array(path: Path, channels: int | None, min_size: int, max_pixels: int) -> np.ndarray:
    """:func:`load_image` of a ``.npy`` file: a (C, H, W) float32 array in [0, 1]."""
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ImageLoadError(f"{path}: cannot read as a .npy array ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, np.ndarray):
        raise ImageLoadError(f"{path}: holds no single array; save one image with numpy.save")
    layout = _array_layout(tuple(data.shape), channels, path)
    h, w = (data.shape[1:] if layout == "chw" else data.shape[:2])
    if w * h > max_pixels:
        raise ImageLoadError(f"{path}: image is {w}x{h} pixels ({w * h / 1e6:.0f} megapixels), above the limit of "
                             f"{max_pixels / 1e6:.0f} megapixels; downscale it first")
    if min(w, h) < min_size:
        raise ImageLoadError(f"{path}: image is {w}x{h} pixels, smaller than the minimum of {min_size} px a side")
    kind = data.dtype
    if kind == np.uint8 or kind == np.uint16:
        arr = np.asarray(data, dtype=np.float32) / (255.0 if kind == np.uint8 else 65535.0)
    elif np.issubdtype(kind, np.floating):
        arr = np.array(data, dtype=np.float32)
        _check_range(arr, path)
    else:
        raise ImageLoadError(f"{path}: a .npy array of {kind}; gfi takes float arrays in [0, 1] (or uint8, uint16 "
                             "levels)")
    if layout == "hw":
        arr = arr[None]
    elif layout == "hwc":
        arr = np.moveaxis(arr, -1, 0)
    if channels is not None and arr.shape[0] != channels:
        raise ImageLoadError(f"{path}: has {arr.shape[0]} channel(s), but the model takes {channels}; give an array "
                             f"of {channels} channels")
    return np.ascontiguousarray(arr)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of an image file as displayed (EXIF rotation applied), read from the header only; of a
    ``.npy`` array, from its shape (the channel axis as :func:`load_image` finds it without ``channels``)."""
    if Path(path).suffix.lower() in ARRAY_SUFFIXES:
        try:
            shape = tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape)
        except (OSError, ValueError, EOFError, AttributeError) as exc:
            raise ImageLoadError(f"{path}: cannot read as a .npy array ({type(exc).__name__}: {exc})") from exc
        return shape[1:] if _array_layout(shape, None, Path(path)) == "chw" else shape[:2]
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as img:
            w, h = img.size
            orientation = _orientation(Path(path), img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(f"{path}: cannot read as an image ({type(exc).__name__}: {exc})") from exc
    finally:
        Image.MAX_IMAGE_PIXELS = old
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def find_images(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (non-recursive, sorted) into image paths; errors name the input.

    Every missing input, every input that is not a regular file (a FIFO, a device, a socket: refused
    before it is opened, reading one can block) and every folder without images is named in one
    error. In a folder only regular files are taken.
    """
    out: list[Path] = []
    problems: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in INPUT_SUFFIXES and q.is_file())
            if not found:
                problems.append(f"{p}: folder has no images (looked for {', '.join(INPUT_SUFFIXES)})")
            out.extend(found)
        elif not_regular(p):
            problems.append(f"{p}: is {not_regular(p)}, not a regular file; gfi reads image files only")
        elif p.exists():
            out.append(p)
        else:
            problems.append(_missing(p, "file or folder"))
    if problems:
        raise ImageLoadError("; ".join(problems))
    return out
