"""``gfi eval saliency``: per-image and set-level precision, recall, F-beta; the PR curve; failures."""

from __future__ import annotations

import json

import pytest

from tests.evaluation.helpers import evaluate, lines


def test_saliency(tmp_path, tiny, dataset_dir):
    sod = dataset_dir("sod")
    out = tmp_path / "sod"
    assert evaluate("saliency", tiny, data=sod, method="gradcam", out=out)
    s = json.loads((out / "summary.json").read_text())
    assert s["n_images"] == 2 and s["n_failed"] == 2  # c: no mask; d: mask of another size
    assert "d.png: mask is 10x10" in json.dumps(s["failures"])
    recs = [r for r in lines(out) if "error" not in r]
    assert s["f_beta"] == pytest.approx(sum(r["f_beta"] for r in recs) / 2)
    assert s["precision_set"] == pytest.approx(sum(r["tp"] for r in recs) / sum(r["pred"] for r in recs))
    assert (out / "pr_curve.png").is_file() and len(json.loads((out / "pr_curve.json").read_text())["recall"]) == 101
