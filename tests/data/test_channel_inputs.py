"""Inputs beyond RGB: ``load_image(path, channels=C)`` for grey files (8- and 16-bit), colour files
made grey, ``.npy`` arrays of any number of channels, multi-page TIFFs and C-band pictures; values
are checked against the values written."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from gfi.data.images import ImageLoadError, find_images, image_size, load_image


def grey(h=40, w=48, seed=0):
    return (np.random.default_rng(seed).random((h, w)) * 255).astype(np.uint8)


def test_a_grey_png_is_one_channel_for_a_1_channel_model(tmp_path):
    arr = grey()
    Image.fromarray(arr).save(tmp_path / "g.png")
    x = load_image(tmp_path / "g.png", channels=1)
    assert x.shape == (1, 40, 48) and x.dtype == torch.float32
    torch.testing.assert_close(x[0], torch.from_numpy(arr).float() / 255)
    torch.testing.assert_close(load_image(tmp_path / "g.png")[0], x[0])  # RGB repeats this very grey


def test_a_16_bit_grey_png_keeps_its_levels_in_0_1(tmp_path):
    levels = np.array([[0, 1, 255, 256], [4095, 32768, 65534, 65535]] * 4, dtype=np.uint16).repeat(3, 1)
    Image.fromarray(levels).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    x = load_image(tmp_path / "g16.png", channels=1)
    torch.testing.assert_close(x[0], torch.from_numpy(levels.astype(np.float32) / 65535))
    assert float(x.max()) == 1.0 and float(x.min()) == 0.0


def test_a_colour_file_for_a_1_channel_model_is_its_luma_with_a_warning(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("gfi"), "propagate", True)  # a CLI test before may have turned it off
    colour = (np.random.default_rng(1).random((32, 40, 3)) * 255).astype(np.uint8)
    Image.fromarray(colour).save(tmp_path / "c.png")
    with caplog.at_level(logging.WARNING, logger="gfi"):
        x = load_image(tmp_path / "c.png", channels=1)
    luma = np.asarray(Image.fromarray(colour).convert("L"), dtype=np.float32) / 255
    torch.testing.assert_close(x[0], torch.from_numpy(luma))
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'c.png'}: a colour image, converted to grey (its luma, ITU-R 601-2) for a 1-channel model"]
    caplog.clear()
    grey_rgb = np.repeat(grey(32, 40)[..., None], 3, 2)  # a grey picture saved as RGB: no warning
    Image.fromarray(grey_rgb).save(tmp_path / "gr.png")
    with caplog.at_level(logging.WARNING, logger="gfi"):
        x = load_image(tmp_path / "gr.png", channels=1)
    assert not caplog.records
    torch.testing.assert_close(x[0], torch.from_numpy(grey_rgb[..., 0]).float() / 255)


def test_npy_arrays_in_either_layout(tmp_path):
    chw = np.random.default_rng(2).random((4, 20, 24)).astype(np.float32)
    np.save(tmp_path / "chw.npy", chw)
    np.save(tmp_path / "hwc.npy", np.moveaxis(chw, 0, -1))
    for name in ("chw.npy", "hwc.npy"):
        for channels in (4, None):
            torch.testing.assert_close(load_image(tmp_path / name, channels=channels), torch.from_numpy(chw))
    assert image_size(tmp_path / "hwc.npy") == (20, 24)
    np.save(tmp_path / "hw.npy", chw[0].astype(np.float64))
    torch.testing.assert_close(load_image(tmp_path / "hw.npy", channels=1), torch.from_numpy(chw[:1]))
    levels = (chw * 65535).astype(np.uint16)
    np.save(tmp_path / "u16.npy", levels)
    torch.testing.assert_close(load_image(tmp_path / "u16.npy"), torch.from_numpy(levels / np.float32(65535)))


def test_npy_arrays_that_cannot_be_read_as_c_channels_in_0_1_are_refused(tmp_path):
    np.save(tmp_path / "a.npy", np.random.default_rng(0).random((4, 20, 24)).astype(np.float32))
    with pytest.raises(ImageLoadError, match=r"has shape \(4, 20, 24\), but the model takes 3 channel\(s\)"):
        load_image(tmp_path / "a.npy", channels=3)
    np.save(tmp_path / "big.npy", np.full((3, 20, 24), 255.0, np.float32))
    with pytest.raises(ImageLoadError, match=r"values lie in \[255, 255\]; gfi takes floats in \[0, 1\]"):
        load_image(tmp_path / "big.npy")
    nan = np.zeros((3, 20, 24), np.float32)
    nan[0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    with pytest.raises(ImageLoadError, match="NaN or inf"):
        load_image(tmp_path / "nan.npy")
    np.save(tmp_path / "square.npy", np.zeros((20, 24, 20), np.float32))
    with pytest.raises(ImageLoadError, match="could be"):
        load_image(tmp_path / "square.npy", channels=20)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ImageLoadError, match=r"cannot read as a \.npy array"):
        load_image(tmp_path / "obj.npy")
    np.save(tmp_path / "vol.npy", np.zeros((1, 4, 20, 24), np.float32))
    with pytest.raises(ImageLoadError, match="3-D volumes are not supported"):
        load_image(tmp_path / "vol.npy")


def test_a_large_npy_is_reduced_to_max_side(tmp_path):
    arr = np.random.default_rng(0).random((2, 200, 100)).astype(np.float32)
    np.save(tmp_path / "a.npy", arr)
    x = load_image(tmp_path / "a.npy", max_side=50)
    assert x.shape == (2, 50, 25)
    torch.testing.assert_close(x[:, 0, 0], torch.from_numpy(arr[:, :4, :4].mean((1, 2))))  # a 4 x 4 box


def test_a_multi_page_tiff_gives_one_channel_per_page(tmp_path):
    pages = [(np.random.default_rng(i).random((20, 24)) * 65535).astype(np.uint16) for i in range(4)]
    images = [Image.fromarray(p) for p in pages]
    images[0].save(tmp_path / "bands.tif", save_all=True, append_images=images[1:])
    x = load_image(tmp_path / "bands.tif", channels=4)
    torch.testing.assert_close(x, torch.from_numpy(np.stack(pages).astype(np.float32) / 65535))
    with pytest.raises(ImageLoadError, match=r"has 4 band\(s\), but the model takes 5 channels"):
        load_image(tmp_path / "bands.tif", channels=5)


def test_a_4_band_picture_keeps_its_alpha_for_a_4_channel_model(tmp_path):
    rgba = (np.random.default_rng(3).random((20, 24, 4)) * 255).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png", channels=4)
    torch.testing.assert_close(x, torch.from_numpy(rgba).permute(2, 0, 1).float() / 255)
    Image.fromarray(rgba[..., :3]).save(tmp_path / "rgb.png")
    with pytest.raises(ImageLoadError, match=r"has 3 band\(s\), but the model takes 4 channels.*\.npy"):
        load_image(tmp_path / "rgb.png", channels=4)


def test_a_tiff_pillow_cannot_read_is_refused_naming_the_ways_out(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "b5.tif", np.zeros((5, 20, 24), np.uint8), photometric="minisblack",
                     planarconfig="separate")
    with pytest.raises(ImageLoadError) as exc:
        load_image(tmp_path / "b5.tif", channels=5)
    message = str(exc.value)
    assert "Pillow cannot read this TIFF" in message and "pages of one TIFF" in message and ".npy" in message
    assert "\n" not in message


def test_folders_list_npy_arrays_too(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((1, 20, 24), np.float32))
    Image.fromarray(grey()).save(tmp_path / "b.png")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in find_images([tmp_path])] == ["a.npy", "b.png"]
