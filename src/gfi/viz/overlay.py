"""Overlays in the style users know from pytorch-grad-cam: a colour map blended on the image.

The figure ``gfi explain`` writes for every map (:func:`explanation_figure`) is drawn with Pillow:
no matplotlib import (about half a second of every command), and the default colour map, ``jet``,
is matplotlib's own table (:data:`JET`). Another colour map name is looked up in matplotlib. The
comparison rows and plots use matplotlib's object-oriented API (:func:`new_figure`, a ``Figure``
on its own Agg canvas): pyplot and the global backend are never touched, so saving from a notebook
leaves its inline or interactive backend as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import Tensor

#: matplotlib's ``jet`` (its segment data: (x, value) points per channel, linear between them)
_JET_POINTS = {
    "red": ((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)),
    "green": ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)),
    "blue": ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)),
}


class LookupColormap:
    """A colour map as a 256-entry table, called like a matplotlib colour map: values in [0, 1]
    (..., ) to RGBA (..., 4), entry ``min(int(v * 256), 255)``."""

    def __init__(self, name: str, table: np.ndarray) -> None:
        self.name, self.table = name, np.concatenate([table, np.ones((len(table), 1))], 1)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        index = np.clip((np.nan_to_num(np.asarray(values, dtype=np.float64)) * 256).astype(np.int64), 0, 255)
        return self.table[index]


def _jet() -> LookupColormap:
    x = np.linspace(0.0, 1.0, 256)
    rgb = [np.interp(x, *zip(*_JET_POINTS[c], strict=True)) for c in ("red", "green", "blue")]
    return LookupColormap("jet", np.stack(rgb, 1))


#: the default colour map, without matplotlib
JET = _jet()


def display_rgb(image: Tensor) -> Tensor:
    """The (3, H, W) picture that figures show of a (C, H, W) image in [0, 1]: RGB as it is; one
    channel as grey; more than 3 channels (e.g. RGB + near infrared) by their first three as RGB; 2
    channels by the first as grey. The maps themselves use every channel; only the picture under
    them is this view."""
    c = image.shape[-3]
    if c == 3:
        return image
    if c < 3:
        return image[..., :1, :, :].expand(*image.shape[:-3], 3, *image.shape[-2:])
    return image[..., :3, :, :]


def to_original_size(saliency: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize (..., h, w) maps to ``size`` = (H, W) bilinearly, staying in [0, 1]
    (:func:`gfi.masks.channel_mask.resize_maps`; ``Explanation.resize_to`` does the same)."""
    from gfi.masks.channel_mask import resize_maps

    return resize_maps(saliency, size)


def colormap(name: str):
    """The matplotlib colour map ``name`` (``jet``: :data:`JET`, the same table without importing
    matplotlib); an unknown name is a one-line :class:`SettingsError`."""
    if name == "jet":
        return JET
    from matplotlib import colormaps

    from gfi.errors import SettingsError

    if name not in colormaps:
        import difflib

        near = difflib.get_close_matches(name, list(colormaps), n=3)
        raise SettingsError(f"unknown colour map {name!r}" + (f" (nearest: {', '.join(near)})" if near else "")
                            + "; use a matplotlib colour map name, e.g. jet, viridis or cividis (colour-blind safe)")
    return colormaps[name]


