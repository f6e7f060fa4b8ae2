"""The objectives of gfi.objectives by hand: inversion error, L1, f_c, Eq. (9)'s terms, total variation."""

import math

import pytest
import torch

from gfi.objectives import (
    class_scores,
    contrast_term,
    inversion_error,
    l1_norm,
    mask_overlap,
    other_targets,
    others_removed_term,
    target_scores,
    target_terms,
    total_variation,
)


def test_total_variation_is_the_perimeter_in_image_sides():
    m = torch.zeros(2, 8, 8)
    m[0, 2:6, 2:6] = 1  # one square of side 4/8: perimeter 4 * 0.5 = 2
    m[1, 0:2, 0:2] = 1  # two squares of side 2/8 in opposite corners: 2 + 2 edges each
    m[1, 6:8, 6:8] = 1
    # by hand: sum of |vertical| + |horizontal| steps over sqrt(64) = 8
    assert torch.allclose(total_variation(m, per_side=True), torch.tensor([16 / 8, 8 / 8]))
    assert total_variation(torch.ones(3, 5, 5), per_side=True).abs().max() == 0
    # resolution-free: the same square at 4x the resolution
    big = torch.zeros(32, 32)
    big[8:24, 8:24] = 1
    assert torch.isclose(total_variation(big, per_side=True), torch.tensor(2.0))


def test_beta_total_variation_by_hand():
    """Fong & Vedaldi's Eq. (4) TV: sum of |steps|^beta, no scaling."""
    m = torch.tensor([[0.0, 0.5], [1.0, 1.0]])
    # vertical steps: 1, 0.5; horizontal: 0.5, 0 -> beta 3: 1 + 0.125 + 0.125 + 0 = 1.25
    assert total_variation(m, 3.0).item() == pytest.approx(1.25)
    assert total_variation(m).item() == pytest.approx(2.0)


def test_the_two_total_variations_are_the_old_formulas_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    m = torch.rand(2, 3, 9, 7, generator=g)
    h, w = m.shape[-2:]
    gfi_tv = ((m[..., 1:, :] - m[..., :-1, :]).abs().sum((-2, -1))
              + (m[..., :, 1:] - m[..., :, :-1]).abs().sum((-2, -1))) / float(h * w) ** 0.5
    mp_tv = ((m[..., 1:, :] - m[..., :-1, :]).abs().pow(3.0).sum((-2, -1))
             + (m[..., :, 1:] - m[..., :, :-1]).abs().pow(3.0).sum((-2, -1)))
    assert torch.equal(total_variation(m, per_side=True), gfi_tv)
    assert torch.equal(total_variation(m, 3.0), mp_tv)


def test_inversion_error_sum_and_relative_by_hand():
    f_x = torch.tensor([[1.0, 2.0], [0.0, 3.0]])
    f_phi = torch.tensor([[0.0, 2.0], [0.0, 1.0]])
    assert torch.equal(inversion_error(f_phi, f_x, relative=False), torch.tensor([1.0, 4.0]))
    assert torch.allclose(inversion_error(f_phi, f_x, relative=True), torch.tensor([1 / 5, 4 / 9]))


def test_l1_norm_readings():
    w = torch.tensor([[0.5, 0.0, 1.5, 2.0]])
    assert l1_norm(w).item() == 4.0
    assert l1_norm(w, mean=True).item() == 1.0
    z = torch.zeros(3, requires_grad=True)
    l1_norm(z, grad_at_zero="one").backward()
    assert torch.equal(z.grad, torch.ones(3))
    z.grad = None
    l1_norm(z, grad_at_zero="zero").backward()
    assert torch.equal(z.grad, torch.zeros(3))
    assert l1_norm(torch.tensor([-1.0, 2.0]), nonnegative=False).item() == 3.0  # |w| for signed weights


def test_class_scores_and_target_scores_by_hand():
    z = torch.tensor([[2.0, 0.0, -1.0]])
    e = torch.exp(torch.tensor([2.0, 0.0, -1.0]))
    assert torch.allclose(class_scores(z, multilabel=False), (e / e.sum())[None])
    assert torch.allclose(class_scores(z, multilabel=True), torch.sigmoid(z))
    t = torch.tensor([1])
    assert target_scores(z, t, multilabel=False).item() == pytest.approx((e[1] / e.sum()).item())
    assert target_scores(z, t, multilabel=False, kind="logit").item() == 0.0


