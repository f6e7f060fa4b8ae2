"""Every method behind the common interface and the registry, on a model whose logits depend on one
quadrant only (``center`` is excluded from the region test: it is a fixed centred Gaussian)."""

import pytest

from gfi.errors import UsageError
from gfi.methods import InversionExplanation
from gfi.methods.base import Explainer
from gfi.methods.registry import METHODS, get_method, method_class
from tests import cli_tiny
from tests.methods.region_net import SIZE, in_region


@pytest.mark.parametrize("name", [n for n in METHODS if n != "center"])
def test_map_maximum_lies_in_the_only_region_the_model_sees(region, name):
    """With its test settings (``test_settings``: the small settings every test runs a method with;
    the methods' own defaults are the published ones)."""
    clf, x = region
    e = get_method(name, clf, **METHODS[name].test_settings).explain(x, 0)
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
    """cheaper and test_settings: valid settings of the method's own; every preset is its settings."""
    for name, cls in METHODS.items():
        assert issubclass(cls, Explainer)
        cls.settings_class().with_overrides(cls.cheaper)  # the cheaper settings are valid settings
        get_method(name, cli_tiny.make(), **cls.test_settings)  # and so are the test settings
        for preset in cls.preset_names():
            assert isinstance(cls.preset_config(preset), cls.settings_class), (name, preset)


@pytest.mark.parametrize("name", list(METHODS))
def test_has_stage1_says_whether_the_explanation_carries_a_stage1_map(region, name):
    clf, x = region
    cls = METHODS[name]
    e = get_method(name, clf, **cls.test_settings).explain(x[:1], 0)
    if cls.has_stage1:  # its explanation is an InversionExplanation, with the map
        assert isinstance(e, InversionExplanation) and e.stage1_map.shape == (1, SIZE, SIZE), name
    else:  # no stage-1 field at all, not a None one
        assert not isinstance(e, InversionExplanation) and e.get("stage1_map") is None, name