def new_figure(**kwargs):
    """A matplotlib ``Figure`` on its own Agg canvas: drawn and saved without pyplot, so the
    global backend and pyplot's figure list are left alone."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def overlay(image: np.ndarray, saliency: np.ndarray, cmap: str = "jet", alpha: float = 0.5) -> np.ndarray:
    """Blend ``cmap(saliency)`` onto an (H, W, 3) image in [0, 1]."""
    heat = colormap(cmap)(np.clip(saliency, 0, 1))[..., :3]
    return np.clip((1 - alpha) * image + alpha * heat, 0, 1)


def short_title(text: str, width: int = 26, lines: int = 3) -> str:
    """``text`` wrapped to ``width`` characters a line, at most ``lines`` lines (the last shortened
    with an ellipsis): a title that fits its panel."""
    import textwrap

    out: list[str] = []
    for part in text.split("\n"):
        out += textwrap.wrap(part, width) or [""]
    if len(out) > lines:
        out = out[:lines]
        out[-1] = out[-1][: width - 1].rstrip() + "…"
    return "\n".join(out)


@dataclass
class ExplanationFigure:
    """The figure ``gfi explain`` writes: ``image`` (a Pillow RGB image), each panel's picture at
    the image's size (``panels``: (title, (H, W, 3) array in [0, 1])) and where each title was
    drawn (``title_boxes``: (x0, y0, x1, y1) pixels, one per panel)."""

    image: object
    panels: list[tuple[str, np.ndarray]]
    title_boxes: list[tuple[int, int, int, int]] = field(default_factory=list)

    def save(self, path: str | Path) -> None:
        self.image.save(path, format="PNG")


PANEL = 320  # pixels of a panel's longer side
_GAP, _MARGIN, _FONT_SIZE, _TITLE_LINES = 12, 10, 13, 3


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: its fixed bitmap font
        return ImageFont.load_default()


def fit_title(text: str, font, width: float, lines: int = _TITLE_LINES) -> list[str]:
    """``text`` broken into at most ``lines`` lines no wider than ``width`` pixels in ``font``, at
    spaces where it can (a word longer than a line is cut); the last line shortened with an ellipsis
    when the text does not fit."""
    words = [w for part in text.split("\n") for w in [*part.split(" "), "\n"]][:-1]
    out, line = [], ""
    for word in words:
        if word == "\n":
            out.append(line)
            line = ""
            continue
        trial = f"{line} {word}" if line else word
        if font.getlength(trial) <= width:
            line = trial
            continue
        if line:
            out.append(line)
        while font.getlength(word) > width and len(word) > 1:  # a word wider than the panel: cut it
            cut = max(i for i in range(1, len(word) + 1) if font.getlength(word[:i]) <= width or i == 1)
            out.append(word[:cut])
            word = word[cut:]
        line = word
    out.append(line)
    if len(out) > lines:
        out = out[:lines]
        last = out[-1]
        while last and font.getlength(last + "…") > width:
            last = last[:-1]
        out[-1] = last.rstrip() + "…"
    return out


def explanation_figure(image: Tensor, stage1: Tensor | None, class_map: Tensor, title: str, *, cmap: str = "jet",
                       colorbar: bool = False) -> ExplanationFigure:
    """The figure of :func:`save_explanation_figure`: the image, the stage-1 map when given and the
    class map over the image, side by side, each under its title (wrapped to its panel's width, so
    titles never run into each other). ``image`` is (C, H, W), shown as :func:`display_rgb` shows
    it; the maps are (H, W). Drawn with Pillow (no matplotlib)."""
    from PIL import Image, ImageDraw

    img = display_rgb(image).permute(1, 2, 0).cpu().float().numpy()
    panels = [("input", img)]
    if stage1 is not None:
        panels.append(("stage 1: inversion map", overlay(img, stage1.cpu().numpy(), cmap)))
    panels.append((title, overlay(img, class_map.cpu().numpy(), cmap)))
    h, w = img.shape[:2]
    pw, ph = max(1, round(PANEL * w / max(h, w))), max(1, round(PANEL * h / max(h, w)))
    font = _font(_FONT_SIZE)
    line_h = _FONT_SIZE + 4
    titles = [fit_title(name, font, pw) for name, _ in panels]
    title_h = line_h * max(len(t) for t in titles)  # as high as the longest title
    bar_w = 44 if colorbar else 0
    width = 2 * _MARGIN + len(panels) * pw + (len(panels) - 1) * _GAP + bar_w
    height = 2 * _MARGIN + title_h + 4 + ph
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    boxes = []
    for i, ((_, pic), rows) in enumerate(zip(panels, titles, strict=True)):
        x = _MARGIN + i * (pw + _GAP)
        tile = Image.fromarray((np.clip(pic, 0, 1) * 255).round().astype(np.uint8), "RGB")
        canvas.paste(tile.resize((pw, ph), Image.Resampling.BILINEAR), (x, _MARGIN + title_h + 4))
        top = _MARGIN + title_h - line_h * len(rows)  # the title sits just above its panel
        box = [x + pw, top, x, top + line_h * len(rows)]
        for j, row in enumerate(rows):
            tw = font.getlength(row)
            tx = x + (pw - tw) / 2
            draw.text((tx, top + j * line_h), row, fill="black", font=font)
            box[0], box[2] = min(box[0], int(tx)), max(box[2], int(tx + tw + 1))
        boxes.append(tuple(box))
    if colorbar:
        x0, y0 = width - _MARGIN - bar_w + 8, _MARGIN + title_h + 4
        ramp = colormap(cmap)(np.linspace(1, 0, ph))[:, :3]
        bar = Image.fromarray((np.repeat(ramp[:, None], 12, 1) * 255).round().astype(np.uint8), "RGB")
        canvas.paste(bar, (x0, y0))
        draw.text((x0 + 15, y0 - 2), "1", fill="black", font=font)
        draw.text((x0 + 15, y0 + ph - line_h), "0", fill="black", font=font)
    return ExplanationFigure(canvas, panels, boxes)


def save_explanation_figure(
    path: str | Path,
    image: Tensor,
    stage1: Tensor | None,
    class_map: Tensor,
    title: str,
    *,
    cmap: str = "jet",
    colorbar: bool = False,
) -> None:
    """A PNG with the image, the stage-1 inversion map and the class map (all at the image's size)."""
    explanation_figure(image, stage1, class_map, title, cmap=cmap, colorbar=colorbar).save(path)


def save_overlay(path: str | Path, image: Tensor, saliency: Tensor, *, title: str = "", cmap: str = "jet",
                 stage1: Tensor | None = None, colorbar: bool = False) -> Path:
    """Save the figure ``gfi explain`` writes: the image, GFI's stage-1 map when given, and
    ``saliency`` over the image. ``image`` is (C, H, W) in [0, 1] (1 channel: shown grey; more than 3:
    their first three as RGB, :func:`display_rgb`); the maps are resized to it."""
    size = tuple(image.shape[-2:])
    stage1 = None if stage1 is None else to_original_size(stage1.detach().cpu(), size)
    save_explanation_figure(path, image.detach().cpu(), stage1, to_original_size(saliency.detach().cpu(), size),
                            title, cmap=cmap, colorbar=colorbar)
    return Path(path)
