"""Batching, sharing stage 1 across targets, leaving the model as it was, degenerate cases."""

import pytest
import torch

from gfi.methods.gfi import GFIConfig, GuidedFeatureInversion

FAST = dict(iters1=3, iters2=4)


def test_batch_equals_separate_runs(tiny, tiny_images):
    gfi = GuidedFeatureInversion(tiny, "paper", **FAST)
    both = gfi.explain(tiny_images, [[1, 3], [0, 2]])
    for b, targets in enumerate([[1, 3], [0, 2]]):
        one = gfi.explain(tiny_images[b:b + 1], [targets])
        assert torch.allclose(both.maps[b], one.maps[0], atol=1e-5)
        assert torch.allclose(both.weights[b], one.weights[0], atol=1e-6)


@pytest.mark.parametrize("joint", ["independent", "separate"])
def test_stage1_runs_once_per_image_for_k_targets(tiny, tiny_images, joint):
    batches = []
    handle = tiny.model.pool.register_forward_hook(lambda m, a, o: batches.append(o.shape[0]))
    try:
        e = GuidedFeatureInversion(tiny, "paper", joint=joint, **FAST).explain(tiny_images, [[0, 1, 2], [3, 4, 0]])
    finally:
        handle.remove()
    # 1 forward for f(x) at B=2, iters1 stage-1 forwards at B=2, then iters2 + 1 stage-2 forwards:
    # independent targets one at a time, as each alone (2*B = 4, K times); the other modes all K
    # targets in one batch (2*B*K = 12)
    stage2 = [4] * 5 * 3 if joint == "independent" else [12] * 5
    assert batches == [2] + [2] * 3 + stage2
    assert e.maps.shape == (2, 3, 4, 4)
    assert e.stage1_weights.shape == (2, 4) and e.weights.shape == (2, 3, 4)


def test_maps_in_unit_range_without_nan(tiny, tiny_images):
    e = GuidedFeatureInversion(tiny, **FAST).explain(tiny_images)
    for m in (e.maps, e.stage1_map):
        assert torch.isfinite(m).all() and m.min() >= 0 and m.max() <= 1
    assert e.targets.shape == (2, 1)
    with torch.no_grad():
        assert torch.equal(e.targets[:, 0], tiny(tiny_images).argmax(-1))


def test_deterministic_with_noise_background(tiny, tiny_images):
    gfi = GuidedFeatureInversion(tiny, background="noise", seed=7, **FAST)
    a, b = gfi.explain(tiny_images, 1), gfi.explain(tiny_images, 1)
    assert torch.equal(a.maps, b.maps) and torch.equal(a.weights, b.weights)
    c = GuidedFeatureInversion(tiny, background="noise", seed=8, **FAST).explain(tiny_images, 1)
    # the seed draws p, which both stages' losses see (stage 2's few sign-like Adam steps from the
    # gradient start may end on the same w, so compare what p enters directly)
    assert not torch.equal(a.stage1_weights, c.stage1_weights)
    assert not torch.equal(a.loss_history["stage2"], c.loss_history["stage2"])


def test_model_left_as_it_was(tiny, tiny_images):
    net = tiny.model
    net.train()
    net.conv.weight.requires_grad_(False)
    user_calls = []
    net.fc.register_forward_hook(lambda m, a, o: user_calls.append(1))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    n_hooks = {n: (len(m._forward_hooks), len(m._forward_pre_hooks)) for n, m in net.named_modules()}
    GuidedFeatureInversion(tiny, **FAST).explain(tiny_images, 0)
    assert net.training and all(m.training for m in net.modules())
    assert not net.conv.weight.requires_grad and net.fc.weight.requires_grad
    assert all(p.grad is None for p in net.parameters())
    assert {n: (len(m._forward_hooks), len(m._forward_pre_hooks)) for n, m in net.named_modules()} == n_hooks
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    assert user_calls  # the user's own hook still runs


def test_collapse_is_reported_not_nan(tiny, tiny_images):
    # a huge L1 weight drives every w to 0: the map is constant, reported as collapsed, zeros
    e = GuidedFeatureInversion(tiny, "paper", gamma=1e6, delta=1e6, lr1=1.0, lr2=1.0, **FAST).explain(tiny_images, 0)
    assert e.stage1_collapsed.all() and e.collapsed.all()
    assert torch.equal(e.maps, torch.zeros_like(e.maps))
    assert torch.isfinite(e.prob_kept).all()


def test_targets_errors(tiny, tiny_images):
    gfi = GuidedFeatureInversion(tiny, **FAST)
    with pytest.raises(ValueError, match=r"out of range.*5 classes"):
        gfi.explain(tiny_images, 7)
    with pytest.raises(ValueError, match="same number of targets"):
        gfi.explain(tiny_images, [[0], [1, 2]])
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        gfi.explain(tiny_images[0], 0)


def test_config_validation():
    with pytest.raises(ValueError, match="score must be one of"):
        GFIConfig(score="logit")
    with pytest.raises(ValueError, match="blur_kernel must be a positive odd"):
        GFIConfig(blur_kernel=10)
    with pytest.raises(ValueError, match="unknown GFI preset"):
        GFIConfig.preset("fastest")


