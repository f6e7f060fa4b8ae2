"""What several targets of one image explained together mean (GFIConfig.joint): independent (each
map is its map alone, bit for bit), contrastive (the terms that use the other targets' scores),
separate (those and the masks' overlap); a weight that the chosen mode ignores is refused."""

import json
from dataclasses import asdict

import pytest
import torch

from gfi.errors import SettingsError
from gfi.methods.gfi import GFIConfig, GuidedFeatureInversion

FAST = dict(iters1=2, iters2=4)


@pytest.mark.parametrize("dtype", [torch.float32, pytest.param(torch.float64, marks=pytest.mark.slow)])
@pytest.mark.parametrize("early_stop", [False, True])
def test_independent_targets_are_each_their_map_alone_bit_for_bit(tiny, tiny_images, dtype, early_stop):
    """K = 1..4 targets explained together, each map equal to the map of that target alone, to the
    last bit, in float32 (where the network's batched passes round differently for 16 rows than for
    4) and float64; with early stop too (each target leaves stage 2 when its own map has settled): to
    the last bit but for the round-off of the smaller batches that run once an image has left (the
    same iterations; 1e-16 seen in float64), so there to 1e-12 / 1e-5."""
    clf = tiny.to(dtype)
    x = tiny_images.to(dtype)
    opts = dict(early_stop=True, early_stop_every=1, early_stop_tol=0.001) if early_stop else {}
    gfi = GuidedFeatureInversion(clf, iters1=2, iters2=12, **opts)
    assert gfi.config.joint == "independent"  # the default
    alone = {c: gfi.explain(x, [[c], [c]]) for c in range(5)}
    for k in range(1, 5):
        targets = [list(range(k)), list(range(4, 4 - k, -1))]
        together = gfi.explain(x, targets)
        tol = dict(atol=1e-12 if dtype == torch.float64 else 1e-5, rtol=0) if early_stop else dict(atol=0, rtol=0)
        for b in range(2):
            for j, c in enumerate(targets[b]):
                for field in ("maps", "weights", "prob_kept"):
                    torch.testing.assert_close(getattr(together, field)[b, j], getattr(alone[c], field)[b, 0],
                                               **tol, msg=f"{field} of K={k}, image {b}, class {c}")
    if early_stop:  # the targets alone stopped after different numbers of iterations, and so did they together
        assert len({alone[c].loss_history["stage2"].shape[0] for c in range(5)}) > 1
        assert together.loss_history["stage2"].isnan().any()


def test_the_modes_differ_only_with_several_targets(tiny, tiny_images):
    """One target: every mode gives the same map bit for bit (no other target, no term). Two targets:
    separate (overlap term and contrastive start) moves the maps apart from independent; contrastive
    is separate without the overlap term."""
    maps = {mode: GuidedFeatureInversion(tiny, joint=mode, **FAST) for mode in GFIConfig.JOINT_TERMS}
    one = {mode: e.explain(tiny_images, [[1], [3]]).maps for mode, e in maps.items()}
    assert torch.equal(one["independent"], one["contrastive"]) and torch.equal(one["independent"], one["separate"])
    two = {mode: e.explain(tiny_images, [[1, 2], [3, 0]]) for mode, e in maps.items()}
    assert not torch.equal(two["separate"].maps, two["independent"].maps)
    assert not torch.equal(two["contrastive"].weights, two["independent"].weights)
    no_overlap = GuidedFeatureInversion(tiny, joint="separate", exclusion=0.0, **FAST).explain(tiny_images,
                                                                                              [[1, 2], [3, 0]])
    assert torch.equal(two["contrastive"].maps, no_overlap.maps)


def test_the_contrastive_start_is_taken_only_by_the_modes_that_read_it(tiny, tiny_images):
    """Stage 2's start of target c: Grad-CAM's pooled gradients of y_c (independent), of
    y_c - beta * mean of the others' logits (contrastive, separate), rescaled to mean |w| = w_init;
    with beta = 1 and two targets, the difference of the two targets' pooled gradients, by hand."""
    from gfi.models.layers import layer_gradients

    t = torch.tensor([[0, 3], [2, 1]])
    _, g = layer_gradients(tiny, tiny_images, t, tiny.channel_layer)
    w = g.mean((2, 3)).view(2, 2, -1)
    plain = GuidedFeatureInversion(tiny, contrast_init=0.5).gradient_weights(tiny_images, t)
    torch.testing.assert_close(plain, w * (0.1 / w.abs().mean(-1, keepdim=True)))
    diff = w - w.flip(1)  # y_c - y_other
    for mode in ("contrastive", "separate"):
        got = GuidedFeatureInversion(tiny, joint=mode, contrast_init=1.0).gradient_weights(tiny_images, t)
        torch.testing.assert_close(got, diff * (0.1 / diff.abs().mean(-1, keepdim=True)))


