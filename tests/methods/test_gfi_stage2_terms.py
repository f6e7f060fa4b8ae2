"""Stage 2's options beyond the paper: the other targets' removed-image term, relative steps."""

import pytest
import torch

from gfi.errors import SettingsError
from gfi.masks import channel_mask
from gfi.masks.channel_mask import KeptAndRemoved
from gfi.methods.gfi import GuidedFeatureInversion
from gfi.objectives import other_targets, others_removed_term


def test_keep_others_adds_the_other_targets_removed_scores_to_eq9(tiny, tiny_images):
    """At the first stage-2 iteration (same w in both runs) the losses differ by exactly
    keep_others * mean_{j != k} -log f_j(removed image of target k), computed here by hand."""
    cfg = dict(iters1=2, iters2=1, stage2_init="stage1", keep_others=0.0, joint="contrastive")
    targets = [[0, 3], [1, 2]]
    plain = GuidedFeatureInversion(tiny, **cfg).explain(tiny_images, targets)
    e = GuidedFeatureInversion(tiny, **{**cfg, "keep_others": 2.5})
    other = e.explain(tiny_images, targets)
    assert torch.equal(plain.stage1_weights, other.stage1_weights)
    with torch.no_grad():
        feats, _ = tiny.activations(tiny_images, [tiny.channel_layer])
        w = plain.stage1_weights[:, None].expand(-1, 2, -1)
        m, _ = channel_mask(w, feats[tiny.channel_layer], (4, 4), rectify=True)
        removed = KeptAndRemoved(tiny_images, e.backgrounds(tiny_images)[1])(m)[1]  # (B, K, 3, H, W)
        z = tiny(removed.flatten(0, 1)).view(2, 2, -1)
        f = z.softmax(-1)
        t = torch.tensor(targets)
        by_hand = torch.stack([torch.stack([-torch.log(f[b, k, t[b, 1 - k]]) for k in range(2)]) for b in range(2)])
    torch.testing.assert_close(others_removed_term(z, other_targets(t), False), by_hand)
    torch.testing.assert_close(other.loss_history["stage2"][0] - plain.loss_history["stage2"][0], 2.5 * by_hand,
                               rtol=1e-4, atol=1e-5)


def test_keep_others_leaves_a_single_target_exactly_as_eq9(tiny, tiny_images):
    cfg = dict(iters1=2, iters2=3, joint="contrastive")
    plain = GuidedFeatureInversion(tiny, **cfg, keep_others=0.0).explain(tiny_images, 1)
    other = GuidedFeatureInversion(tiny, **cfg, keep_others=5.0).explain(tiny_images, 1)
    assert torch.equal(plain.maps, other.maps)
    two = GuidedFeatureInversion(tiny, **cfg, keep_others=5.0).explain(tiny_images, [[1, 2], [1, 2]])
    plain_two = GuidedFeatureInversion(tiny, **cfg, keep_others=0.0).explain(tiny_images, [[1, 2], [1, 2]])
    assert not torch.equal(two.weights, plain_two.weights)


@pytest.mark.parametrize("step", ["absolute", "relative"])
def test_first_stage2_step_moves_each_weight_by_lr_or_by_lr_times_its_start(tiny, tiny_images, step):
    """Adam's first step is lr * sign(gradient) (up to its epsilon): on w itself (absolute), or on
    theta with w = w_start + |w_start| theta (relative), which moves w_i by lr * |w_start_i|."""
    lr = 0.05
    e = GuidedFeatureInversion(tiny, iters1=1, iters2=1, lr2=lr, stage2_step=step, rivals=0)  # the plain start
    out = e.explain(tiny_images, [[0], [4]])
    w_start = e.gradient_weights(tiny_images, out.targets)
    moved = (out.weights - w_start).abs()
    want = torch.full_like(w_start, lr) if step == "absolute" else lr * w_start.abs()
    torch.testing.assert_close(moved, want, rtol=1e-4, atol=1e-6)


