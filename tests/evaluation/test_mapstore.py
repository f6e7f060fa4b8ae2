"""The map store: settings decide which maps a folder may serve, and folders written by earlier
versions (other GFI fields, run options in the config, a baseline's constructor options) stay usable."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from gfi.evaluation.mapstore import ADDED, META, UNRECORDED, MapStore, canonical, stage2_fields
from gfi.methods.gfi import GFIConfig

OLD_RUN_FIELDS = {"early_stop": False, "early_stop_every": 5, "early_stop_tol": 0.005, "autocast": "none",
                  "channels_last": False, "stage2_chunk": 0}


def test_map_store_accepts_settings_added_later_at_their_default(tmp_path):
    now = {"method": "gfi", "config": asdict(GFIConfig())}
    old = {"method": "gfi", "config": {k: v for k, v in now["config"].items() if k != "tv1"}}
    (tmp_path / META).write_text(json.dumps(old))
    MapStore(tmp_path, now)  # a field added since, at its default: the same maps
    changed = {"method": "gfi", "config": {**now["config"], "tv1": 0.5}}
    with pytest.raises(ValueError, match="made with other settings"):
        MapStore(tmp_path, changed)


def test_map_store_ignores_the_run_options_old_configs_hold(tmp_path):
    """Before the run options left GFI's config, ``_maps.json`` held them; they never decided a map.
    Early stop, which those configs held too, does decide it (a setting again): recorded on, the
    maps are not those of a run without it."""
    now = {"method": "gfi", "config": asdict(GFIConfig())}
    old = {"method": "gfi", "config": {**now["config"], **OLD_RUN_FIELDS, "stage2_chunk": 2}}
    (tmp_path / META).write_text(json.dumps(old))
    MapStore(tmp_path, now)
    with pytest.raises(ValueError, match=r"config\.gamma"):  # a setting still counts
        MapStore(tmp_path, {"method": "gfi", "config": asdict(GFIConfig(gamma=3.0))})
    (tmp_path / META).write_text(json.dumps({"method": "gfi", "config": {**old["config"], "early_stop": True}}))
    with pytest.raises(ValueError, match=r"config\.early_stop: True there, False now"):
        MapStore(tmp_path, now)
    MapStore(tmp_path, {"method": "gfi", "config": asdict(GFIConfig(early_stop=True))})


def test_map_store_refuses_maps_made_while_early_stop_was_an_unrecorded_run_option(tmp_path):
    """While early stop was a run option, ``_maps.json`` did not record it: such maps may have been
    made with it on, so they serve no run (stage-1 maps excepted: early stop is stage 2's). Recorded
    off (an older config), the fields only it reads do not count."""
    unrecorded = {k: v for k, v in asdict(GFIConfig()).items() if not k.startswith("early_stop")}
    (tmp_path / META).write_text(json.dumps({"method": "gfi", "config": unrecorded}))
    for config in (GFIConfig(), GFIConfig(early_stop=True)):
        with pytest.raises(ValueError, match=r"made before gfi recorded early_stop \(then a run option, possibly "
                                             r"on\).*delete its \*\.npy and _maps\.json"):
            MapStore(tmp_path, {"method": "gfi", "config": asdict(config)})
    (tmp_path / META).write_text(json.dumps({"method": "gfi-stage1", "config": {**unrecorded, "stage2": False}}))
    MapStore(tmp_path, {"method": "gfi-stage1", "config": asdict(GFIConfig(stage2=False))})
    off = {**unrecorded, "early_stop": False, "early_stop_every": 5, "early_stop_tol": 0.01}  # tol unread
    (tmp_path / META).write_text(json.dumps({"method": "gfi", "config": off}))
    MapStore(tmp_path, {"method": "gfi", "config": asdict(GFIConfig())})
    with pytest.raises(ValueError, match=r"config\.early_stop: False there, True now"):
        MapStore(tmp_path, {"method": "gfi", "config": asdict(GFIConfig(early_stop=True))})


def test_maps_made_before_rivals_are_maps_without_them(tmp_path):
    """A record without ``rivals`` (maps made before GFI had them) reads as rivals=0: refused for the
    default, which contrasts each class with its rivals, served to ``rivals=0``. With rivals at 0 the
    ``rival_*`` fields decide nothing (a record of an earlier default's rival_init=1 is the same maps)."""
    now = asdict(GFIConfig())
    assert now["rivals"] > 0
    before = {k: v for k, v in now.items() if not k.startswith("rival")}
    (tmp_path / META).write_text(json.dumps({"method": "gfi", "config": before}))
    with pytest.raises(ValueError, match=r"config\.rivals: 0 there, 10 now"):
        MapStore(tmp_path, {"method": "gfi", "config": now})
    MapStore(tmp_path, {"method": "gfi", "config": asdict(GFIConfig(rivals=0))})
    off = {**before, "rivals": 0, "rival_overlap": 0.5, "rival_init": 1.0, "rival_keep": 0.0, "rival_exclusion": 0.0}
    (tmp_path / META).write_text(json.dumps({"method": "gfi", "config": off}))
    MapStore(tmp_path, {"method": "gfi", "config": asdict(GFIConfig(rivals=0))})
    (tmp_path / META).write_text(json.dumps({"method": "gfi", "config": {**off, "rivals": 10}}))
    with pytest.raises(ValueError, match=r"config\.rival_init: 1\.0 there, 2\.0 now"):  # read with rivals on
        MapStore(tmp_path, {"method": "gfi", "config": now})


def test_map_store_reads_a_baselines_old_constructor_options(tmp_path):
    """Before every method recorded its settings, a baseline's ``_maps.json`` held only the options
    given to its constructor (``options``): they are read as its defaults with those."""
    (tmp_path / META).write_text(json.dumps({"method": "gradcam", "model": "m", "options": {}}))
    MapStore(tmp_path, {"method": "gradcam", "model": "m", "config": {"layer": None}})
    with pytest.raises(ValueError, match=r"config\.layer"):
        MapStore(tmp_path, {"method": "gradcam", "model": "m", "config": {"layer": "features"}})


def test_map_store_ignores_stage2_settings_for_stage1_maps(tmp_path):
    made = asdict(GFIConfig(lr2=0.01, area2=0.5))
    for method, reused in (("gfi-stage1", True), ("gfi", False)):
        folder = tmp_path / method
        folder.mkdir()
        (folder / META).write_text(json.dumps({"method": method, "config": made}))
        now = {"method": method, "config": asdict(GFIConfig())}  # stage 2's lr2 and area2 changed since
        if reused:
            MapStore(folder, now)
        else:
            with pytest.raises(ValueError, match="lr2"):
                MapStore(folder, now)
    # a gfi run with stage 2 off makes stage-1 maps too
    folder = tmp_path / "gfi-off"
    folder.mkdir()
    (folder / META).write_text(json.dumps({"method": "gfi", "config": {**made, "stage2": False}}))
    MapStore(folder, {"method": "gfi", "config": asdict(GFIConfig(stage2=False))})
    # a stage-1 setting still counts
    with pytest.raises(ValueError, match="made with other settings"):
        MapStore(tmp_path / "gfi-stage1", {"method": "gfi-stage1", "config": asdict(GFIConfig(area1=0.0))})


def test_map_store_reads_a_field_added_since_as_the_old_behaviour(tmp_path):
    """Maps cached before stage 2 had its own blur were made with stage 1's: they are not the
    current default's maps (stage 2 blurs with sigma 20 now), and they are those of a run that sets
    stage 2's blur to stage 1's, explicitly or with None."""
    before = {k: v for k, v in asdict(GFIConfig()).items() if k not in ADDED}
    (tmp_path / META).write_text(json.dumps({"method": "gfi", "config": before}))
    with pytest.raises(ValueError, match="blur_kernel2"):
        MapStore(tmp_path, {"method": "gfi", "config": asdict(GFIConfig())})
    for same in (GFIConfig(blur_kernel2=11, blur_sigma2=5.0, exclusion=0.0, contrast_init=0.0, joint="separate",
                           rivals=0),
                 GFIConfig(blur_kernel2=None, blur_sigma2=None, exclusion=0.0, contrast_init=0.0,
                           joint="separate", rivals=0)):
        MapStore(tmp_path, {"method": "gfi", "config": asdict(same)})


def test_stage2_fields_come_from_the_field_metadata():
    """The set kept by hand before (GFIConfig.STAGE2_FIELDS) less the run options that left the config,
    plus stage 2's early stop (a setting again) and the rivals (stage 2's start and terms)."""
    assert stage2_fields(GFIConfig) == {
        "delta", "lam", "lr2", "iters2", "lr_decay_every", "lr_decay", "score", "area2", "tv2",
        "blur_kernel2", "blur_sigma2", "stage2_init", "nonnegative", "fresh_optimizer", "contrast",
        "keep_others", "stage2_step", "exclusion", "contrast_init", "joint", "early_stop", "early_stop_rule",
        "early_stop_every", "early_stop_tol", "early_stop_windows", "early_stop_px", "rivals", "rival_overlap",
        "rival_init", "rival_min_prob", "rival_keep", "rival_exclusion"}


def test_canonical_is_what_the_method_runs():
    # a config recorded before the stage-2 blur fields: ADDED's None, resolved to stage 1's blur;
    # before exclusion and contrast_init: 0; before joint: separate (those terms on); early stop: unknown;
    # before rivals: none
    assert canonical("gfi", {}) == {**asdict(GFIConfig()), "blur_kernel2": GFIConfig().blur_kernel,
                                    "blur_sigma2": GFIConfig().blur_sigma, "exclusion": 0.0,
                                    "contrast_init": 0.0, "joint": "separate", "early_stop": UNRECORDED,
                                    "rivals": 0}
    assert canonical("gfi-stage1", asdict(GFIConfig()))["stage2"] is False  # the method runs stage 1 only
    assert canonical("no-such-method", {"a": 1}) == {"a": 1}


def test_maps_cached_before_exclusion_are_those_of_exclusion_zero(tmp_path):
    """The masks' overlap term (issue 18) is on by default; maps cached before it existed were made
    without it, so they are not the default's, and they are those of exclusion=0."""
    added = ("keep_others", "stage2_step", "exclusion", "contrast_init", "joint")
    before = {k: v for k, v in asdict(GFIConfig(exclusion=0.0, contrast_init=0.0)).items() if k not in added}
    (tmp_path / META).write_text(json.dumps({"method": "gfi", "config": before}))
    with pytest.raises(ValueError, match="exclusion"):
        MapStore(tmp_path, {"method": "gfi", "config": asdict(GFIConfig())})
    MapStore(tmp_path, {"method": "gfi", "config": asdict(GFIConfig(exclusion=0.0, contrast_init=0.0,
                                                                     joint="separate"))})


def test_maps_cached_before_contrast_init_are_those_of_contrast_init_zero(tmp_path):
    """The contrastive start (issue 18, fifth round) is on by default; maps cached by the fourth
    round's default (exclusion 100, no contrast_init field) are refused against the default and
    read by a run that sets contrast_init=0 with the fourth round's exclusion."""
    before = {k: v for k, v in asdict(GFIConfig(exclusion=100.0, joint="separate")).items()
              if k not in ("contrast_init", "joint")}
    (tmp_path / META).write_text(json.dumps({"method": "gfi", "config": before}))
    with pytest.raises(ValueError, match=r"contrast_init: 0\.0 there, 0\.5 now"):
        MapStore(tmp_path, {"method": "gfi", "config": asdict(GFIConfig(exclusion=100.0, joint="separate"))})
    MapStore(tmp_path, {"method": "gfi", "config": asdict(GFIConfig(exclusion=100.0, contrast_init=0.0,
                                                                     joint="separate"))})
