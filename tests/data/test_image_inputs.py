"""Every kind of image file a user may point gfi at: what load_image returns, or the error it gives.

Files are made here with PIL/numpy (and a hand-written 16-bit RGB PNG); pixel values are checked
against the values written, not only shapes.
"""

import logging
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from gfi.data.images import ImageLoadError, find_images, load_image


def png_bytes(width: int, height: int, bit_depth: int, color_type: int, raw: bytes) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit RGB), or with a header of any size."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def rgb(h=40, w=48, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def test_rgb_png_is_exact(tmp_path):
    arr = rgb()
    Image.fromarray(arr).save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png")
    assert x.dtype == torch.float32 and x.shape == (3, 40, 48)
    assert torch.allclose(x, torch.from_numpy(arr).permute(2, 0, 1).float() / 255)


def test_grayscale_is_repeated_on_three_channels(tmp_path):
    Image.fromarray(np.full((40, 40), 51, np.uint8), "L").save(tmp_path / "g.png")
    x = load_image(tmp_path / "g.png")
    assert torch.allclose(x, torch.full((3, 40, 40), 0.2))


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)  # pure red in CMYK
    x = load_image(tmp_path / "c.jpg")
    assert x.shape == (3, 40, 40)
    assert x[0].mean() > 0.9 and x[1].mean() < 0.1 and x[2].mean() < 0.1


def test_rgba_is_composited_on_white(tmp_path):
    a = np.zeros((40, 40, 4), np.uint8)
    a[..., 0] = 255          # red ...
    a[:, :20, 3] = 255       # ... opaque on the left, fully transparent on the right
    a[:, 20:, 3] = 0
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png")
    assert torch.allclose(x[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(x[:, 0, 39], torch.tensor([1.0, 1.0, 1.0]))
    Image.new("LA", (40, 40), (0, 128)).save(tmp_path / "la.png")  # black at half opacity -> mid grey
    assert torch.allclose(load_image(tmp_path / "la.png"), torch.full((3, 40, 40), 127 / 255), atol=1 / 255)


def test_palette_images(tmp_path):
    img = Image.new("P", (40, 40))
    img.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    img.paste(1, (0, 0, 40, 20))
    img.save(tmp_path / "p.png")
    x = load_image(tmp_path / "p.png")
    assert torch.allclose(x[:, 5, 5], torch.tensor([10, 200, 30]) / 255.0)
    assert torch.allclose(x[:, 30, 5], torch.zeros(3))
    img.info["transparency"] = 0  # index 0 transparent -> white
    img.save(tmp_path / "pt.png", transparency=0)
    y = load_image(tmp_path / "pt.png")
    assert torch.allclose(y[:, 30, 5], torch.ones(3)) and torch.allclose(y[:, 5, 5], x[:, 5, 5])


def test_16bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    a = np.zeros((40, 40), np.uint16)
    a[:, :10], a[:, 10:20], a[:, 20:30], a[:, 30:] = 0, 200, 32768, 65535
    Image.fromarray(a).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    x = load_image(tmp_path / "g16.png")
    expected = torch.tensor([0, 200, 32768, 65535]) / 65535.0
    assert torch.allclose(x[0, 0, [0, 10, 20, 30]], expected)
    assert x[0, 0, 10] < 0.01  # 200 of 65535 is dark, not clipped to white
    assert torch.equal(x[0], x[2])


def test_16bit_rgb_png_keeps_relative_levels(tmp_path):
    a = np.zeros((40, 40, 3), np.uint16)
    a[..., 0], a[..., 1], a[..., 2] = 65535, 32768, 2570
    raw = b"".join(b"\x00" + a[i].astype(">u2").tobytes() for i in range(40))
    (tmp_path / "rgb16.png").write_bytes(png_bytes(40, 40, 16, 2, raw))
    x = load_image(tmp_path / "rgb16.png")
    assert torch.allclose(x[:, 0, 0], torch.tensor([65535, 32768, 2570]) / 65535.0, atol=1 / 255)


def test_exif_rotation_is_applied(tmp_path):
    a = np.zeros((30, 60, 3), np.uint8)
    a[:, :30, 0] = 255  # stored: red left half, 60 wide x 30 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(a).save(tmp_path / "r.jpg", exif=exif, quality=100)
    x = load_image(tmp_path / "r.jpg")
    assert x.shape == (3, 60, 30)  # displayed upright: 30 wide x 60 high
    assert x[0, :25].mean() > 0.9 and x[0, 35:].mean() < 0.1  # the left half is now on top


@pytest.mark.parametrize("make,message", [
    (lambda p: p.write_bytes(b""), "not an image"),
    (lambda p: p.write_text("just some text\n"), "not an image"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20), "not an image"),
    (lambda p: p.write_bytes(png_bytes(10, 10, 8, 2, b"\x00" * 5)), "cannot read as an image"),
])
def test_non_images_name_the_file(tmp_path, make, message):
    p = tmp_path / "x.png"
    make(p)
    with pytest.raises(ImageLoadError, match=message) as info:
        load_image(p)
    assert str(p) in str(info.value)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_files_are_errors(tmp_path, suffix):
    full = tmp_path / f"full{suffix}"
    Image.fromarray(rgb(200, 200)).save(full)
    data = full.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match=r"truncated|cannot read"):
        load_image(cut)


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageLoadError, match="is a folder"):
        load_image(tmp_path)


