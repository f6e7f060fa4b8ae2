"""Metric code against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from gfi.evaluation.metrics import (
    box_from_mask,
    box_union_fraction,
    f_beta,
    iou,
    is_difficult_pointing,
    localization_hits,
    pointing_hit,
    pr_counts,
    saliency_scores,
    spearman,
    ssim,
    step_masks,
    trapezoid_auc,
)


def test_tightest_box_and_iou():
    m = torch.zeros(6, 8, dtype=torch.bool)
    m[1, 2] = m[3, 5] = True
    assert box_from_mask(m).tolist() == [2, 1, 5, 3]
    assert box_from_mask(torch.zeros(3, 3, dtype=torch.bool)) is None
    # 2x2 boxes overlapping in one pixel: 1 / (4 + 4 - 1)
    assert iou(torch.tensor([0, 0, 1, 1]), torch.tensor([[1, 1, 2, 2], [0, 0, 1, 1]])).tolist() == \
        pytest.approx([1 / 7, 1.0])


def test_localization_hits_by_hand():
    sal = torch.zeros(10, 10)
    sal[2:5, 2:5] = 1.0  # 9 pixels of 1, mean 0.09
    sal[8, 8] = 0.5
    box = torch.tensor([[2, 2, 4, 4]])
    # alpha 0: the whole image (IoU 0.09); alpha 5: threshold 0.45 keeps (8, 8) too -> box 2..8 (IoU 9/49);
    # alpha 10: threshold 0.9 keeps only the square -> IoU 1
    assert localization_hits(sal, box, (0.0, 5.0, 10.0)).tolist() == [False, False, True]


def test_pointing_hit_euclidean_tolerance():
    sal = torch.zeros(30, 30)
    sal[10, 10] = 1  # x = 10, y = 10
    box = torch.tensor([[13, 14, 20, 20]])  # dx = 3, dy = 4: distance 5
    assert not pointing_hit(sal, box)
    assert pointing_hit(sal, box, tolerance=5) and not pointing_hit(sal, box, tolerance=4.9)
    assert pointing_hit(sal, torch.tensor([[10, 10, 10, 10]]))


def test_difficult_subset():
    assert box_union_fraction(torch.tensor([[0, 0, 4, 4], [3, 3, 4, 4]]), 10, 10) == 0.25
    small = torch.tensor([[0, 0, 3, 3]])  # 16 of 100 pixels
    assert is_difficult_pointing(small, 1, 10, 10)
    assert not is_difficult_pointing(small, 0, 10, 10)  # no distractor class
    assert not is_difficult_pointing(torch.tensor([[0, 0, 4, 4]]), 1, 10, 10)  # exactly a quarter


def test_saliency_scores_by_hand():
    sal = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # mean 0.25 -> threshold 0.5 keeps the top-left pixel
    gt = torch.tensor([[1, 1], [0, 0]])
    s = saliency_scores(sal, gt)
    assert s["precision"] == 1 and s["recall"] == 0.5
    assert s["f_beta"] == pytest.approx(1.3 * 0.5 / (0.3 + 0.5))
    assert s["mae"] == 0.25
    assert float(f_beta(0.5, 1.0)) == pytest.approx(0.65 / 1.15)
    assert float(f_beta(0.0, 0.0)) == 0
    tp, pred, ngt = pr_counts(torch.tensor([[0.2, 0.6], [0.9, 0.0]]), torch.tensor([[0, 1], [1, 1]]), (0.0, 0.5, 1.0))
    assert tp.tolist() == [3, 2, 0] and pred.tolist() == [4, 2, 0] and ngt == 3


def test_deletion_area_and_step_masks():
    assert trapezoid_auc(torch.tensor([1.0, 0.5, 0.0])) == pytest.approx(0.5)  # 2 steps
    assert trapezoid_auc(torch.tensor([1.0, 0.0, 0.0])) == pytest.approx(0.25)
    m = step_masks(torch.tensor([[0.9, 0.1], [0.5, 0.5]]), 2)
    assert m[0].sum() == 0 and m[2].all()
    assert m[1].tolist() == [[True, False], [True, False]]  # top 2: 0.9, then the first 0.5


def test_spearman_and_ssim():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert spearman(a, 2 * a) == pytest.approx(1) and spearman(a, -a) == pytest.approx(-1)
    # ties get average ranks: (0.5, 0.5, 2.5, 2.5) against (0, 1, 2, 3) -> 4 / (2 * sqrt(5))
    assert spearman(torch.tensor([0.0, 0, 1, 1]), torch.tensor([0.0, 1, 2, 3])) == pytest.approx(2 / math.sqrt(5))
    assert math.isnan(spearman(torch.zeros(4), a))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 12, generator=g)
    assert ssim(x, x) == pytest.approx(1)
    assert ssim(x, 1 - x) < 0
