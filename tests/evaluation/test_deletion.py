"""``gfi eval deletion``: the curves' ends against the model, and the areas from the lines."""

from __future__ import annotations

import json

import pytest
import torch

from gfi.evaluation.deletion import curves
from tests.evaluation.helpers import evaluate, lines


def test_deletion(tmp_path, tiny, dataset_dir):
    data = dataset_dir("imagenet")
    out = tmp_path / "del"
    assert evaluate("deletion", tiny, data=data, method="gradcam", steps="4", out=out)
    s = json.loads((out / "summary.json").read_text())
    rec = lines(out)[0]
    assert len(rec["deletion_curve"]) == 5 and s["n_images"] == 3
    assert s["deletion_auc"] == pytest.approx(sum(r["deletion_auc"] for r in lines(out) if "error" not in r) / 3)


def test_deletion_curve_ends(tiny):
    x = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(0))
    sal = torch.arange(16.0).view(4, 4)
    d, i = curves(tiny, x, sal, 2, steps=4)
    with torch.no_grad():
        p = tiny.scores(tiny(torch.stack([x, torch.zeros_like(x)])))[:, 2]
    assert d[0] == pytest.approx(float(p[0]), abs=1e-6) and d[-1] == pytest.approx(float(p[1]), abs=1e-6)
    assert i[-1] == pytest.approx(float(p[0]), abs=1e-6)
