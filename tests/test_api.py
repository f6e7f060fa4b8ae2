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
    from gfi.methods import InversionExplanation
    from gfi.viz.overlay import to_original_size

    e = InversionExplanation(maps=torch.rand(2, 3, 8, 8), targets=torch.zeros(2, 3, dtype=torch.long), method="x",
                             stage1_map=torch.rand(2, 8, 8))
    r = e.resize_to((20, 30))
    assert r.maps.shape == (2, 3, 20, 30) and r.stage1_map.shape == (2, 20, 30)
    torch.testing.assert_close(r.maps, to_original_size(e.maps, (20, 30)))
    assert float(r.maps.min()) >= 0 and float(r.maps.max()) <= 1 and e.maps.shape == (2, 3, 8, 8)


def test_method_specific_outputs_live_in_the_methods_own_part():
    """Every method's explanation has maps, targets, probs, collapsed and descriptions; only a mask
    method's has losses, only a method with a stage 1 has its map, only GFI's has w and the kept and
    removed scores; ``get`` reads any of them as None where the method has none."""
    from dataclasses import fields

    from gfi.methods import Explanation, GFIExplanation, InversionExplanation, MaskExplanation

    names = lambda cls: {f.name for f in fields(cls)}  # noqa: E731
    common = {"maps", "targets", "method", "probs", "collapsed", "target_descriptions"}
    assert names(Explanation) == common
    assert names(MaskExplanation) - common == {"loss_history"}
    assert names(InversionExplanation) - names(MaskExplanation) == {"stage1_map", "stage1_collapsed"}
    assert names(GFIExplanation) - names(InversionExplanation) == {"weights", "stage1_weights", "prob_kept",
                                                                   "prob_removed"}
    plain = Explanation(maps=torch.rand(1, 1, 4, 4), targets=torch.zeros(1, 1, dtype=torch.long), method="x")
    assert plain.get("stage1_map") is None and plain.get("weights") is None and not hasattr(plain, "prob_kept")
    g = GFIExplanation(maps=torch.rand(2, 1, 4, 4), targets=torch.zeros(2, 1, dtype=torch.long), method="gfi",
                       weights=torch.rand(2, 1, 5), loss_history={"stage1": torch.rand(3, 2)})
    both = Explanation.cat([g, g])
    assert type(both) is GFIExplanation and both.weights.shape == (4, 1, 5)
    assert both.loss_history["stage1"].shape == (3, 4) and both.get("weights") is both.weights