def test_paper_preset_is_the_paper():
    p = GFIConfig.paper()
    assert (p.gamma, p.delta, p.lam, p.w_init, p.lr1, p.lr2, p.iters1, p.iters2) == (10, 1, 1, 0.1, 1e-2, 1e-2, 10, 70)
    assert (p.lr_decay_every, p.lr_decay, p.background, p.inversion_error, p.l1_norm, p.score) == (
        10, 0.5, "blur", "sum", "sum", "prob")


def test_signed_weights_option(tiny, tiny_images):
    signed = GuidedFeatureInversion(tiny, nonnegative=False, lr2=0.2, **FAST).explain(tiny_images, [[0, 1], [2, 3]])
    clipped = GuidedFeatureInversion(tiny, nonnegative=True, lr2=0.2, **FAST).explain(tiny_images, [[0, 1], [2, 3]])
    assert (clipped.weights >= 0).all() and (clipped.stage1_weights >= 0).all()
    assert (signed.stage1_weights >= 0).all()  # stage 1 keeps the paper's constraint
    assert (signed.weights < 0).any()
    assert torch.isfinite(signed.maps).all() and signed.maps.min() >= 0 and signed.maps.max() <= 1


def test_stage2_can_continue_stage1_adam_moments(tiny, tiny_images):
    fresh = GuidedFeatureInversion(tiny, "paper", **FAST).explain(tiny_images, 0)
    cont = GuidedFeatureInversion(tiny, "paper", fresh_optimizer=False, **FAST).explain(tiny_images, 0)
    assert torch.equal(fresh.stage1_weights, cont.stage1_weights)
    assert not torch.equal(fresh.weights, cont.weights)


def test_stage2_fields_do_not_change_the_stage1_map(tiny, tiny_images):
    """GFIConfig's fields with stage=2 (which the map store ignores for stage-1 maps) are stage-2-only,
    and so are the stage-2 run options."""
    from gfi.methods.base import RunOptions
    from gfi.settings import describe

    changed = {"delta": 3.0, "lam": 2.0, "lr2": 0.2, "iters2": 2, "lr_decay_every": 1, "lr_decay": 0.9,
               "score": "prob", "area2": 2.0, "tv2": 1.0, "blur_kernel2": 3, "blur_sigma2": 1.0,
               "stage2_init": "stage1", "nonnegative": True, "contrast": 1.0, "keep_others": 1.0, "exclusion": 1.0,
               "contrast_init": 1.0, "joint": "independent", "rivals": 2, "rival_overlap": 0.9, "rival_init": 2.0,
               "rival_min_prob": 0.5,
               "rival_keep": 1.0, "rival_exclusion": 1.0,
               "stage2_step": "relative", "fresh_optimizer": False, "early_stop": True, "early_stop_every": 1,
               "early_stop_tol": 0.5, "early_stop_rule": "peak", "early_stop_windows": 1, "early_stop_px": 1.0,
               "chunk": 1}
    # an early-stop field is read (and accepted away from its default) only with early stop on, by its rule
    needs = {"early_stop_every": {"early_stop": True}, "early_stop_tol": {"early_stop": True},
             "early_stop_rule": {"early_stop": True},
             "early_stop_windows": {"early_stop": True, "early_stop_rule": "peak"},
             "early_stop_px": {"early_stop": True, "early_stop_rule": "peak"},
             **{name: {"rivals": 2} for name in GFIConfig.RIVAL_FIELDS}}
    stage2_fields = {i.name for i in describe(GFIConfig) if i.stage == 2}
    run_options = {"chunk"}
    assert run_options <= set(RunOptions.names())
    assert set(changed) == stage2_fields | run_options  # a new stage-2 field must be added here too
    fast = {**FAST, "joint": "separate"}  # the mode that reads every multi-target weight
    base = GuidedFeatureInversion(tiny, stage2=False, **fast).explain(tiny_images, 1)
    for key, value in changed.items():
        other = GuidedFeatureInversion(tiny, stage2=False, **{**fast, **needs.get(key, {}), key: value}).explain(
            tiny_images, 1)
        assert torch.equal(base.maps, other.maps), key
    # and a stage-1 field does change it
    other = GuidedFeatureInversion(tiny, stage2=False, **{**FAST, "area1": 0.0}).explain(tiny_images, 1)
    assert not torch.equal(base.maps, other.maps)


