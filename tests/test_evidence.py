"""The evidence check (gfi.evidence): on a model that looks at one quadrant only, a map on that
quadrant holds the class's evidence, the same map placed by hand on the opposite quadrant does not,
an all-zero map is empty; the scores are those of Eq. 2 and 4 under the check's blur, computed in one
forward of 2 * B * K images, and GFI's own scores are reused only where its background is the check's."""

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
    reuses_scores,
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
    assert not ev.reused
    rec = ev.record(0, 1)
    assert rec["holds"] is False and rec["problem"] == "kept_below_removed"
    assert rec["prob_kept"] == pytest.approx(float(ev.prob_kept[0, 1]), abs=1e-6)


def test_the_scores_are_eq2_and_eq4_under_the_checks_blur_computed_by_hand():
    clf, x = region_classifier(), region_images(2)
    m = planted_maps(2)[:, :2]
    t = torch.tensor([[0, 2], [1, 0]])
    ev = check_evidence(clf, x, m, t)
    p = gaussian_blur(x, BLUR_KERNEL, BLUR_SIGMA)
    assert torch.equal(background(x), p)
    for b in range(2):
        for k in range(2):
            mk = m[b, k]
            kept = x[b] * mk + p[b] * (1 - mk)
            removed = x[b] * (1 - mk) + p[b] * mk
            with torch.no_grad():
                want = clf.scores(clf(torch.stack([kept, removed])))[:, t[b, k]]
            assert ev.prob_kept[b, k].item() == pytest.approx(want[0].item(), abs=1e-6)
            assert ev.prob_removed[b, k].item() == pytest.approx(want[1].item(), abs=1e-6)


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


def test_gfis_own_scores_are_reused_only_under_the_checks_background():
    clf, x = region_classifier(), region_images(2)
    default = get_method("gfi", clf, iters1=3, iters2=3)
    assert reuses_scores(default) and reuses_scores(get_method("gfi", clf, "fast"))
    e = default.explain(x, [[0], [0]])
    ev = evidence_of(default, x, e)
    assert ev.reused and torch.equal(ev.prob_kept, e.prob_kept.float())
    fresh = check_evidence(clf, x, e.maps, e.targets)  # the same numbers the check would compute
    torch.testing.assert_close(fresh.prob_kept, ev.prob_kept, rtol=0, atol=1e-5)
    torch.testing.assert_close(fresh.prob_removed, ev.prob_removed, rtol=0, atol=1e-5)
    for other in (get_method("gfi", clf, "paper", iters1=3, iters2=3), get_method("gfi-stage1", clf, iters1=3),
                  get_method("gfi", clf, iters1=3, iters2=3, background="mean"), get_method("gradcam", clf)):
        assert not reuses_scores(other)
        e = other.explain(x, [[0], [0]])
        assert not evidence_of(other, x, e).reused


def test_empty_maps_and_a_batch_without_targets():
    m = torch.zeros(2, 1, 4, 4)
    m[0, 0, 1, 1] = 1e-6
    assert empty_maps(m).tolist() == [[False], [True]]
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