def test_tiny_images(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("gfi"), "propagate", True)  # the CLI's main() may have turned it off
    Image.fromarray(rgb(5, 5)).save(tmp_path / "t.png")
    with pytest.raises(ImageLoadError, match=r"5x5 pixels, smaller than the minimum of 8 px"):
        load_image(tmp_path / "t.png")
    Image.fromarray(rgb(20, 24)).save(tmp_path / "s.png")
    with caplog.at_level(logging.WARNING, logger="gfi"):
        x = load_image(tmp_path / "s.png")
    assert x.shape == (3, 20, 24)
    assert "only 24x20 pixels" in caplog.text and "coarse" in caplog.text


def test_huge_images_are_reduced_to_max_side(tmp_path):
    a = np.zeros((60, 9000, 3), np.uint8)
    a[:, :4500, 1] = 255  # green left half
    Image.fromarray(a).save(tmp_path / "wide.png")
    x = load_image(tmp_path / "wide.png", max_side=4096)
    assert x.shape == (3, 27, 4096)
    assert x[1, :, :2000].min() > 0.99 and x[1, :, 2100:].max() < 0.01
    Image.fromarray(a).save(tmp_path / "wide.jpg", quality=95)  # JPEG: reduced while decoding (draft)
    y = load_image(tmp_path / "wide.jpg", max_side=1000)
    assert y.shape[-1] == 1000 and abs(y.shape[-2] - 7) <= 1
    assert y[1, :, :450].mean() > 0.9 and y[1, :, 550:].mean() < 0.1
    assert load_image(tmp_path / "wide.png").shape == (3, 60, 9000)  # no limit unless asked


def test_16bit_huge_image_is_reduced_with_its_scale(tmp_path):
    a = np.full((40, 9000), 32768, np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    x = load_image(tmp_path / "g16.png", max_side=900)
    assert x.shape == (3, 4, 900)
    assert torch.allclose(x, torch.full_like(x, 32768 / 65535), atol=1e-4)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    # the header claims 60000 x 60000 pixels (3.6 gigapixels); the data is a few bytes
    (tmp_path / "bomb.png").write_bytes(png_bytes(60000, 60000, 8, 0, b"\x00" * 10))
    with pytest.raises(ImageLoadError, match=r"60000x60000 pixels \(3600 megapixels\), above the limit"):
        load_image(tmp_path / "bomb.png")


def test_find_images(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hi")
    with pytest.raises(ImageLoadError, match="folder has no images"):
        find_images([tmp_path / "empty"])
    with pytest.raises(ImageLoadError, match=r"notes: folder has no images.*nope\.jpg: no such file or folder"):
        find_images([tmp_path / "notes", tmp_path / "nope.jpg"])
    (tmp_path / "imgs").mkdir()
    for name in ("b.PNG", "a.jpg", "c.txt"):
        (tmp_path / "imgs" / name).write_bytes(b"")
    assert [p.name for p in find_images([tmp_path / "imgs"])] == ["a.jpg", "b.PNG"]


def test_symlink_loop_and_broken_link_are_named(tmp_path):
    # issue 14, case 8: a symlink loop was reported as "no such file"
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    (tmp_path / "dangling.png").symlink_to(tmp_path / "gone.png")
    for name in ("loop.jpg", "a.png"):
        with pytest.raises(ImageLoadError, match=rf"{name}: symlink loop") as info:
            load_image(tmp_path / name)
        assert "no such file" not in str(info.value)
    with pytest.raises(ImageLoadError, match=r"loop\.jpg: symlink loop.*dangling\.png: broken symlink \(it points to "
                                             r".*gone\.png, which does not exist\).*nope\.png: no such file or folder"):
        find_images([tmp_path / "loop.jpg", tmp_path / "dangling.png", tmp_path / "nope.png"])
    with pytest.raises(ImageLoadError, match=r"dangling\.png: broken symlink"):
        load_image(tmp_path / "dangling.png")
