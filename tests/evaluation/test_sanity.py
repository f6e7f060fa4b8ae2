"""``gfi eval sanity``: the cascade randomises modules from the output backwards."""

from __future__ import annotations

import json

from tests.evaluation.helpers import evaluate


def test_sanity(tmp_path, tiny, dataset_dir):
    data = dataset_dir("imagenet")
    out = tmp_path / "san"
    assert evaluate("sanity", tiny, data=data, method="gradcam", levels="2", out=out)
    s = json.loads((out / "summary.json").read_text())
    assert [lv["layer"] for lv in s["levels"]] == ["fc", "conv"]
