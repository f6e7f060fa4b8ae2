"""Overlays in the style users know from pytorch-grad-cam: a colour map blended on the image.

Figures are drawn with matplotlib's object-oriented API (a ``Figure`` on its own Agg canvas):
pyplot and the global backend are never touched, so saving an overlay from a notebook leaves its
inline or interactive backend as it was.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor


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
    """The matplotlib colour map ``name``; an unknown name is a one-line :class:`SettingsError`."""
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


def explanation_figure(image: Tensor, stage1: Tensor | None, class_map: Tensor, title: str, *, cmap: str = "jet",
                       colorbar: bool = False):
    """The figure of :func:`save_explanation_figure` (a matplotlib ``Figure`` on its own canvas, not
    yet saved; :func:`new_figure`). Titles are wrapped to their panel's width, so they never run into
    each other. ``image`` is (C, H, W), shown as :func:`display_rgb` shows it."""
    img = display_rgb(image).permute(1, 2, 0).cpu().numpy()
    panels = [("input", img, None)]
    if stage1 is not None:
        panels.append(("stage 1: inversion map", overlay(img, stage1.cpu().numpy(), cmap), stage1))
    panels.append((title, overlay(img, class_map.cpu().numpy(), cmap), class_map))
    h, w = img.shape[:2]
    scale = max(h, w)
    panel_w = 3.2 * w / scale
    fig = new_figure(figsize=(panel_w * len(panels) + 0.4, 3.6 * h / scale + 0.7))
    axes = fig.subplots(1, len(panels))
    chars = max(12, int(panel_w * 72 / (9 * 0.6)))  # about 0.6 em per character at 9 pt
    for ax, (name, pic, _) in zip(np.atleast_1d(axes), panels, strict=True):
        shown = ax.imshow(pic, cmap=cmap, vmin=0, vmax=1)
        ax.set_title(short_title(name, chars), fontsize=9)
        ax.axis("off")
    if colorbar:
        fig.colorbar(shown, ax=list(np.atleast_1d(axes)), fraction=0.02, pad=0.01)
    return fig


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
    fig = explanation_figure(image, stage1, class_map, title, cmap=cmap, colorbar=colorbar)
    fig.savefig(path, dpi=100, bbox_inches="tight", format="png")


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
