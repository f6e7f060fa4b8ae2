"""Rivals at equal information: every method that takes a class score accepts the same contrastive
target ``Contrastive(c, others, beta)`` = y_c - beta * mean_j y_j (gfi.targets), Grad-CAM's and CAM's
weights for it are w_c - beta * mean_j w_j (checked by hand on the region net, whose logits are a
linear layer over the gate's average: d y_c / d A_k = W[c, k] / (h w) everywhere), and GFI starts
from contrastive Grad-CAM. Methods that cannot read a kind of target refuse it in one line, before any
work."""

from __future__ import annotations

import logging

import pytest
import torch

from gfi.errors import NotApplicable, TargetError
from gfi.methods import grad_cam
from gfi.methods.registry import METHODS, get_method
from gfi.targets import Contrastive, Logit, OutputIndex, Softmax
from tests.methods.region_net import in_region

BETA = 0.5
TARGET = Contrastive(0, [1, 2], BETA)
#: every method that takes a class score (center ignores the model; lrp starts from one logit)
CLASS_SCORE_METHODS = ["gradcam", "cam", "gradient", "guided-backprop", "smoothgrad", "integrated-gradients", "rise",
                       "mask", "extremal", "gfi", "gfi-stage1", "pixel-mask", "center"]


def contrastive_weights(clf):
    """(C,) w_0 - beta * mean(w_1, w_2) of the region net's linear layer, by hand."""
    w = clf.model.fc.weight.detach()
    return w[0] - BETA * (w[1] + w[2]) / 2


def test_the_lists_cover_every_registered_method():
    assert set(CLASS_SCORE_METHODS) | {"lrp"} >= set(METHODS) - {"tiny-occlusion"}


@pytest.mark.parametrize("name", CLASS_SCORE_METHODS)
def test_every_class_score_method_explains_a_contrastive_target(region, name):
    clf, x = region
    e = get_method(name, clf, **METHODS[name].test_settings).explain(x, TARGET)
    assert e.maps.shape == (2, 1, 16, 16) and torch.isfinite(e.maps).all()
    assert e.targets.tolist() == [[0], [0]]
    assert e.target_descriptions == [["logit:0-0.5*mean(logit:1,logit:2)"]] * 2
    with torch.no_grad():
        torch.testing.assert_close(e.probs[:, 0], TARGET(clf(x)))  # the target's own score
    if name != "center":
        assert all(in_region(e.maps[b, 0]) for b in range(2)), name  # the score reads the quadrant only


def test_grad_cam_weights_of_a_contrastive_target_are_the_difference_of_class_weights(region, monkeypatch):
    clf, x = region
    seen = []
    plain = grad_cam.GradCAM.channel_weights
    monkeypatch.setattr(grad_cam.GradCAM, "channel_weights",
                        lambda self, a, g: seen.append(plain(self, a, g)) or seen[-1])
    e = get_method("gradcam", clf).explain(x, TARGET)
    want = contrastive_weights(clf) / (16 * 16)  # d y / d A_k is W[c, k] / (h w) at every position
    for b in range(2):
        torch.testing.assert_close(seen[0][b, :, 0, 0], want)
    # and the map is ReLU(sum_k a_k A_k), min-max normalised, by hand
    a = clf.model.features(x)
    cam = torch.relu((want.view(1, -1, 1, 1) * a).sum(1))
    lo, hi = cam.amin((-2, -1), keepdim=True), cam.amax((-2, -1), keepdim=True)
    torch.testing.assert_close(e.maps[:, 0], (cam - lo) / (hi - lo))


def test_cam_weights_of_a_contrastive_target_by_hand(region):
    clf, x = region
    e = get_method("cam", clf).explain(x, TARGET)
    m = (contrastive_weights(clf).view(1, -1, 1, 1) * clf.model.features(x)).sum(1)
    lo, hi = m.amin((-2, -1), keepdim=True), m.amax((-2, -1), keepdim=True)
    torch.testing.assert_close(e.maps[:, 0], (m - lo) / (hi - lo))


def test_gfi_starts_a_contrastive_target_from_contrastive_grad_cam(region):
    clf, x = region
    start = get_method("gfi", clf, iters1=2, iters2=0).explain(x, TARGET).weights  # stage 2 runs no step
    a = contrastive_weights(clf) / (16 * 16)
    want = a * (0.1 / a.abs().mean())  # rescaled to mean |w| = w_init; stage2_init=gradient, nonnegative off
    for b in range(2):
        torch.testing.assert_close(start[b, 0], want)


