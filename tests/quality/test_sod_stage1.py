"""Stage 1 of the default finds the salient object (Sec. 4.4.2, Fig. 8) on real SOD images: pins
the stage-1 area term (``area1``, docs/METHOD.md). Without it the stage-1 map spreads over the
background and twice its mean keeps nothing on 38 of the 100 dev images."""

import pytest
import torch
import torch.nn.functional as F

from gfi.data import load_image
from gfi.data.sod import SalientObjects, read_mask
from gfi.evaluation.metrics import center_prior, saliency_scores
from gfi.methods.gfi import GFIConfig, GuidedFeatureInversion
from tests.conftest import need_shared

# the slow tier (python -m pytest -m slow; CI runs it):
# stage 1 over the salient-object images, about a minute on 2 cores
pytestmark = pytest.mark.slow

N_IMAGES = 12


@pytest.fixture(scope="module")
def sod_scores(lite0):
    ds = SalientObjects(need_shared("sod-dev"))
    stage1 = GuidedFeatureInversion(lite0, GFIConfig(stage2=False))
    ours, centre = [], []
    for i in range(N_IMAGES):
        s = ds[i]
        img = load_image(s.path)
        gt = read_mask(s.mask_path)
        e = stage1.explain(lite0.prepare(img))
        sal = F.interpolate(e.stage1_map[:1, None], size=img.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
        ours.append(saliency_scores(sal, gt))
        centre.append(saliency_scores(center_prior(*img.shape[-2:]), gt))
    return ours, centre


def mean(rows, key):
    return float(torch.tensor([r[key] for r in rows]).mean())


def test_stage1_binarization_is_never_empty(sod_scores):
    ours, _ = sod_scores
    assert all(r["precision"] > 0 for r in ours), [round(r["precision"], 3) for r in ours]


def test_stage1_beats_the_centre_prior_on_mae(sod_scores):
    ours, centre = sod_scores
    assert mean(ours, "mae") < mean(centre, "mae") - 0.02, (mean(ours, "mae"), mean(centre, "mae"))


def test_stage1_f_beta_is_that_of_a_foreground_detector(sod_scores):
    ours, centre = sod_scores
    assert mean(ours, "f_beta") > 0.5, (mean(ours, "f_beta"), mean(centre, "f_beta"))