def test_relative_steps_keep_the_sign_of_a_nonnegative_start_and_refuse_continued_moments(tiny, tiny_images):
    e = GuidedFeatureInversion(tiny, iters1=2, iters2=20, lr2=0.5, stage2_step="relative", nonnegative=True)
    out = e.explain(tiny_images, [[0, 2], [4, 1]])
    assert (out.weights >= 0).all()
    with pytest.raises(SettingsError, match="fresh_optimizer=True"):
        GuidedFeatureInversion(tiny, iters1=1, iters2=1, stage2_step="relative",
                               fresh_optimizer=False).explain(tiny_images, 0)


def test_exclusion_adds_the_masks_overlap_to_eq9_and_refuses_chunks(tiny, tiny_images):
    """At the first stage-2 iteration the losses differ by exclusion * mask_overlap(m) of the
    starting masks, computed here by hand; one target is explained exactly as without it."""
    from gfi.objectives import mask_overlap

    cfg = dict(iters1=2, iters2=1, stage2_init="stage1", keep_others=0.0, exclusion=0.0, joint="separate")
    targets = [[0, 3, 1], [1, 2, 4]]
    plain = GuidedFeatureInversion(tiny, **cfg).explain(tiny_images, targets)
    other = GuidedFeatureInversion(tiny, **{**cfg, "exclusion": 3.0}).explain(tiny_images, targets)
    with torch.no_grad():
        feats, _ = tiny.activations(tiny_images, [tiny.channel_layer])
        m, _ = channel_mask(plain.stage1_weights[:, None].expand(-1, 3, -1), feats[tiny.channel_layer], (4, 4),
                            rectify=True)
        by_hand = torch.stack([torch.stack([sum((m[b, k] * m[b, j]).mean() for j in range(3) if j != k) / 2
                                            for k in range(3)]) for b in range(2)])
    torch.testing.assert_close(other.loss_history["stage2"][0] - plain.loss_history["stage2"][0], 3.0 * by_hand,
                               rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(mask_overlap(m), by_hand)
    one = GuidedFeatureInversion(tiny, iters1=2, iters2=3, exclusion=50.0, joint="separate").explain(tiny_images, 1)
    none = GuidedFeatureInversion(tiny, iters1=2, iters2=3, exclusion=0.0, joint="separate").explain(tiny_images, 1)
    assert torch.equal(one.maps, none.maps)
    with pytest.raises(SettingsError, match="drop chunk"):
        GuidedFeatureInversion(tiny, iters1=1, iters2=1, exclusion=1.0, joint="separate",
                               chunk=2).explain(tiny_images, targets)


def test_contrast_init_starts_from_the_gradient_of_the_logit_difference(tiny, tiny_images):
    """Stage 2's start with contrast_init = beta: Grad-CAM's pooled gradients of y_c - beta * mean of
    the other targets' logits, rescaled to mean |w| = w_init; computed here by autograd on the
    difference itself. One target starts exactly as Grad-CAM's weights."""
    from gfi.models.layers import capture

    beta, t = 0.7, torch.tensor([[0, 3, 1], [2, 1, 4]])
    e = GuidedFeatureInversion(tiny, contrast_init=beta, joint="contrastive")
    got = e.gradient_weights(tiny_images, t)
    want = []
    for b in range(2):
        rows = []
        for k in range(3):
            x = tiny_images[b:b + 1].clone().requires_grad_(True)
            with torch.enable_grad(), capture(tiny.model, [tiny.channel_layer], clone=False) as store:
                y = tiny(x)[0]
                others = [int(j) for j in t[b] if j != t[b, k]]
                obj = y[t[b, k]] - beta * y[others].mean()
                g = torch.autograd.grad(obj, store[tiny.channel_layer])[0]
            w = g.mean((2, 3))[0]
            rows.append(w * (0.1 / w.abs().mean()))
        want.append(torch.stack(rows))
    torch.testing.assert_close(got, torch.stack(want), rtol=1e-4, atol=1e-6)
    plain = GuidedFeatureInversion(tiny).gradient_weights(tiny_images, t)
    assert not torch.allclose(got, plain)
    one = torch.tensor([[0], [2]])
    assert torch.equal(e.gradient_weights(tiny_images, one), GuidedFeatureInversion(tiny).gradient_weights(
        tiny_images, one))