def test_classifier_scores_are_the_objectives_f_c(tiny):
    z = torch.randn(3, 5)
    assert torch.equal(tiny.scores(z), class_scores(z, multilabel=False))


def test_target_terms_prob_and_log_by_hand():
    logits = torch.tensor([[[[2.0, 0.0, -1.0]]], [[[0.5, 1.5, 0.0]]]])  # (2, B=1, K=1, 3)
    t = torch.tensor([[0]])
    p_kept = torch.softmax(logits[0, 0, 0], -1)[0]
    p_removed = torch.softmax(logits[1, 0, 0], -1)[0]
    gain, loss = target_terms(logits, t, multilabel=False, score="prob")
    assert gain.item() == pytest.approx(p_kept.item(), rel=1e-6)
    assert loss.item() == pytest.approx(p_removed.item(), rel=1e-6)
    gain, loss = target_terms(logits, t, multilabel=False, score="log")
    assert gain.item() == pytest.approx(torch.log(p_kept).item(), rel=1e-6)
    assert loss.item() == pytest.approx(-torch.log(1 - p_removed).item(), rel=1e-6)
    gain, loss = target_terms(logits, t, multilabel=True, score="log")
    assert gain.item() == pytest.approx(torch.log(torch.sigmoid(torch.tensor(2.0))).item(), rel=1e-6)
    assert loss.item() == pytest.approx(-torch.log(1 - torch.sigmoid(torch.tensor(0.5))).item(), rel=1e-6)


def test_contrast_term_by_hand():
    """Row k of image b: mean over the other targets j of -log(1 - f_j(kept image of k))."""
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0]]])  # (B=1, K=3, n=3)
    targets = torch.tensor([[0, 1, 2]])
    for multilabel, f in ((False, logits.softmax(-1)[0]), (True, torch.sigmoid(logits)[0])):
        want = torch.stack([-sum(torch.log(1 - f[k, j]) for j in range(3) if j != k) / 2 for k in range(3)])
        torch.testing.assert_close(contrast_term(logits, other_targets(targets), multilabel)[0], want)
    assert torch.equal(contrast_term(logits[:, :1], other_targets(targets[:, :1]), False), torch.zeros(1, 1))



def test_others_removed_term_by_hand():
    """Row k of image b: mean over the other targets j of -log f_j(removed image of k)."""
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0]]])  # (B=1, K=3, n=3)
    targets = torch.tensor([[0, 1, 2]])
    for multilabel, f in ((False, logits.softmax(-1)[0]), (True, torch.sigmoid(logits)[0])):
        want = torch.stack([-sum(torch.log(f[k, j]) for j in range(3) if j != k) / 2 for k in range(3)])
        torch.testing.assert_close(others_removed_term(logits, other_targets(targets), multilabel)[0], want)
    # e.g. row 2 (uniform logits, softmax): -log(1/3) for both others
    assert others_removed_term(logits, other_targets(targets), False)[0, 2].item() == pytest.approx(math.log(3.0))
    assert torch.equal(others_removed_term(logits[:, :1], other_targets(targets[:, :1]), False), torch.zeros(1, 1))


def test_other_targets_lists_each_rows_others_in_order():
    t = torch.tensor([[4, 7, 9], [1, 2, 3]])
    assert other_targets(t).tolist() == [[[7, 9], [4, 9], [4, 7]], [[2, 3], [1, 3], [1, 2]]]
    assert other_targets(t[:, :1]).shape == (2, 1, 0)


def test_mask_overlap_by_hand():
    """Row k: mean over the other masks j of mean(m_k * m_j)."""
    m = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]]])  # (1, 3, 2, 2)
    # k=0 shares pixel (0,0) with mask 1 (1/4), nothing with mask 2 -> (1/4 + 0) / 2
    # k=1: with 0 -> 1/4, with 2 -> 0; k=2: nothing
    torch.testing.assert_close(mask_overlap(m), torch.tensor([[0.125, 0.125, 0.0]]))
    assert torch.equal(mask_overlap(m[:, :1]), torch.zeros(1, 1))
