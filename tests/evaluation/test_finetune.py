"""``gfi eval voc-head``: average precision by hand, typed options (the run on real data is in
test_shared_data.py)."""

from __future__ import annotations

import pytest
import torch

from gfi.errors import SettingsError
from gfi.evaluation.experiment import EvalError, EvalRun
from gfi.evaluation.finetune import VOCHeadOptions, average_precision
from gfi.evaluation.registry import VOC_HEAD


def test_average_precision_by_hand():
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.1, 0.3]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    weights = torch.ones(3, 2)
    ap = average_precision(scores, labels, weights)
    assert ap[0] == pytest.approx((1 / 1 + 2 / 3) / 2) and ap[1] is None  # no positive: no AP
    weights[1, 0] = 0  # a difficult-only class is left out of the ranking
    assert average_precision(scores, labels, weights)[0] == pytest.approx(1.0)


def test_voc_head_options_are_typed(tmp_path):
    opts = VOC_HEAD.options({"epochs": "3", "lr": "1e-3"})
    assert isinstance(opts, VOCHeadOptions) and (opts.epochs, opts.lr, opts.split) == (3, 1e-3, "trainval")
    with pytest.raises(SettingsError, match="epochs"):
        VOC_HEAD.options(epochs="0")
    (tmp_path / "voc_head.pt").write_bytes(b"")
    with pytest.raises(EvalError, match="exists"):
        VOC_HEAD.run(EvalRun(data=tmp_path, out=tmp_path), opts)
    assert VOC_HEAD.headline({"checkpoint": "h.pt", "train_map": 0.5, "n_images": 6}) == \
        "voc-head: h.pt train mAP=0.5 n_images=6"