@pytest.mark.parametrize("overrides,mode", [
    ({"exclusion": 5.0}, "separate"),
    ({"contrast": 1.0}, "contrastive"),
    ({"keep_others": 2.0}, "contrastive"),
    ({"contrast_init": 1.0}, "contrastive"),
    ({"joint": "contrastive", "exclusion": 3.0}, "separate"),
])
def test_a_weight_that_the_mode_ignores_is_refused_naming_the_mode(overrides, mode):
    with pytest.raises(SettingsError, match=f"choose joint={mode}") as err:
        GFIConfig(**overrides)
    assert "\n" not in str(err.value)
    with pytest.raises(SettingsError, match=f"choose joint={mode}"):  # strings, as --set gives them
        GFIConfig().with_overrides({k: str(v) for k, v in overrides.items()})


def test_ignored_weights_at_their_default_or_zero_are_accepted_and_unused():
    assert GFIConfig(exclusion=0.0, contrast_init=0.0).joint == "independent"
    assert GFIConfig().joint_weight("exclusion") == 0.0 and GFIConfig().joint_weight("contrast_init") == 0.0
    assert GFIConfig(joint="contrastive").joint_weight("contrast_init") == 0.5
    assert GFIConfig(joint="contrastive").joint_weight("exclusion") == 0.0
    assert GFIConfig(joint="separate").joint_weight("exclusion") == 1000.0


def test_presets():
    """paper: one class at a time (independent; it has none of the terms); fast: the default's mode."""
    assert GFIConfig.paper().joint == "independent"
    assert GFIConfig.fast().joint == GFIConfig().joint == "independent"
    assert GFIConfig.paper(joint="separate").exclusion == 0.0  # the paper's weights: the terms are 0


def test_maps_cached_before_the_setting_are_read_as_separate_not_independent(tmp_path):
    """A cache made before ``joint`` existed had the multi-target terms on (today's ``separate``): a
    run of the default (independent) must not reuse it; a separate run with its weights does."""
    from gfi.evaluation.mapstore import META, MapStore

    before = {k: v for k, v in asdict(GFIConfig(joint="separate")).items() if k != "joint"}
    (tmp_path / META).write_text(json.dumps({"method": "gfi", "config": before}))
    with pytest.raises(ValueError, match="joint: 'separate' there, 'independent' now"):
        MapStore(tmp_path, {"method": "gfi", "config": asdict(GFIConfig())})
    MapStore(tmp_path, {"method": "gfi", "config": asdict(GFIConfig(joint="separate"))})


# -- front ends and the command line: the setting passes like any other ------------------------------
def test_front_ends_pass_joint_and_refuse_an_ignored_weight():
    import gfi.frontends.cam
    import gfi.frontends.captum
    from gfi.errors import UsageError
    from tests.frontends.test_rule import small_net

    net = small_net()
    layer = [m for m in net.modules() if isinstance(m, torch.nn.ReLU)][-1]
    cam = gfi.frontends.cam.GFICAM(net, target_layers=[layer], joint="separate", exclusion=5.0)
    assert cam.spec.config.joint == "separate" and cam.spec.config.exclusion == 5.0
    attr = gfi.frontends.captum.GuidedFeatureInversion(net, joint="contrastive", contrast=1.0)
    assert attr.spec.config.joint == "contrastive"
    for make in (lambda: gfi.frontends.cam.GFICAM(net, target_layers=[layer], exclusion=5.0),
                 lambda: gfi.frontends.captum.GuidedFeatureInversion(net, contrast=1.0)):
        with pytest.raises((SettingsError, UsageError), match="choose joint="):
            make()


def test_quantus_front_end_passes_joint(monkeypatch):
    import gfi.frontends.quantus
    from gfi.methods.spec import MethodSpec
    from tests.frontends.test_rule import small_net

    seen = []
    original = MethodSpec.explainer
    monkeypatch.setattr(MethodSpec, "explainer", lambda self, *a: seen.append(self.config.joint) or original(self, *a))
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    out = gfi.frontends.quantus.explain(small_net(), x.numpy(), [1], joint="separate", iters1=1, iters2=1)
    assert seen == ["separate"] and out.shape == (1, 1, 16, 16)
    with pytest.raises(SettingsError, match="choose joint=separate"):
        gfi.frontends.quantus.explain(small_net(), x.numpy(), [1], exclusion=5.0)


def test_cli_records_joint_and_refuses_an_ignored_weight_in_one_line(tmp_path, capsys, monkeypatch):
    from tests import cli_tiny
    from tests.cli.test_reliability import results, run, write_images

    cli_tiny.patch(monkeypatch)
    images = str(write_images(tmp_path / "in", 1))
    rc, _, err = run(["explain", images, "--out", str(tmp_path / "bad"), "--exclusion", "5"], capsys)
    assert rc == 2 and "choose joint=separate (--joint separate)" in err and err.count("\n") == 1, err
    out = tmp_path / "o"
    rc, _, err = run(["explain", images, "--out", str(out), "--target", "1", "--target", "2", "--joint", "separate",
                      "--iters1", "1", "--iters2", "1"], capsys)
    assert rc == 0, err
    assert results(out)["config"]["joint"] == "separate"
    assert "joint" in (out / "report.html").read_text()
