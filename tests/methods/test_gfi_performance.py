"""GFI's performance options: early stop of stage 2, bf16 autocast, channels-last (issue 5)."""

import re

import pytest
import torch

from gfi.masks.optimizer import EarlyExit
from gfi.methods.base import RunOptions
from gfi.methods.gfi import GFIConfig, GuidedFeatureInversion, plateaued


def run_stage2_on(losses: list[float], tiny, x, monkeypatch, **cfg) -> int:
    """Stage 2 of GFI whose loss is the given sequence (Eq. 9's class terms replaced, lambda =
    delta = 0): the number of iterations it runs."""
    import gfi.methods.gfi as mod

    it = iter(losses)

    def fake_terms(z, targets, multilabel, score):
        gain = z[0].sum(-1) * 0 - next(it)  # loss = -gain = the next value, still a graph
        return gain, torch.zeros_like(gain)

    monkeypatch.setattr(mod, "target_terms", fake_terms)
    config = GFIConfig.paper(background="mean", iters1=1, iters2=len(losses), lam=0.0, delta=0.0)
    e = GuidedFeatureInversion(tiny, config, early_stop=True, **cfg).explain(x, 0)
    assert torch.allclose(e.loss_history["stage2"][:, 0, 0], torch.tensor(losses[:e.loss_history["stage2"].shape[0]]))
    return e.loss_history["stage2"].shape[0]


def test_early_stop_fires_on_a_plateau_and_not_before(tiny, tiny_images, monkeypatch):
    # falls by 0.1 per iteration for 20 iterations, then flat at -0.9
    losses = [1.0 - 0.1 * i for i in range(20)] + [-0.9] * 40
    # checks every 5 iterations compare the mean of the last 5 losses with the 5 before:
    # at 10, 15, 20 the improvement is 0.5 > 1 % of |L_prev|; at 25: L_prev = mean(-0.5..-0.9)
    # = -0.7, L_cur = -0.9, improvement 0.2 > 0.007; at 30: improvement 0 -> stop after 30.
    assert run_stage2_on(losses, tiny, tiny_images[:1], monkeypatch, early_stop_every=5, early_stop_tol=0.01) == 30
    assert not bool(plateaued(torch.tensor(losses[:25]), 5, 0.01))
    assert bool(plateaued(torch.tensor(losses[20:30]), 5, 0.01))
    # a falling loss never stops: the full schedule runs
    falling = [1.0 - 0.1 * i for i in range(40)]
    assert run_stage2_on(falling, tiny, tiny_images[:1], monkeypatch, early_stop_every=5, early_stop_tol=0.01) == 40
    # a tolerance of 30 % fires where the relative improvement first drops below it: at 25
    # (0.2 / 0.7 = 0.29); at 20 it is 0.5 / 0.2 = 2.5
    assert run_stage2_on(losses, tiny, tiny_images[:1], monkeypatch, early_stop_every=5, early_stop_tol=0.3) == 25


def test_early_stop_needs_two_windows_and_every_row():
    assert not bool(plateaued(torch.ones(9, 2), 5, 0.5))  # fewer than 2 * every losses
    flat = torch.ones(10, 2)
    assert bool(plateaued(flat, 5, 0.0))
    falling = flat.clone()
    falling[5:, 1] = 0.5  # the second row still improves by 50 %
    assert not bool(plateaued(falling, 5, 0.1))
    assert bool(plateaued(falling, 5, 0.6))


def test_early_stop_in_gfi_is_a_prefix_of_the_full_schedule(tiny, tiny_images):
    base = GFIConfig.paper(background="mean", iters1=3, iters2=30)
    full = GuidedFeatureInversion(tiny, base).explain(tiny_images, [[0, 2], [1, 3]])
    # a huge tolerance stops at the first check (2 windows = 10 iterations)
    early = GuidedFeatureInversion(tiny, base, early_stop=True, early_stop_tol=1e9).explain(
        tiny_images, [[0, 2], [1, 3]])
    short = GuidedFeatureInversion(tiny, base, iters2=10).explain(tiny_images, [[0, 2], [1, 3]])
    assert full.loss_history["stage2"].shape[0] == 30
    assert early.loss_history["stage2"].shape[0] == 10
    assert torch.equal(early.loss_history["stage2"], full.loss_history["stage2"][:10])
    assert torch.equal(early.maps, short.maps)
    # off: the schedule is untouched, and a tolerance without early stop is refused (it would change nothing)
    off = GuidedFeatureInversion(tiny, base, early_stop=False).explain(tiny_images, [[0, 2], [1, 3]])
    assert torch.equal(off.maps, full.maps)
    with pytest.raises(ValueError, match=re.escape(
            "early_stop_tol=1000000000.0 is read only with early_stop=true and early_stop_rule=loss; add --early-stop "
            "true, or leave early_stop_tol out")):
        GuidedFeatureInversion(tiny, base, early_stop=False, early_stop_tol=1e9)


