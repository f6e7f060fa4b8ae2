"""``gfi eval adversarial``: FGSM raises the loss; the summary's rates."""

from __future__ import annotations

import json

import pytest
import torch

from gfi.errors import SettingsError
from gfi.evaluation.adversarial import fgsm
from gfi.evaluation.registry import EXPERIMENTS
from tests.evaluation.helpers import evaluate


def test_adversarial(tmp_path, tiny, dataset_dir):
    data = dataset_dir("imagenet")
    out = tmp_path / "adv"
    assert evaluate("adversarial", tiny, data=data, method="gradcam", epsilon="0.5", out=out)
    s = json.loads((out / "summary.json").read_text())
    assert 0 <= s["accuracy"] <= 1 and 0 <= s["prediction_changed"] <= 1 and s["epsilon"] == 0.5


def test_epsilon_outside_pixel_units_is_refused():
    with pytest.raises(SettingsError, match="epsilon"):
        EXPERIMENTS["adversarial"].options(epsilon="2")


def test_fgsm_raises_the_loss(tiny):
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    y = torch.tensor([0, 3])
    xa = fgsm(tiny, x, y, 0.05)
    assert (xa - x).abs().max() == pytest.approx(0.05, abs=1e-6)
    with torch.no_grad():
        before = tiny.scores(tiny(x)).gather(1, y[:, None])
        after = tiny.scores(tiny(xa)).gather(1, y[:, None])
    assert (after < before).all()
