"""The one-line Python API (issue 16): ``gfi.explain``, ``Explanation.resize_to``, ``gfi.save_overlay``."""

import json

import torch
from PIL import Image

import gfi
from tests.conftest import ASSETS, REPO

BOXES = json.loads((REPO / "tests" / "fixtures" / "boxes.json").read_text())["dog_cat.jpg"]


def test_explain_in_one_call_returns_maps_at_the_images_size_on_the_right_objects(tmp_path):
    e = gfi.explain(ASSETS / "dog_cat.jpg", "gradcam", target=["golden retriever", "tabby"])
    w, h = Image.open(ASSETS / "dog_cat.jpg").size
    assert e.maps.shape == (1, 2, h, w) and e.targets.tolist() == [[207, 281]]
    for k, obj in enumerate(BOXES):
        y, x = divmod(int(e.maps[0, k].argmax()), w)
        x0, y0, x1, y1 = obj["box"]
        assert x0 <= x <= x1 and y0 <= y <= y1, (obj["object"], x, y)
    out = gfi.save_overlay(tmp_path / "o.png", gfi.load_image(ASSETS / "dog_cat.jpg"), e.maps[0, 1], title="tabby")
    assert Image.open(out).size[0] > 300


def test_resize_to_is_the_outputs_resize():
    from gfi.viz.overlay import to_original_size

    e = gfi.Explanation(maps=torch.rand(2, 3, 8, 8), targets=torch.zeros(2, 3, dtype=torch.long), method="x",
                        stage1_map=torch.rand(2, 8, 8))
    r = e.resize_to((20, 30))
    assert r.maps.shape == (2, 3, 20, 30) and r.stage1_map.shape == (2, 20, 30)
    torch.testing.assert_close(r.maps, to_original_size(e.maps, (20, 30)))
    assert float(r.maps.min()) >= 0 and float(r.maps.max()) <= 1 and e.maps.shape == (2, 3, 8, 8)
