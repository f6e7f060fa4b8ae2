"""Overlay figures: titles never overlap (issue 16), and name their method."""

import itertools

import numpy as np
import torch

from gfi.viz.overlay import explanation_figure, short_title


def test_short_title_wraps_and_shortens():
    assert short_title("a" * 10, 26) == "a" * 10
    t = short_title("German shepherd, German shepherd dog, German police dog, alsatian (235), p=0.43", 20, 2)
    assert len(t.splitlines()) == 2 and all(len(x) <= 20 for x in t.splitlines()) and t.endswith("…")


def test_titles_of_a_long_class_name_do_not_intersect():
    """On dog_bike_truck.jpg the class title ran over "stage 1: inversion map" and was cut mid-word:
    titles are wrapped to their panel, their boxes are apart and inside the figure, and every dark
    pixel above the panels lies in a title's box."""
    image = torch.rand(3, 60, 90)
    title = "gfi: German shepherd, German shepherd dog, German police dog, alsatian (235), p=0.43"
    for stage1 in (torch.rand(60, 90), None):
        fig = explanation_figure(image, stage1, torch.rand(60, 90), title)
        boxes = fig.title_boxes
        assert len(boxes) == (3 if stage1 is not None else 2)
        for a, b in itertools.combinations(boxes, 2):
            assert a[2] <= b[0] or b[2] <= a[0], (a, b)
        width, _ = fig.image.size
        assert all(b[0] >= 0 and b[2] <= width for b in boxes)  # nothing cut at the edges
        assert fig.panels[-1][0].startswith("gfi: German shepherd")
        pic = np.asarray(fig.image.convert("L"))
        top = max(b[3] for b in boxes)
        ys, xs = np.nonzero(pic[:top] < 128)
        assert len(xs) > 100  # the titles were drawn
        inside = np.zeros(len(xs), bool)
        for x0, y0, x1, y1 in boxes:
            inside |= (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
        assert inside.all()


def test_the_default_colour_map_is_matplotlibs_jet_without_matplotlib(tmp_path):
    import subprocess
    import sys

    from matplotlib import colormaps

    from gfi.viz.overlay import JET

    x = np.linspace(0, 1, 4097)
    np.testing.assert_allclose(JET(x), colormaps["jet"](x), atol=1e-12)
    code = ("import sys, torch\nfrom gfi.viz.overlay import save_overlay\n"
            "save_overlay(sys.argv[1], torch.rand(3, 20, 30), torch.rand(20, 30), title='t', stage1=torch.rand(5, 5))\n"
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "o.png")], capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.strip() == "False"
