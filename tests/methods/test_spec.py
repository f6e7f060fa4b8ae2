"""One resolution of (method, preset, overrides, run options): ``gfi.methods.resolve``, used by the
constructor's callers, the command line, the front ends and ``gfi.explain``; presets named one way."""

from __future__ import annotations

import pytest

from gfi.errors import SettingsError, UsageError
from gfi.methods import MethodSpec, resolve
from gfi.methods.base import RunOptions
from gfi.methods.gfi import GFIConfig
from gfi.methods.registry import METHODS, get_method


def test_overrides_go_to_the_settings_or_the_run_options_before_any_model():
    spec = resolve("gfi", "paper", {"iters2": "7", "chunk": "2"})
    assert isinstance(spec, MethodSpec) and spec.name == "gfi" and spec.cls is METHODS["gfi"]
    assert spec.config == GFIConfig.paper(iters2=7) and spec.options == RunOptions(chunk=2)
    # the run options start from options= (an object or its fields by name), then the overrides change them
    assert resolve("center", options={"autocast": "bf16"}).options == RunOptions(autocast="bf16")
    assert resolve("gradcam", None, {"channels_last": True}, options=RunOptions(chunk=2)).options == \
        RunOptions(chunk=2, channels_last=True)
    # a class, and a settings object, work as well as names
    assert resolve(METHODS["rise"], METHODS["rise"].settings_class(n_masks=10)).config.n_masks == 10
    # a method whose settings are partly fixed (gfi-stage1: no stage 2) says so before any model
    assert resolve("gfi-stage1", "paper").config.stage2 is False


def test_the_explainer_of_a_spec_runs_those_settings(tiny):
    spec = resolve("gfi", "fast", {"iters2": 3, "chunk": 1})
    e = spec.explainer(tiny)
    assert e.config == spec.config == GFIConfig.fast(iters2=3) and e.options == spec.options
    assert e.provenance() == get_method("gfi", tiny, "fast", iters2=3, chunk=1).provenance()


@pytest.mark.parametrize("args,error,message", [
    (("gfii",), UsageError, r"^unknown method 'gfii'; valid methods: gfi, gfi-stage1, gradcam"),
    ((42,), UsageError, r"^method must be a method's name"),
    (("rise", "paper"), SettingsError, r"^rise has no preset 'paper'; its presets: default$"),
    (("gfi", "fastest"), SettingsError, r"^gfi has no preset 'fastest'; its presets: default, paper, fast$"),
    (("rise", None, {"n_mask": 1}), SettingsError, r"^rise has no setting 'n_mask'; its settings: n_masks"),
    (("gfi", None, {"gamma": "nan"}), SettingsError, r"GFIConfig.gamma must be a finite number, got nan"),
    (("gradcam", RunOptions()), SettingsError, r"gradcam takes GradCAMSettings settings or a preset name"),
])
def test_a_bad_method_preset_or_setting_is_one_line(args, error, message):
    with pytest.raises(error, match=message) as info:
        resolve(*args)
    assert "\n" not in str(info.value)


def test_presets_are_named_one_way():
    """``default`` for every method, then the ones its class lists; each is its settings class's preset."""
    for name, cls in METHODS.items():
        names = cls.preset_names()
        assert names[0] == "default" and len(set(names)) == len(names), name
        for preset in names:
            assert resolve(name, preset).config == resolve(name, cls.preset_config(preset)).config, (name, preset)
    assert METHODS["gfi"].preset_names() == ("default", "paper", "fast")
    assert resolve("gfi", "fast").config == GFIConfig.fast() and resolve("gfi").config == GFIConfig()
    assert resolve("pixel-mask", "paper").config != resolve("pixel-mask").config
