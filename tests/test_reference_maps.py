"""The maps of the default and ``paper`` presets on the bundled photo equal those computed before
an architecture change (``tests/fixtures/reference/``; the command that made them is in
``make_reference_maps.py``), and those of the rivals (the default's since) equal the maps computed
when they were added; all in float64, so that the comparison holds on any CPU."""

import numpy as np
import pytest

from tests.fixtures.reference.make_reference_maps import HERE, PRESETS, compute

REFERENCE = np.load(HERE / "reference_maps.npz")


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_preset_maps_equal_the_stored_reference(preset):
    got = compute(preset)
    # rows: stage 1, golden retriever (207), tabby (281)
    np.testing.assert_allclose(got["pooled"], REFERENCE[f"{preset}_pooled"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(got["sum"], REFERENCE[f"{preset}_sum"], rtol=1e-5)
    np.testing.assert_array_equal(got["argmax"], REFERENCE[f"{preset}_argmax"])
