"""``gfi eval pointing``: the per-category mean, both protocols, VOC's multi-label targets."""

from __future__ import annotations

import json

import pytest

from gfi.evaluation.pointing import class_mean
from tests.evaluation.helpers import evaluate, lines


def test_pointing_class_mean():
    points = [{"class": 0, "hit": 1}, {"class": 0, "hit": 0}, {"class": 1, "hit": 1}]
    acc, per = class_mean(points, "hit")
    assert per == {0: 0.5, 1: 1.0} and acc == 0.75  # per-image rate would be 2/3


def test_pointing_on_voc_multilabel(tmp_path, tiny20, tiny, dataset_dir):
    data = dataset_dir("voc")
    out = tmp_path / "voc"
    assert evaluate("pointing", tiny20, data=data, method="gradcam", out=out, protocol="torchray")
    s = json.loads((out / "summary.json").read_text())
    assert s["n_images"] == 2 and s["n_failed"] == 2  # 000002 all difficult, 000004 no annotation
    recs = [r for r in lines(out) if "error" not in r]
    assert [p["class"] for p in recs[1]["points"]] == [1, 6]  # bicycle and car: every class present
    pts = [p for r in recs for p in r["points"]]
    assert s["torchray"]["accuracy_per_image"] == sum(p["hit_tol"] for p in pts) / len(pts)
    assert s["accuracy"] == s["torchray"]["accuracy"]
    with pytest.raises(ValueError, match="voc-head"):
        evaluate("pointing", tiny, data=data, method="gradcam", out=tmp_path / "x")
