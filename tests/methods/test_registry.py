"""Every method behind the common interface and the registry, on a model whose logits depend on one
quadrant only (``center`` is excluded from the region test: it is a fixed centred Gaussian)."""

import pytest

from gfi.errors import UsageError
from gfi.methods.base import Explainer
from gfi.methods.registry import METHODS, get_method, method_class
from tests.methods.region_net import SIZE, in_region

# small settings so the whole file runs in seconds; the methods' own defaults are the published ones
FAST = {
    "gfi": {"iters1": 10, "iters2": 20},
    "gfi-stage1": {"iters1": 10},
    "mask": {"iterations": 60, "mask_size": 8, "mask_blur_sigma": 1.0, "blur_sigma": 3.0},
    "smoothgrad": {"samples": 8},
    "integrated-gradients": {"steps": 16},
    "rise": {"n_masks": 500, "grid": 4},
    # no flip jitter: the test model looks at the left quadrant only, so it is not flip-invariant
    "extremal": {"iterations": 100, "step": 2, "sigma": 3.0, "areas": (0.1, 0.2), "jitter": False},
}


@pytest.mark.parametrize("name", [n for n in METHODS if n != "center"])
def test_map_maximum_lies_in_the_only_region_the_model_sees(region, name):
    clf, x = region
    e = get_method(name, clf, **FAST.get(name, {})).explain(x, 0)
    assert e.maps.shape == (2, 1, SIZE, SIZE)
    assert e.method == name
    assert float(e.maps.min()) >= 0 and float(e.maps.max()) <= 1
    for b in range(2):
        assert in_region(e.maps[b, 0]), f"{name}: image {b} map maximum outside the quadrant"


def test_every_method_has_a_summary_and_runs_through_the_registry():
    for name, cls in METHODS.items():
        assert cls.name == name and cls.summary, name


def test_method_class_names_the_valid_methods():
    assert method_class("gradcam").name == "gradcam"
    with pytest.raises(UsageError, match=r"unknown method 'nope'; valid methods: gfi, gfi-stage1, gradcam"):
        method_class("nope")
    with pytest.raises(ValueError, match="unknown method"):
        get_method("nope", None)


def test_methods_say_what_they_are_through_class_attributes():
    """has_stage1: the Explanation carries a stage-1 map; cheaper: valid settings of the method's own."""
    assert {n for n, c in METHODS.items() if c.has_stage1} == {"gfi", "gfi-stage1", "pixel-mask"}
    assert {n for n, c in METHODS.items() if c.cheaper} == {"mask", "smoothgrad", "integrated-gradients", "rise",
                                                              "extremal"}
    for name, cls in METHODS.items():
        assert issubclass(cls, Explainer)
        cls.settings_class().with_overrides(cls.cheaper)  # the cheaper settings are valid settings
        for preset in cls.presets:
            assert isinstance(cls.preset_config(preset), cls.settings_class), (name, preset)


def test_has_stage1_methods_return_a_stage1_map(region):
    clf, x = region
    for name, cls in METHODS.items():
        if cls.has_stage1:
            e = get_method(name, clf, **FAST.get(name, {})).explain(x[:1], 0)
            assert e.stage1_map is not None and e.stage1_map.shape == (1, SIZE, SIZE), name
