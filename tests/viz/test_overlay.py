"""Overlay figures: titles never overlap (issue 16), and name their method."""

import itertools

import torch

from gfi.viz.overlay import explanation_figure, short_title


def test_short_title_wraps_and_shortens():
    assert short_title("a" * 10, 26) == "a" * 10
    t = short_title("German shepherd, German shepherd dog, German police dog, alsatian (235), p=0.43", 20, 2)
    assert len(t.splitlines()) == 2 and all(len(x) <= 20 for x in t.splitlines()) and t.endswith("…")


def test_titles_of_a_long_class_name_do_not_intersect():
    """On dog_bike_truck.jpg the class title ran over "stage 1: inversion map" and was cut mid-word."""
    image = torch.rand(3, 60, 90)
    title = "gfi: German shepherd, German shepherd dog, German police dog, alsatian (235), p=0.43"
    for stage1 in (torch.rand(60, 90), None):
        fig = explanation_figure(image, stage1, torch.rand(60, 90), title)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        boxes = [ax.title.get_window_extent(renderer) for ax in fig.axes]
        assert len(boxes) == (3 if stage1 is not None else 2)
        for a, b in itertools.combinations(boxes, 2):
            assert not a.overlaps(b), (a, b)
        fig_box = fig.bbox
        assert all(fig_box.x0 <= b.x0 and b.x1 <= fig_box.x1 for b in boxes)  # nothing cut at the edges
        assert fig.axes[-1].title.get_text().startswith("gfi: German shepherd")
