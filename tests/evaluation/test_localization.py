"""``gfi eval localization``: the alpha sweep, the tuning split, and the error from the lines."""

from __future__ import annotations

import numpy as np
import pytest

from gfi.evaluation.experiment import EvalError
from gfi.evaluation.localization import error_curve, parse_alphas, split_tune
from tests.evaluation.helpers import evaluate, lines, summary


def test_alphas_and_tune_split(tmp_path):
    assert parse_alphas(None)[:3] == [0.0, 0.5, 1.0] and len(parse_alphas(None)) == 21
    assert parse_alphas("0:0.25:1") == [0, 0.25, 0.5, 0.75, 1.0]
    assert parse_alphas("2,1") == [1.0, 2.0]
    with pytest.raises(EvalError, match="--alphas"):
        parse_alphas("1:0:2")
    recs = [{"index": i, "key": f"k{i}", "image": f"/d/k{i}.JPEG", "hits": [i % 2, 1]} for i in range(4)]
    tune, report = split_tune(recs, "0.5")
    assert [r["key"] for r in tune] == ["k0", "k1"] and [r["key"] for r in report] == ["k2", "k3"]
    f = tmp_path / "tune.txt"
    f.write_text("k3.JPEG\nk0\n")
    tune, report = split_tune(recs, str(f))
    assert [r["key"] for r in tune] == ["k0", "k3"]
    assert error_curve(report) == [0.5, 0.0]
    with pytest.raises(EvalError, match="--tune-split"):
        split_tune(recs, "1.5")


def test_localization_records_failures_and_maps(tmp_path, tiny, dataset_dir):
    data = dataset_dir("imagenet")
    out = tmp_path / "loc"
    assert evaluate("localization", tiny, data=data, method="gradcam", out=out, batch_size=2, tune_split="0.5")
    s = summary(out)
    assert s["n_images"] == 3 and s["n_failed"] == 3
    errors = " ".join(f["error"] for f in s["failures"])
    assert "img_c.xml: malformed XML" in errors and "img_d.xml: annotation file is missing" in errors
    assert "n09999999" in errors
    recs = [r for r in lines(out) if "error" not in r]
    assert [r["key"] for r in recs] == ["img_a", "img_b", "img_e"]
    assert len(recs[0]["hits"]) == 21 and recs[0]["targets"] == [1]
    # error at the chosen alpha from the report part's lines, alpha minimising the tune part's error
    tune, report = recs[:2], recs[2:]  # round(0.5 * 3) = 2 tuning images
    assert s["n_tune"] == 2 and s["n_report"] == 1
    tune_err = [1 - sum(r["hits"][k] for r in tune) / 2 for k in range(21)]
    a = s["alphas"].index(s["alpha"])
    assert a == tune_err.index(min(tune_err))
    assert s["error"] == 1 - report[0]["hits"][a]
    assert (out / "localization_error.png").stat().st_size > 1000
    m = np.load(out / "maps" / "img_a_1.npy")
    assert m.dtype == np.float32 and m.shape == (24, 32) and m.min() >= 0 and m.max() <= 1
    assert s["options"]["method"] == "gradcam" and s["seconds_per_image"] is not None


def test_an_alpha_outside_the_sweep_is_refused(tmp_path, tiny, dataset_dir):
    with pytest.raises(EvalError, match="not in the sweep"):
        evaluate("localization", tiny, data=dataset_dir("imagenet"), method="center", out=tmp_path / "o",
                 alpha="0.3")