def test_total_variation_terms_add_tv_of_the_mask_to_each_stage(tiny, tiny_images):
    """tv1 / tv2 add weight * TV(m) to Eq. (8) / Eq. (9): at the first iteration (same w in both runs)
    the losses differ by exactly that, with m computed by hand from the starting weights."""
    from gfi.masks import channel_mask
    from gfi.objectives import total_variation

    cfg = dict(iters1=1, iters2=1, stage2_init="stage1", nonnegative=True)
    plain = GuidedFeatureInversion(tiny, **cfg).explain(tiny_images, 1)
    tv = GuidedFeatureInversion(tiny, **cfg, tv1=0.7).explain(tiny_images, 1)
    tv_2 = GuidedFeatureInversion(tiny, **cfg, tv2=2.0).explain(tiny_images, 1)  # same stage 1 as plain
    with torch.no_grad():
        feats, _ = tiny.activations(tiny_images, [tiny.channel_layer])
        f = feats[tiny.channel_layer]
        m0, _ = channel_mask(torch.full((2, 1, f.shape[1]), 0.1), f, (4, 4))  # stage 1 starts at w_init
        m1, _ = channel_mask(plain.stage1_weights[:, None], f, (4, 4))        # stage 2 starts at stage 1's w
    d1 = tv.loss_history["stage1"][0] - plain.loss_history["stage1"][0]
    d2 = tv_2.loss_history["stage2"][0] - plain.loss_history["stage2"][0]
    assert torch.allclose(d1, 0.7 * total_variation(m0, per_side=True)[:, 0], atol=1e-5)
    assert torch.allclose(d2, 2.0 * total_variation(m1, per_side=True), atol=1e-5)
    assert (total_variation(m1, per_side=True) > 0).all()  # the check is not vacuous


def test_config_rejects_a_negative_tv_weight():
    with pytest.raises(ValueError, match="tv2 must be >= 0"):
        GFIConfig(tv2=-1.0)


def test_stage2_blurs_its_background_with_its_own_kernel(tiny, tiny_images):
    """blur_kernel2 / blur_sigma2 make stage 2's p; prob_kept / prob_removed are f_c of Eq. (2) and
    Eq. (4) with that p and the final mask, recomputed here by hand."""
    from gfi.masks import blend, gaussian_blur

    cfg = dict(iters1=2, iters2=3, blur_kernel=3, blur_sigma=0.5, blur_kernel2=3, blur_sigma2=2.0)
    e = GuidedFeatureInversion(tiny, **cfg).explain(tiny_images, 1)
    same = GuidedFeatureInversion(tiny, **{**cfg, "blur_sigma2": 0.5}).explain(tiny_images, 1)
    assert torch.equal(e.stage1_map, same.stage1_map)
    assert not torch.equal(e.loss_history["stage2"], same.loss_history["stage2"])
    p2 = gaussian_blur(tiny_images, 3, 2.0)
    with torch.no_grad():
        kept = tiny.scores(tiny(blend(tiny_images, p2, e.maps)[:, 0]))[:, 1]
        removed = tiny.scores(tiny(blend(tiny_images, p2, 1 - e.maps)[:, 0]))[:, 1]
    assert torch.allclose(e.prob_kept[:, 0], kept, atol=1e-6)
    assert torch.allclose(e.prob_removed[:, 0], removed, atol=1e-6)
    with pytest.raises(ValueError, match="blur_kernel2 must be a positive odd integer"):
        GFIConfig(blur_kernel2=4)


def test_fast_preset_costs_at_most_a_fifth_of_the_default_passes(tiny, tiny_images):
    """Images through the model (forwards, each with its backward inside the loops) for one target:
    the fast preset's count is at most a fifth of the default's; the rivals' gradients cost no
    image more (they share the start's one forward: one backward per rival from the outputs)."""
    counts = {}
    rows = [0]
    handle = tiny.model.register_forward_pre_hook(lambda _m, a: rows.__setitem__(0, rows[0] + a[0].shape[0]))
    try:
        for name, extra in (("default", {}), ("fast", {}), ("default", {"rivals": 0})):
            rows[0] = 0
            GuidedFeatureInversion(tiny, name, **extra).explain(tiny_images[:1], [[1]])
            counts[name + ("-no-rivals" if extra else "")] = rows[0]
    finally:
        handle.remove()
    assert counts["default"] == counts["default-no-rivals"], counts
    assert counts["fast"] * 5 <= counts["default"], counts
    assert GFIConfig.fast() == GFIConfig.preset("fast") and GFIConfig.fast().iters2 < GFIConfig().iters2


def test_iters1_changes_only_the_stage1_map_under_the_gradient_start(tiny, tiny_images):
    """With stage 2 starting from Grad-CAM's weights and a fresh optimiser (the default), stage 1's
    iterations change the stage-1 map and nothing of the class maps: the budget frontier's class-map
    quality depends on iters2 alone (docs/PERFORMANCE.md). Continuing stage 1's optimiser breaks that."""
    base = dict(iters2=3, lr1=0.05)
    none = GuidedFeatureInversion(tiny, iters1=0, **base).explain(tiny_images, [[1, 3], [0, 2]])
    some = GuidedFeatureInversion(tiny, iters1=5, **base).explain(tiny_images, [[1, 3], [0, 2]])
    assert torch.equal(none.maps, some.maps) and torch.equal(none.weights, some.weights)
    assert not torch.equal(none.stage1_map, some.stage1_map)
    cont = dict(base, stage2_init="stage1")
    a = GuidedFeatureInversion(tiny, iters1=0, **cont).explain(tiny_images, [[1, 3], [0, 2]])
    b = GuidedFeatureInversion(tiny, iters1=5, **cont).explain(tiny_images, [[1, 3], [0, 2]])
    assert not torch.equal(a.maps, b.maps)