def test_performance_options_and_early_stop_settings_are_validated():
    with pytest.raises(ValueError, match=r"GFIConfig\.early_stop_every must be >= 1"):
        GFIConfig(early_stop=True, early_stop_every=0)
    with pytest.raises(ValueError, match=r"GFIConfig\.early_stop_tol must be >= 0"):
        GFIConfig(early_stop=True, early_stop_tol=-1.0)
    with pytest.raises(ValueError, match=r"early_stop_px=3\.0 is read only with early_stop=true and "
                                         r"early_stop_rule=peak; add --early-stop-rule peak"):
        GFIConfig(early_stop=True, early_stop_px=3.0)
    with pytest.raises(ValueError, match="early_stop_rule=peak is read only with early_stop=true"):
        GFIConfig(early_stop_rule="peak")
    assert GFIConfig(early_stop=True, early_stop_rule="peak", early_stop_px=3.0).early_stop_px == 3.0
    with pytest.raises(ValueError, match="autocast"):
        RunOptions(autocast="fp16")


def test_early_stop_is_a_setting_of_stage_2_not_a_run_option():
    """Early stop ends the optimisation early and so changes the map (docs/PERFORMANCE.md): it is
    one of GFI's settings (in the map store's key, listed with GFI's settings in --help), off in
    every preset, and read by stage 2 only."""
    from gfi.settings import describe

    names = [n for n in GFIConfig.names() if n.startswith("early_stop")]
    assert names == ["early_stop", "early_stop_rule", "early_stop_every", "early_stop_tol", "early_stop_windows",
                     "early_stop_px"]
    assert not set(names) & set(RunOptions.names())
    assert all(i.stage == 2 and i.group == "method" for i in describe(GFIConfig) if i.name in names)
    assert not any(GFIConfig.preset(p).early_stop for p in GFIConfig.PRESETS)


