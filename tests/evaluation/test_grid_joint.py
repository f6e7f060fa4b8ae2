"""``gfi eval grid`` explains the four classes of a grid in one call, in the joint mode given (default
independent: each map is its class's map alone) and records the mode."""

from __future__ import annotations

import numpy as np

from gfi.evaluation.registry import EXPERIMENTS
from tests.evaluation.helpers import evaluate, summary
from tests.evaluation.test_grid import colour_clf, colour_folder  # noqa: F401  (fixture)

FAST = {"iters1": "2", "iters2": "3"}


def test_grid_uses_the_mode_given_and_records_it(tmp_path, colour_clf):  # noqa: F811
    from gfi.data.images import load_image
    from gfi.evaluation.grid import doubled
    from gfi.methods.gfi import GuidedFeatureInversion

    data = colour_folder(tmp_path / "data")
    default = tmp_path / "default"
    evaluate("grid", colour_clf, data=data, method="gfi", out=default, batch_size=1, grids="1", overrides=FAST)
    s = summary(default)
    assert s["joint"] == "independent" and s["method_settings"]["config"]["joint"] == "independent"
    assert EXPERIMENTS["grid"].headline(s).endswith("joint=independent")
    # each of the four maps is its class explained alone on the grid, bit for bit
    grid = next((default / "grids").glob("*.png"))
    big = doubled(colour_clf)
    x = big.prepare(load_image(grid))
    alone = GuidedFeatureInversion(big, **{k: int(v) for k, v in FAST.items()})
    for c in range(4):
        stored = np.load(default / "maps" / f"{grid.stem}_{c}.npy")
        want = alone.explain(x, [[c]]).maps[0, 0].clamp(0, 1).float().numpy()
        assert np.array_equal(stored, want), c
    separate = tmp_path / "separate"
    evaluate("grid", colour_clf, data=data, method="gfi", out=separate, batch_size=1, grids="1",
             overrides={**FAST, "joint": "separate"})
    assert summary(separate)["joint"] == "separate"
    assert summary(separate)["method_settings"]["config"]["joint"] == "separate"
    gradcam = tmp_path / "gradcam"
    evaluate("grid", colour_clf, data=data, method="gradcam", out=gradcam, grids="1")
    assert summary(gradcam)["joint"] is None  # a method whose maps never depend on the other targets