def test_contrastive_targets_start_gfi_where_its_contrastive_joint_mode_does(region):
    """joint=contrastive with contrast_init=beta starts each of K plain targets from Grad-CAM of y_c - beta
    mean of the others; Contrastive.among gives each target that score explicitly, explained independently."""
    clf, x = region
    classes = [0, 1, 2]
    # rivals off: the model's own rivals would add to the class indices' start, not to explicit targets'
    joint = get_method("gfi", clf, iters1=2, iters2=0, joint="contrastive", contrast_init=1.0, exclusion=0, rivals=0)
    alone = get_method("gfi", clf, iters1=2, iters2=0, rivals=0)
    want = joint.explain(x, [classes] * 2).weights
    got = alone.explain(x, [Contrastive.among(classes, beta=1.0)] * 2).weights
    torch.testing.assert_close(got, want)


def test_lrp_refuses_a_contrastive_target_before_any_work(region):
    clf, x = region
    calls = []
    handle = clf.model.fc.register_forward_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(NotApplicable, match=r"^lrp starts its relevance at one output unit, a class's logit, so "
                                                r"it explains class indices and Logit targets only, not logit:0-0\.5"):
            get_method("lrp", clf).explain(x, TARGET)
    finally:
        handle.remove()
    assert calls == []
    e = get_method("lrp", clf).explain(x, Logit(0))  # a class's logit is what it reads
    torch.testing.assert_close(e.maps, get_method("lrp", clf).explain(x, 0).maps)


@pytest.mark.parametrize("target", [Softmax(0), Contrastive(0, [1], base=Softmax), OutputIndex(0)])
def test_cam_refuses_a_score_it_has_no_weights_for(region, target):
    clf, x = region
    with pytest.raises(NotApplicable, match=r"^cam reads the last linear layer's weights of a class, so it explains "
                                            r"class logits and contrastive differences of logits only, not ") as info:
        get_method("cam", clf).explain(x, target)
    assert "\n" not in str(info.value)


def test_gfi_refuses_the_terms_that_read_other_targets_class_probabilities(region):
    clf, x = region
    gfi = get_method("gfi", clf, iters1=2, iters2=2, joint="contrastive", contrast=0.5)
    with pytest.raises(TargetError, match=r"contrast=0\.5 read\(s\) the other targets' class probabilities, so it "
                                          r"needs plain class indices as targets"):
        gfi.explain(x, [[Logit(0), Logit(1)]] * 2)


def test_gfi_says_once_that_a_score_that_is_no_probability_is_read_linearly(region, caplog):
    clf, x = region
    gfi = get_method("gfi", clf, iters1=2, iters2=2)
    with caplog.at_level(logging.INFO, logger="gfi"):
        gfi.explain(x, TARGET)
        gfi.explain(x, TARGET)
        gfi.explain(x, Softmax(0))  # a probability: the log form, no note
    notes = [r for r in caplog.records if "reads it linearly" in r.getMessage()]
    assert len(notes) == 1 and "logit:0-0.5*mean(logit:1,logit:2) is not a probability" in notes[0].getMessage()


@pytest.mark.parametrize("score", ["log", "prob"])
def test_gfi_reads_a_plain_class_and_its_softmax_target_alike_in_eq_9(region, score):
    """Eq. 9 reads a class index as f_c, the softmax probability: Softmax(c) is the same score (through
    the objects' path rather than the gather), so from the same start (stage 1's w) the maps agree. The
    gradient start differs on purpose: Grad-CAM of the logit for a class index, of the target's own
    score (here the probability) for a target."""
    clf, x = region
    gfi = get_method("gfi", clf, **METHODS["gfi"].test_settings, stage2_init="stage1", score=score)
    e, plain = gfi.explain(x, Softmax(0)), gfi.explain(x, 0)
    torch.testing.assert_close(e.maps, plain.maps, atol=1e-6, rtol=0)
    torch.testing.assert_close(e.prob_kept, plain.prob_kept, atol=1e-6, rtol=0)


def test_a_method_that_reads_plain_class_indices_only_refuses_target_objects(region):
    from tests.methods.occlusion_plugin import Occlusion

    clf, x = region
    with pytest.raises(NotApplicable, match=r"tiny-occlusion explains plain class indices only, not "
                                            r"logit:0-0\.5\*mean"):
        Occlusion(clf).explain(x, TARGET)
    assert Occlusion(clf).explain(x, 0).maps.shape == (2, 1, 16, 16)
