"""``gfi eval grid --contrastive BETA``: every method is given each class against the grid's other
three (``targets.Contrastive``, y_c - BETA x their mean logit); the option is recorded, and the map
store keys on it, so maps made for one target are never served for another."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gfi.errors import SettingsError
from gfi.evaluation.registry import EXPERIMENTS
from gfi.targets import Contrastive
from tests.evaluation.helpers import evaluate, lines, summary
from tests.evaluation.test_grid import colour_clf, colour_folder  # noqa: F401  (fixture)

FAST = {"iters1": "2", "iters2": "3"}


def _grid_input(out, clf):
    from gfi.data.images import load_image
    from gfi.evaluation.grid import doubled

    grid = next((out / "grids").glob("*.png"))
    big = doubled(clf)
    return grid.stem, big, big.prepare(load_image(grid))


@pytest.mark.parametrize("method,overrides", [("gradcam", {}), ("gfi", FAST)])
def test_each_class_is_explained_against_the_grids_other_three(tmp_path, colour_clf, method,  # noqa: F811
                                                               overrides, monkeypatch):
    from gfi.methods.registry import get_method, method_class

    cls = method_class(method)
    given, real = [], cls.explain

    def spy(self, images, targets, *a, **k):
        given.append([list(t) for t in targets])
        return real(self, images, targets, *a, **k)

    monkeypatch.setattr(cls, "explain", spy)
    data = colour_folder(tmp_path / "data")
    out = tmp_path / "c"
    evaluate("grid", colour_clf, data=data, method=method, out=out, grids="1", batch_size=1, contrastive="0.5",
             overrides=overrides)
    s = summary(out)
    assert s["contrastive"] == 0.5 and "other three" in s["information"]
    assert s["method_settings"]["target"] == {"contrastive": 0.5, "others": "the other classes of the grid"}
    assert json.loads((out / "options.json").read_text())["grid"]["contrastive"] == 0.5
    assert EXPERIMENTS["grid"].headline(s).endswith("contrastive=0.5")
    # each stored map is the method's map of Contrastive(c, the other three, 0.5) on the grid, bit for bit
    stem, big, x = _grid_input(out, colour_clf)
    classes = lines(out)[0]["targets"]
    order = [t["class"] for t in classes]
    explainer = get_method(method, big, None, **{k: int(v) for k, v in overrides.items()})
    want_targets = [Contrastive(c, [o for o in order if o != c], beta=0.5) for c in order]
    want = explainer.explain(x, [want_targets])
    assert [[t.describe() for t in row] for row in given[0]] == [[t.describe() for t in want_targets]]
    assert all(isinstance(t, Contrastive) for t in given[0][0])
    for k, c in enumerate(order):
        stored = np.load(out / "maps" / f"{stem}_{c}.npy")
        assert np.array_equal(stored, want.maps[0, k].clamp(0, 1).float().numpy()), c
    alone_run = tmp_path / "alone"
    evaluate("grid", colour_clf, data=data, method=method, out=alone_run, grids="1", batch_size=1,
             overrides=overrides)
    assert given[-1] == [order]  # alone: the class indices themselves
    s_alone = summary(alone_run)
    assert s_alone["contrastive"] is None and s_alone["information"] == "each class alone"
    assert "target" not in s_alone["method_settings"]
    assert not EXPERIMENTS["grid"].headline(s_alone).endswith("contrastive=0.5")


def test_the_map_store_never_serves_maps_of_another_target(tmp_path, colour_clf):  # noqa: F811
    from gfi.evaluation.mapstore import MapStoreError

    data = colour_folder(tmp_path / "data")
    maps = tmp_path / "maps"
    evaluate("grid", colour_clf, data=data, method="gradcam", out=tmp_path / "a", maps=maps, grids="1")
    # maps of each class alone are not maps of the class against the others, nor the reverse
    with pytest.raises(MapStoreError, match=r"made with other settings.*target"):
        evaluate("grid", colour_clf, data=data, method="gradcam", out=tmp_path / "b", maps=maps, grids="1",
                 contrastive="0.5")
    contrastive = tmp_path / "cmaps"
    first = evaluate("grid", colour_clf, data=data, method="gradcam", out=tmp_path / "c", maps=contrastive,
                     grids="1", contrastive="0.5")
    assert json.loads((contrastive / "_maps.json").read_text())["target"]["contrastive"] == 0.5
    with pytest.raises(MapStoreError, match=r"target: \{'contrastive': 0.5.*\{'contrastive': 0.25"):
        evaluate("grid", colour_clf, data=data, method="gradcam", out=tmp_path / "d", maps=contrastive,
                 grids="1", contrastive="0.25")
    with pytest.raises(MapStoreError, match=r"made with other settings.*target"):
        evaluate("grid", colour_clf, data=data, method="gradcam", out=tmp_path / "e", maps=contrastive, grids="1")
    # the same BETA is served from the store
    again = evaluate("grid", colour_clf, data=data, method="gradcam", out=tmp_path / "f", maps=contrastive,
                     grids="1", contrastive="0.5")
    (s1,), (s2,) = first.values(), again.values()
    assert s2["n_maps_cached"] == 1 and s2["mass_share"] == s1["mass_share"]
    # another BETA in the same output folder is refused (its lines depend on the targets)
    with pytest.raises(ValueError, match=r"other options|differ"):
        evaluate("grid", colour_clf, data=data, method="gradcam", out=tmp_path / "c", maps=contrastive,
                 grids="1", contrastive="1")


def test_cli_contrastive(tmp_path, colour_clf, capsys):  # noqa: F811
    from gfi.cli import build_parser
    from gfi.cli.eval import run

    data = colour_folder(tmp_path / "data")
    out = tmp_path / "cli"
    argv = ["eval", "grid", "--data", str(data), "--method", "gradcam", "--grids", "1", "--contrastive=0.5",
            "--out", str(out), "--quiet", "--threads", "1"]
    assert run(build_parser(["eval", "grid"]).parse_args(argv), classifier=colour_clf) == 0
    assert capsys.readouterr().out.rstrip().endswith("contrastive=0.5")
    assert summary(out)["options"]["contrastive"] == 0.5
    bad = [a if a != "--contrastive=0.5" else "--contrastive=-1" for a in argv[:-5]]
    with pytest.raises(SettingsError, match="contrastive must be >= 0, got -1") as err:
        run(build_parser(["eval", "grid"]).parse_args([*bad, "--out", str(tmp_path / "x")]), classifier=colour_clf)
    assert "\n" not in str(err.value) and not (tmp_path / "x").exists()
