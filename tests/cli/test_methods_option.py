"""``gfi methods`` lists every baseline and ``gfi explain --method NAME`` builds it by name."""

from __future__ import annotations

import json

from gfi.cli import main
from gfi.methods.registry import METHODS

BASELINES = ("gradient", "guided-backprop", "smoothgrad", "integrated-gradients", "lrp", "gradcam", "cam", "mask",
             "pixel-mask", "rise", "extremal", "center")


def test_methods_lists_every_baseline_with_a_summary(capsys):
    assert main(["methods"]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines() if ln.strip()}
    for name in (*BASELINES, "gfi", "gfi-stage1"):
        assert name in METHODS and name in lines, name
        assert len(lines[name].split(maxsplit=1)) == 2, f"{name} has no summary"


def test_explain_runs_a_baseline_by_name_and_refuses_one_that_cannot_run(tmp_path, capsys):
    assert main(["explain", "--method", "cam", "--out", str(tmp_path / "cam"), "--quiet"]) == 0
    res = json.loads((tmp_path / "cam" / "results.json").read_text())
    assert res["method"] == "cam"
    assert main(["explain", "--method", "lrp", "--out", str(tmp_path / "lrp"), "--quiet"]) == 2
    assert "no propagation rule for" in capsys.readouterr().err
