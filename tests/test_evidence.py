"""The evidence check (gfi.evidence): on a model that looks at one quadrant only, a map on that
quadrant holds the class's evidence, the same map placed by hand on the opposite quadrant does not,
an all-zero map is empty; the scores are those of Eq. 2 and 4 with the map's upper half under the
check's blur, computed in one forward of 2 * B * K images; the verdict depends on the map's ranking
only (a sparse, gradient-like map on the quadrant holds)."""

from __future__ import annotations

import pytest
import torch

from gfi.evidence import (
    BLUR_KERNEL,
    BLUR_SIGMA,
    Evidence,
    advice,
    background,
    check_evidence,
    empty_maps,
    evidence_of,
    flat_maps,
    upper_half,
)
from gfi.masks.backgrounds import gaussian_blur
from gfi.methods.registry import get_method
from tests.methods.region_net import SIZE, region_classifier, region_images

HALF = SIZE // 2


def planted_maps(b: int) -> torch.Tensor:
    """(B, 3, H, W): the quadrant the model sees, the opposite quadrant (placed there by hand), zeros."""
    m = torch.zeros(b, 3, SIZE, SIZE)
    m[:, 0, :HALF, :HALF] = 1.0
    m[:, 1, HALF:, HALF:] = 1.0
    return m


def test_a_map_on_the_evidence_holds_it_one_on_the_wrong_region_does_not_and_zeros_are_empty():
    clf, x = region_classifier(), region_images(2)
    ev = check_evidence(clf, x, planted_maps(2), torch.zeros(2, 3, dtype=torch.long))
    assert ev.holds.tolist() == [[True, False, False]] * 2
    assert [ev.problem(0, k) for k in range(3)] == [None, "kept_below_removed", "empty"]
    assert (ev.prob_kept[:, 0] > ev.prob_removed[:, 0]).all() and (ev.prob_kept[:, 1] < ev.prob_removed[:, 1]).all()
    rec = ev.record(0, 1)
    assert rec["holds"] is False and rec["problem"] == "kept_below_removed"
    assert rec["prob_kept"] == pytest.approx(float(ev.prob_kept[0, 1]), abs=1e-6)


def test_the_scores_are_eq2_and_eq4_of_the_upper_half_under_the_checks_blur_computed_by_hand():
    clf, x = region_classifier(), region_images(2)
    m = torch.rand(2, 2, SIZE, SIZE, generator=torch.Generator().manual_seed(1))  # a soft map, no ties
    t = torch.tensor([[0, 2], [1, 0]])
    ev = check_evidence(clf, x, m, t)
    p = gaussian_blur(x, BLUR_KERNEL, BLUR_SIGMA)
    assert torch.equal(background(x), p)
    for b in range(2):
        for k in range(2):
            u = (m[b, k] > m[b, k].flatten().median()).float()  # the pixels above the map's median
            assert int(u.sum()) == SIZE * SIZE // 2
            kept = x[b] * u + p[b] * (1 - u)
            removed = x[b] * (1 - u) + p[b] * u
            with torch.no_grad():
                want = clf.scores(clf(torch.stack([kept, removed])))[:, t[b, k]]
            assert ev.prob_kept[b, k].item() == pytest.approx(want[0].item(), abs=1e-6)
            assert ev.prob_removed[b, k].item() == pytest.approx(want[1].item(), abs=1e-6)


def test_the_verdict_depends_on_the_maps_ranking_only():
    """A sparse map on the quadrant (a few bright pixels, faint values elsewhere: a gradient map's shape)
    holds the evidence as the full quadrant does, and any monotone rescaling gives the same numbers;
    as a soft mask it would keep almost nothing (its kept image all blur) and fail."""
    clf, x = region_classifier(), region_images(2)
    g = torch.Generator().manual_seed(2)
    sparse = torch.rand(2, 1, SIZE, SIZE, generator=g) * 0.01
    sparse[:, :, :HALF, :HALF] += torch.rand(2, 1, HALF, HALF, generator=g) * 0.02 + 0.01
    sparse[:, :, 2, 3] = 1.0
    t = torch.zeros(2, 1, dtype=torch.long)
    ev = check_evidence(clf, x, sparse, t)
    assert ev.holds.all()
    again = check_evidence(clf, x, sparse ** 3 * 5 + 2, t)
    assert torch.equal(again.prob_kept, ev.prob_kept) and torch.equal(again.prob_removed, ev.prob_removed)
    p = background(x)
    with torch.no_grad():  # the same map as a soft mask keeps almost nothing
        soft = (clf.scores(clf(x * sparse + p * (1 - sparse)))[:, 0],
                clf.scores(clf(x * (1 - sparse) + p * sparse))[:, 0])
    assert (soft[0] < soft[1]).all()


