"""Saving an overlay, a comparison row or an eval plot leaves matplotlib's global backend and pyplot's
figures alone (a notebook keeps its inline backend); an unknown colour map is one line."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from gfi.errors import SettingsError
from gfi.viz.overlay import overlay

SCRIPT = r"""
import sys
import matplotlib
matplotlib.use("pdf")  # the user's backend: anything but Agg
import matplotlib.pyplot as plt
import torch
import gfi
from gfi.evaluation.plots import line_plot
from gfi.viz.compare import Panel, draw_row
from pathlib import Path

out = Path(sys.argv[1])
image = torch.rand(3, 30, 40)
gfi.save_overlay(out / "o.png", image, torch.rand(7, 7), title="t", stage1=torch.rand(7, 7))
draw_row(out / "r.png", image, [Panel("a", torch.rand(7, 7))])
line_plot(out / "p.png", [0, 1], {"a": [0.1, 0.2]}, xlabel="x", ylabel="y", title="t")
print(matplotlib.get_backend(), plt.get_fignums())
"""


def test_saving_figures_keeps_the_users_backend(tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "pdf []"
    for name in ("o.png", "r.png", "p.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_unknown_colour_map_is_one_line():
    with pytest.raises(SettingsError, match=r"unknown colour map 'jett' \(nearest: jet") as info:
        overlay(torch.rand(4, 4, 3).numpy(), torch.rand(4, 4).numpy(), "jett")
    assert "\n" not in str(info.value)
