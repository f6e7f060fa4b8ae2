"""The evidence check in a folder job (gfi explain, gfi.explain_folder): every map's record carries
its verdict, a map that does not hold its class's evidence is one line on the terminal with what to
try and a marked row in report.html, and results.json states the check and counts the failures.

The model sees only the top-left quadrant of its 16x16 input (tests/methods/region_net.py); a
planted method puts its map there, on the opposite quadrant (placed there by hand) or nowhere."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import pytest
import torch
from PIL import Image

from gfi.methods.base import Explainer, Explanation, TargetsLike
from gfi.methods.registry import register, unregister
from gfi.settings import Settings, setting
from tests.cli.test_reliability import results, run
from tests.methods.region_net import SIZE, region_classifier

HALF = SIZE // 2


@dataclass(frozen=True)
class PlantedSettings(Settings):
    where: Literal["evidence", "opposite", "nowhere"] = setting("evidence", "where the map is put")


class Planted(Explainer):
    """A map put by hand: on the quadrant the model sees, on the opposite one, or all zeros."""

    name = "planted-map"
    summary = "a map put by hand (a test of the evidence check)"
    settings_class = PlantedSettings
    needs_module = False
    shares_across_targets = "all"
    test_settings: ClassVar[dict[str, Any]] = {}
    config: PlantedSettings

    def _explain(self, images: torch.Tensor, targets: TargetsLike) -> Explanation:
        t, probs = self._targets_and_probs(images, targets)
        maps = images.new_zeros(*t.shape, *images.shape[-2:])
        if self.config.where == "evidence":
            maps[..., :HALF, :HALF] = 1.0
        elif self.config.where == "opposite":
            maps[..., HALF:, HALF:] = 1.0
        return Explanation(maps=maps, targets=t, method=self.name, probs=probs)


@pytest.fixture
def planted(monkeypatch):
    import gfi.models.presets as presets

    register(Planted)
    monkeypatch.setattr(presets, "load_model", lambda *a, **k: (region_classifier(), {
        "model": "region", "weights": "random", "sha256": None}))
    yield
    unregister(Planted.name)


def noise_image(folder, name="photo.png"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    Image.fromarray((rng.random((SIZE, SIZE, 3)) * 255).astype(np.uint8)).save(folder / name)
    return folder / name


def evidence_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "class's evidence" in line]


def test_a_map_on_the_wrong_region_is_one_line_a_record_and_a_marked_row(tmp_path, capsys, planted):
    image = noise_image(tmp_path / "in")
    out = tmp_path / "o"
    rc, _, err = run(["explain", str(image), "--method", "planted-map", "--where", "opposite", "--target", "zero",
                      "--out", str(out)], capsys)
    assert rc == 0, err
    t = results(out)["images"][0]["targets"][0]
    ev = t["evidence"]
    assert ev["holds"] is False and ev["problem"] == "kept_below_removed"
    assert 0 <= ev["prob_kept"] < ev["prob_removed"] <= 1
    lines = evidence_lines(err)
    assert len(lines) == 1, err
    from gfi.viz.report import format_prob

    assert lines[0] == (f"gfi: {image}, zero: the map does not hold the class's evidence (p kept "
                        f"{format_prob(ev['prob_kept'])} < p removed {format_prob(ev['prob_removed'])}); try gfi on "
                        "this image"), lines[0]
    res = results(out)
    assert res["evidence_failures"] == 1
    assert res["evidence_check"]["background"] == {"kind": "blur", "kernel": 81, "sigma": 20.0}
    assert res["evidence_check"]["same_for_every_method"] is True
    html = (out / "report.html").read_text()
    assert html.count('<tr class="fails">') == 1 and '<td class="warn" data-v="0">fails</td>' in html
    assert "does not hold the class&#x27;s evidence: p kept" in html
    assert "1 map without the class&#x27;s evidence" in html


def test_a_map_on_the_evidence_passes_silently(tmp_path, capsys, planted):
    out = tmp_path / "o"
    rc, _, err = run(["explain", str(noise_image(tmp_path / "in")), "--method", "planted-map", "--target", "zero",
                      "--out", str(out)], capsys)
    assert rc == 0 and evidence_lines(err) == []
    res = results(out)
    ev = res["images"][0]["targets"][0]["evidence"]
    assert ev["holds"] is True and ev["problem"] is None and ev["prob_kept"] > ev["prob_removed"]
    assert res["evidence_failures"] == 0
    html = (out / "report.html").read_text()
    assert 'class="fails"' not in html and '<td data-v="1">holds</td>' in html and "without the class" not in html


def test_an_all_zero_map_is_empty(tmp_path, capsys, planted):
    image = noise_image(tmp_path / "in")
    out = tmp_path / "o"
    rc, _, err = run(["explain", str(image), "--method", "planted-map", "--where", "nowhere", "--target", "zero",
                      "--out", str(out)], capsys)
    assert rc == 0
    ev = results(out)["images"][0]["targets"][0]["evidence"]
    assert ev == {"holds": False, "problem": "empty", "prob_kept": ev["prob_kept"],
                  "prob_removed": ev["prob_removed"]}
    (line,) = evidence_lines(err)
    assert line.startswith(f"gfi: {image}, zero: the map is flat (all zeros, or one value everywhere): it marks no "
                           "region, so it holds none of the class's evidence; try gfi on this image")
    assert "the map is flat: it marks no region" in (out / "report.html").read_text()


def test_gfi_records_its_own_scores_beside_the_checks(tmp_path, capsys, planted):
    """GFI's record keeps its own prob_kept / prob_removed (its soft mask under its stage-2 background)
    beside the check's, which is computed as for every method."""
    out = tmp_path / "o"
    rc, _, err = run(["explain", str(noise_image(tmp_path / "in")), "--target", "zero", "--iters1", "3",
                      "--iters2", "3", "--out", str(out)], capsys)
    assert rc == 0, err
    t = results(out)["images"][0]["targets"][0]
    assert {"prob_kept", "prob_removed", "evidence"} <= set(t)
    assert set(t["evidence"]) == {"holds", "problem", "prob_kept", "prob_removed"}


def test_explain_folder_in_python_records_the_check(tmp_path, planted):
    import logging

    import gfi

    heard: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: heard.append(record.getMessage())
    logging.getLogger("gfi").addHandler(handler)
    try:
        result = gfi.explain_folder(noise_image(tmp_path / "in"), tmp_path / "o", method="planted-map",
                                    targets="zero", where="opposite")
    finally:
        logging.getLogger("gfi").removeHandler(handler)
    assert result.images[0]["targets"][0]["evidence"]["holds"] is False
    assert result.summary["evidence_failures"] == 1
    assert [m for m in heard if "does not hold the class's evidence" in m], heard


def test_a_run_resumed_from_records_without_the_check_still_renders(tmp_path):
    """A record written before the check (no "evidence") shows GFI's own scores and no flag."""
    from gfi.viz.report import render_report

    summary = {"images": [{"image": "a.png", "targets": [{"class": 1, "class_name": "one", "prob": 0.5,
                                                          "prob_kept": 0.4, "prob_removed": 0.1}],
                           "top5": [], "seconds_per_image": 1.0}], "failures": []}
    html = render_report(summary, tmp_path)
    assert "p kept" in html and ">0.4<" in html and '<tr class="fails">' not in html and ">evidence<" not in html
