"""Issue 14, case 4: a large image is reduced while it is read, so that memory is bounded by
``max_side`` and not by the file (a 46 KB PNG of 19500x19500 pixels used to take 4 GB).

Peak memory is measured in a fresh process: the kernel's peak resident set (``VmHWM``) is reset
after the imports (``/proc/self/clear_refs``), so the peak read after one ``load_image`` is that
call's own, and nothing the imports or the test process allocated can hide or inflate it (Linux
only; elsewhere the test skips).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageOps

import gfi.data.images as images
from gfi.data.images import ImageLoadError, image_size, load_image

MEASURE = textwrap.dedent("""
    import json, sys
    from gfi.data.images import load_image

    def status(key):
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith(key + ":"))

    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets the peak (VmHWM) to the current resident set: the imports' peak is forgotten
    before = status("VmRSS")
    x = load_image(sys.argv[1], max_side=int(sys.argv[2]))
    print(json.dumps({"shape": list(x.shape), "extra_mib": (status("VmHWM") - before) / 1024}))
""")


def big_png(path, mode: str, n: int) -> None:
    """An n x n PNG of a few rectangles: a few hundred KB on disk, n * n bytes once decoded."""
    img = Image.new(mode, (n, n), 0)
    if mode == "P":
        img.putpalette([0, 0, 0, 250, 20, 20, 20, 200, 40] + [0] * 759)
    draw = ImageDraw.Draw(img)
    for i in range(0, n, n // 8):
        draw.rectangle((i, i // 2, i + n // 16, n - 1 - i // 3), fill=1 if mode in ("1", "P") else 200)
    img.save(path)


@pytest.mark.parametrize("mode", ["L", "P"])
def test_large_png_peak_memory_is_bounded_by_max_side(tmp_path, mode):
    n, max_side = 12000, 512
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak resident set")
    path = tmp_path / f"big_{mode}.png"
    big_png(path, mode, n)
    out = subprocess.run([sys.executable, "-c", MEASURE, str(path), str(max_side)],
                         capture_output=True, text=True, timeout=120, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["shape"] == [3, max_side, max_side]
    # the result is 3 MiB of float32; decoding strip by strip adds a few 8 MiB strips. The whole
    # decoded image would be 137 MiB (mode L/P, 1 byte a pixel), 549 MiB as RGB, 1.6 GiB as float32.
    bound = 64 + 64 * max_side**2 / 2**20
    assert got["extra_mib"] < bound, f"loading took {got['extra_mib']:.0f} MiB more (bound {bound:.0f} MiB)"


def noisy(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Half smooth, half noise: every PNG filter type (Sub, Up, Average, Paeth) gets used."""
    rng = np.random.default_rng(seed)
    smooth = (np.add.outer(np.arange(h), np.arange(w)) % 256).astype(np.uint8)
    return np.where(rng.random((h, w)) < 0.5, smooth, (rng.random((h, w)) * 255).astype(np.uint8))


def reference(path, max_side: int) -> torch.Tensor:
    """The whole image decoded, then box-resampled at once (what reading in strips must equal)."""
    with Image.open(path) as img:
        img.load()
        img = ImageOps.exif_transpose(img)
        sixteen = img.mode.startswith("I;16")
        if img.mode == "P":
            img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        elif img.mode == "1":
            img = img.convert("L")
        elif sixteen:
            img = img.convert("I")
        size = images._target_size(*img.size, max_side)
        return torch.from_numpy(images._to_array(img.resize(size, Image.Resampling.BOX, reducing_gap=1.0),
                                                 sixteen=sixteen))


def files(tmp_path) -> dict[str, tuple]:
    a = noisy(101, 203)
    rgb = np.stack([a, a[::-1], np.roll(a, 7, 1)], -1)
    made = {
        "1": (Image.fromarray(a > 128), {}),
        "L": (Image.fromarray(a), {}),
        "RGB": (Image.fromarray(rgb), {}),
        "RGBA": (Image.fromarray(np.dstack([rgb, a[::-1]])), {}),
        "LA": (Image.merge("LA", [Image.fromarray(a), Image.fromarray(np.roll(a, 3, 0))]), {}),
        "I16": (Image.fromarray(a.astype(np.uint16) * 257), {}),
        "interlaced": (Image.fromarray(rgb), {"interlace": 1}),
    }
    rng = np.random.default_rng(1)
    for bits in (1, 4, 8):
        p = Image.fromarray((a.astype(np.int64) % (1 << bits)).astype(np.uint8)).convert("P")
        p.putpalette([int(v) for v in rng.integers(0, 256, 768)])
        made[f"P{bits}"] = (p, {"bits": bits})
    made["Ptransparent"] = (made["P8"][0], {"transparency": 3})
    out = {}
    for name, (img, kw) in made.items():
        out[name] = tmp_path / f"{name}.png"
        img.save(out[name], **kw)
    for fmt in ("bmp", "gif", "tiff", "webp"):
        out[fmt] = tmp_path / f"rgb.{fmt}"
        Image.fromarray(rgb).save(out[fmt], **({"lossless": True} if fmt == "webp" else {}))
    return out


def test_reading_in_strips_equals_decoding_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "_STRIP_BYTES", 4000)  # a strip of a few rows: many strip boundaries
    for name, path in files(tmp_path).items():
        for max_side in (60, 101, 202):
            x = load_image(path, max_side=max_side)
            assert max(x.shape[1:]) == max_side, name
            assert torch.equal(x, reference(path, max_side)), (name, max_side)


def test_images_within_max_side_are_unchanged(tmp_path):
    for name, path in files(tmp_path).items():
        assert torch.equal(load_image(path, max_side=203), load_image(path)), name


def test_exif_rotation_of_a_reduced_png(tmp_path):
    a = np.zeros((30, 600, 3), np.uint8)
    a[:, :300, 0] = 255  # stored: red left half, 600 wide x 30 high
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(a).save(tmp_path / "r.png", exif=exif)
    assert image_size(tmp_path / "r.png") == (600, 30)
    x = load_image(tmp_path / "r.png", max_side=200)
    assert x.shape == (3, 200, 10)  # displayed upright, then reduced
    assert x[0, :90].min() > 0.99 and x[0, 110:].max() < 0.01 and x[1].max() < 0.01


def test_broken_large_png_is_an_error(tmp_path):
    Image.fromarray(noisy(60, 9000)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match=r"cut\.png: cannot read as an image"):
        load_image(tmp_path / "cut.png", max_side=1000)
    bad = bytearray(data)
    bad[len(data) // 2] ^= 0xFF  # a flipped byte inside the image data: its chunk's CRC fails
    (tmp_path / "bad.png").write_bytes(bytes(bad))
    with pytest.raises(ImageLoadError, match=r"bad\.png: cannot read as an image"):
        load_image(tmp_path / "bad.png", max_side=1000)
