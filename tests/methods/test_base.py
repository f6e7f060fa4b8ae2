"""The common constructor of every method: settings and run options, overrides routed to the right
one, presets, provenance; every settings class refuses NaN."""

from __future__ import annotations

import math

import pytest

from gfi.errors import SettingsError
from gfi.methods.base import NoSettings, RunOptions
from gfi.methods.gfi import GFIConfig, GuidedFeatureInversion
from gfi.methods.registry import METHODS, get_method
from gfi.settings import describe


def test_overrides_go_to_the_settings_or_to_the_run_options(tiny):
    e = GuidedFeatureInversion(tiny, "paper", iters2=5, early_stop=True, chunk=2)
    assert e.config == GFIConfig.paper(iters2=5, early_stop=True)  # early stop changes the map: a setting
    assert e.options == RunOptions(chunk=2)
    r = get_method("rise", tiny, n_masks=10, batch_size=4)
    assert r.config.n_masks == 10 and r.options.batch_size == 4
    # given options are the start, overrides change them
    o = get_method("gradcam", tiny, options=RunOptions(autocast="bf16"), channels_last=True).options
    assert o == RunOptions(autocast="bf16", channels_last=True)
    # strings are read as the field's type (the command line's form)
    assert get_method("mask", tiny, iterations="7").config.iterations == 7


def test_an_unknown_key_is_an_error_naming_it_and_the_valid_ones(tiny):
    with pytest.raises(SettingsError, match=r"rise has no setting 'n_mask'; its settings: n_masks, grid, p, seed; "
                                            r"run options: autocast, channels_last, chunk, batch_size"):
        get_method("rise", tiny, n_mask=10)
    with pytest.raises(SettingsError, match=r"gradient has no setting 'layer'; its settings: \(none\)"):
        get_method("gradient", tiny, layer="relu")


def test_config_is_a_settings_object_of_the_method_or_a_preset(tiny):
    with pytest.raises(SettingsError, match="GFIConfig"):
        GuidedFeatureInversion(tiny, RunOptions())
    with pytest.raises(SettingsError, match="gfi has no preset 'fastest'; its presets: default, paper, fast"):
        GuidedFeatureInversion(tiny, "fastest")
    with pytest.raises(SettingsError, match="rise has no preset 'paper'"):
        get_method("rise", tiny, "paper")
    assert get_method("rise", tiny, "default").config == METHODS["rise"].settings_class()
    with pytest.raises(SettingsError, match="RunOptions"):
        get_method("gradcam", tiny, options={"chunk": 1})


def test_provenance_is_the_name_and_the_settings(tiny):
    e = GuidedFeatureInversion(tiny, "paper", chunk=2)
    assert e.provenance() == {"method": "gfi", "config": GFIConfig.paper().to_dict()}  # how fast is not in it
    early = GuidedFeatureInversion(tiny, "paper", early_stop=True).provenance()
    assert early["config"]["early_stop"] is True and early != e.provenance()  # early stop decides the map
    assert get_method("gradient", tiny).provenance() == {"method": "gradient", "config": {}}
    assert get_method("gfi-stage1", tiny).provenance()["config"]["stage2"] is False


def test_run_options_are_speed_settings_with_help():
    infos = describe(RunOptions)
    assert [i.name for i in infos] == ["autocast", "channels_last", "chunk", "batch_size", "compile"]
    assert all(i.group == "speed" and i.help and "\n" not in i.help for i in infos)
    assert RunOptions() == RunOptions(autocast="none", channels_last=False, chunk=0, batch_size=0)
    assert describe(NoSettings) == ()


def _a_number_field(cls):
    return [i for i in describe(cls) if i.kind in (int, float) or (i.kind is tuple and i.item is float)]


@pytest.mark.parametrize("cls", sorted({c.settings_class for c in METHODS.values()} | {RunOptions},
                                       key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_every_settings_class_refuses_nan_and_inf(cls):
    fields = _a_number_field(cls)
    if not fields:  # no number to refuse (NoSettings, a layer name)
        assert all(i.kind is str for i in describe(cls))
        return
    for info in fields:
        for bad in (math.nan, math.inf):
            value = (bad,) if info.kind is tuple else bad
            with pytest.raises(SettingsError, match=info.name):
                cls(**{info.name: value})


@pytest.mark.parametrize("name", list(METHODS))
def test_every_setting_has_one_line_of_help(name):
    for info in describe(METHODS[name].settings_class):
        assert info.help and "\n" not in info.help and "``" not in info.help, (name, info.name)