def _peak(m: torch.Tensor) -> torch.Tensor:
    i = int(m.flatten().argmax())
    return torch.tensor([i // m.shape[-1], i % m.shape[-1]], dtype=torch.float)


def test_bf16_autocast_on_cpu_agrees_with_float32(tiny, tiny_images):
    from gfi.evaluation.metrics import localization_hits

    cfg = GFIConfig(background="mean", iters1=5, iters2=10)
    ref = GuidedFeatureInversion(tiny, cfg).explain(tiny_images, [[0, 2, 3]] * 2)
    assert not ref.collapsed.any()
    bf = GuidedFeatureInversion(tiny, cfg, autocast="bf16").explain(tiny_images, [[0, 2, 3]] * 2)
    assert bf.maps.dtype == torch.float32
    assert not torch.equal(bf.maps, ref.maps)  # bf16 really ran
    box = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    for b in range(2):
        for k in range(3):
            assert (_peak(bf.maps[b, k]) - _peak(ref.maps[b, k])).norm() <= 1.0
            assert torch.equal(localization_hits(bf.maps[b, k], box, alphas=(1.0,)),
                               localization_hits(ref.maps[b, k], box, alphas=(1.0,)))


def test_channels_last_gives_the_same_maps(tiny, tiny_images):
    cfg = GFIConfig.paper(background="mean", iters1=3, iters2=5)
    ref = GuidedFeatureInversion(tiny, cfg).explain(tiny_images, 1)
    cl = GuidedFeatureInversion(tiny, cfg, channels_last=True).explain(tiny_images, 1)
    assert torch.allclose(cl.maps, ref.maps, atol=1e-5)


def test_channels_last_leaves_the_users_model_as_it_was():
    from torch import nn

    from gfi.models.classifier import Classifier
    from gfi.models.layers import channels_last

    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                          nn.Linear(16, 5))
    weight = model[0].weight
    before = weight.data_ptr()
    with channels_last(model):
        assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert weight.data_ptr() == before and weight.is_contiguous()
    clf = Classifier(model, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=(8, 8),
                     inversion_layer="2", channel_layer="1")
    GuidedFeatureInversion(clf, GFIConfig(iters1=1, iters2=1), channels_last=True).explain(torch.rand(1, 3, 8, 8), 0)
    assert model[0].weight.data_ptr() == before and model[0].weight.is_contiguous()


def test_bf16_on_a_cuda_device_without_bf16_is_refused(tiny, tiny_images, monkeypatch):
    gfi = GuidedFeatureInversion(tiny, options=RunOptions(autocast="bf16"))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Old GPU")
    with pytest.raises(ValueError, match=r"bfloat16 support.*Old GPU"):
        gfi._autocast(torch.device("cuda"))
    with pytest.raises(ValueError, match="not mps"):
        gfi._autocast(torch.device("mps"))


def test_stage2_in_chunks_of_targets_gives_the_same_maps(tiny, tiny_images):
    # with both score terms that read the other targets (a chunk's rows still see all K of the
    # image); the masks' overlap term needs all K masks at once, so it refuses chunks (tested there)
    cfg = GFIConfig(background="mean", iters1=3, iters2=6, keep_others=5.0, contrast=1.0, exclusion=0.0,
                    joint="separate")
    targets = [[0, 2, 3], [1, 3, 4]]
    whole = GuidedFeatureInversion(tiny, cfg).explain(tiny_images, targets)
    chunked = GuidedFeatureInversion(tiny, cfg, chunk=2).explain(tiny_images, targets)
    assert torch.allclose(chunked.maps, whole.maps, atol=1e-6)
    assert torch.allclose(chunked.loss_history["stage2"], whole.loss_history["stage2"], atol=1e-6)
    assert chunked.loss_history["stage2"].shape == (6, 2, 3)
    with pytest.raises(ValueError, match="chunk"):
        RunOptions(chunk=-1)


def test_chunk_histories_of_different_lengths_are_padded_with_nan():
    from gfi.methods.gfi import _cat_histories

    out = _cat_histories([torch.ones(4, 1, 2), torch.zeros(2, 1, 1)])
    assert out.shape == (4, 1, 3)
    assert torch.equal(out[:2, 0, 2], torch.zeros(2)) and out[2:, 0, 2].isnan().all()
    assert torch.equal(out[:, 0, :2], torch.ones(4, 2))


def test_performance_options_are_cli_flags_and_help_renders(capsys):
    from gfi.cli import main

    with pytest.raises(SystemExit) as e:
        main(["explain", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--early-stop ", "--early-stop-every", "--early-stop-tol", "--autocast", "--channels-last",
                 "--chunk"):  # RunOptions.chunk, formerly GFIConfig.stage2_chunk
        assert flag in out
    settings, speed = out.split("gfi settings", 1)[1].split("speed (how fast", 1)
    assert "--early-stop-tol" in settings and "--early-stop" not in speed and "--chunk" in speed


def test_early_stop_drops_settled_images_from_the_batch(tiny, tiny_images, monkeypatch):
    """Image 0 settles at the first check (after 5 iterations), image 1 never: image 0 leaves the
    batch (later forwards hold only image 1's kept and removed images), its losses are NaN from
    there, and each image's w is that of the schedule run on it alone (image 0 at 5 iterations,
    image 1 at all 30): leaving the batch changes no other image's iterations."""
    monkeypatch.setattr(EarlyExit, "settled", lambda self, losses, peaks, active: active == 0)
    config = GFIConfig.paper(background="mean", iters1=1, iters2=30)
    rows = []
    handle = tiny.model.register_forward_pre_hook(lambda _m, a: rows.append(a[0].shape[0]))
    try:
        e = GuidedFeatureInversion(tiny, config, early_stop=True).explain(tiny_images[:2], [[1], [2]])
    finally:
        handle.remove()
    hist = e.loss_history["stage2"]
    assert hist.shape == (30, 2, 1)
    assert torch.isfinite(hist[:5]).all() and torch.isnan(hist[5:, 0]).all() and torch.isfinite(hist[:, 1]).all()
    assert rows.count(4) == 5 + 1 and rows.count(2) >= 25  # 5 iterations of 2 x 2, the final scoring; 25 of 2 x 1
    monkeypatch.undo()
    alone0 = GuidedFeatureInversion(tiny, config, iters2=5).explain(tiny_images[:1], [[1]])
    alone1 = GuidedFeatureInversion(tiny, config).explain(tiny_images[1:2], [[2]])
    torch.testing.assert_close(e.weights[0], alone0.weights[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(e.weights[1], alone1.weights[0], atol=1e-5, rtol=0)
    assert not torch.allclose(alone0.weights[0], GuidedFeatureInversion(tiny, config).explain(
        tiny_images[:1], [[1]]).weights[0])  # 5 iterations are not 30: the check above can fail


def test_peak_rule_stops_once_the_maximum_stays_put(tiny, tiny_images):
    """With early_stop_px huge every maximum 'stays put': each image stops after
    early_stop_windows + 1 checks, i.e. (windows + 1) * every iterations, and its map is that of the
    short schedule."""
    base = GFIConfig.paper(background="mean", iters1=2, iters2=30)
    e = GuidedFeatureInversion(tiny, base, early_stop=True, early_stop_rule="peak", early_stop_px=1e9,
                               early_stop_windows=2, early_stop_every=4).explain(tiny_images, [[0, 2], [1, 3]])
    short = GuidedFeatureInversion(tiny, base, iters2=12).explain(tiny_images, [[0, 2], [1, 3]])
    assert e.loss_history["stage2"].shape[0] == 12
    assert torch.equal(e.maps, short.maps)
    with pytest.raises(ValueError, match="early_stop_rule"):
        GFIConfig(early_stop=True, early_stop_rule="box")