def test_the_upper_half_and_flat_maps():
    m = torch.tensor([[0.0, 0.1], [0.5, 0.9]])
    assert upper_half(m).tolist() == [[0.0, 0.0], [1.0, 1.0]]
    plateau = torch.tensor([[1.0, 1.0], [1.0, 0.2]])  # the top value holds 3 of 4 pixels: the plateau
    assert upper_half(plateau).tolist() == [[1.0, 1.0], [1.0, 0.0]]
    sparse = torch.zeros(4, 4)
    sparse[0, 0] = 0.3  # most pixels 0: the map marks only what lies above them
    assert upper_half(sparse).sum() == 1
    assert flat_maps(torch.stack([m, torch.zeros(2, 2), torch.full((2, 2), 0.4)])).tolist() == [False, True, True]


def test_one_forward_of_2bk_images_without_gradients_and_the_model_left_as_it_was():
    clf, x = region_classifier(), region_images(3)
    calls = []
    handle = clf.model.register_forward_hook(lambda mod, inp, out: calls.append((inp[0].shape[0], mod.training,
                                                                                 torch.is_grad_enabled())))
    clf.model.train()
    try:
        check_evidence(clf, x, planted_maps(3), torch.zeros(3, 3, dtype=torch.long))
    finally:
        handle.remove()
    assert calls == [(2 * 3 * 3, False, False)]
    assert clf.model.training  # the user's mode is restored


def test_evidence_of_an_explanation_is_the_check_of_its_maps():
    """GFI's own prob_kept / prob_removed are of its soft mask under its stage-2 background: another
    question; the check is computed for every method alike."""
    clf, x = region_classifier(), region_images(2)
    for method, settings in (("gfi", {"iters1": 3, "iters2": 3}), ("gradcam", {})):
        ex = get_method(method, clf, **settings)
        e = ex.explain(x, [[0], [0]])
        ev = evidence_of(ex, x, e)
        want = check_evidence(clf, x, e.maps, e.targets)
        assert torch.equal(ev.prob_kept, want.prob_kept) and torch.equal(ev.prob_removed, want.prob_removed)


def test_empty_maps_and_a_batch_without_targets():
    m = torch.zeros(2, 1, 4, 4)
    m[0, 0, 1, 1] = 1e-6
    assert empty_maps(m).tolist() == [[False], [True]] and flat_maps(m).tolist() == [[False], [True]]
    clf = region_classifier()
    ev = check_evidence(clf, torch.rand(0, 3, SIZE, SIZE), torch.zeros(0, 1, SIZE, SIZE), torch.zeros(0, 1).long())
    assert isinstance(ev, Evidence) and len(ev) == 0


def test_mismatched_shapes_are_refused():
    clf = region_classifier()
    with pytest.raises(ValueError, match="do not agree"):
        check_evidence(clf, torch.rand(2, 3, SIZE, SIZE), torch.rand(2, 1, SIZE, SIZE), torch.zeros(2, 2).long())


def test_advice_follows_the_methods_settings_not_its_name():
    clf = region_classifier()
    gfi, gradcam = get_method("gfi", clf), get_method("gradcam", clf)
    assert "iters2" in advice(gfi, "kept_below_removed") and "joint=contrastive" in advice(gfi, "kept_below_removed")
    assert "iters2" not in advice(gradcam, "kept_below_removed") and "gfi" in advice(gradcam, "kept_below_removed")
    assert "weights" in advice(gfi, "empty")
    assert "only p=0.003" in advice(gradcam, "kept_below_removed", 0.003)
    assert "only p=" not in advice(gradcam, "kept_below_removed", 0.9)
