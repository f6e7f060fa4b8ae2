"""Side-by-side figures of saliency maps (the layouts of the paper's Figures 2, 3 and 5).

One row: the input, then one panel per map, each overlaid on the image with a colour map (jet by
default, like pytorch-grad-cam; ``cividis`` is colour-blind safe). A panel without a map shows its
text instead (e.g. why a method cannot run on the model). PNGs are written with a 256-colour
palette to stay small.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor

from gfi.persist import atomic_create, atomic_write, check_out_file
from gfi.viz.overlay import display_rgb, new_figure, overlay, to_original_size


@dataclass
class Panel:
    """One column: a title and a (H, W) map in [0, 1] at any size (resized to the image), or a text."""

    title: str
    saliency: Tensor | None = None
    text: str = ""
    raw: bool = False  # show the map itself (no image under it)


def display_image(image: Tensor, max_side: int = 320) -> Tensor:
    """The (C, H, W) image shrunk so that its longer side is at most ``max_side`` (figures stay small)."""
    import torch.nn.functional as F

    h, w = image.shape[-2:]
    scale = max_side / max(h, w)
    if scale >= 1:
        return image
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)[0]


def draw_row(path: str | Path, image: Tensor, panels: list[Panel], *, cmap: str = "jet", colorbar: bool = False,
             note: str = "", input_title: str = "input", max_side: int = 320, replace: bool = False) -> Path:
    """Write the figure as a PNG: the input and one column per panel. Returns the path. Drawn without
    pyplot (:func:`gfi.viz.overlay.new_figure`): the global matplotlib backend is left alone. Written
    whole or not at all (a temporary file renamed); a file already at ``path`` is replaced only when
    ``replace`` (a link there is replaced itself, never followed), else refused."""
    from PIL import Image

    img_t = display_image(display_rgb(image.cpu()), max_side)
    img = img_t.permute(1, 2, 0).clamp(0, 1).numpy()
    h, w = img.shape[:2]
    n = len(panels) + 1
    col_w, title_h, note_h = 2.0, 0.4, (0.22 if note else 0.04)
    fig_w, fig_h = col_w * n * 1.02, col_w * h / w + title_h + note_h
    grid = dict(left=0.005, right=0.94 if colorbar else 0.995, bottom=note_h / fig_h, top=1 - title_h / fig_h,
                wspace=0.02)
    fig = new_figure(figsize=(fig_w, fig_h))
    axes = fig.subplots(1, n, squeeze=False, gridspec_kw=grid)[0]
    axes[0].imshow(img)
    axes[0].set_title(input_title, fontsize=8)
    shown = None
    for ax, panel in zip(axes[1:], panels, strict=True):
        if panel.saliency is None:
            ax.imshow(np.ones_like(img) * 0.92)
            ax.text(0.5, 0.5, panel.text, ha="center", va="center", fontsize=6, wrap=True, transform=ax.transAxes)
        else:
            sal = to_original_size(panel.saliency.detach().float().cpu(), (h, w)).numpy()
            shown = ax.imshow(sal if panel.raw else overlay(img, sal, cmap), cmap=cmap, vmin=0, vmax=1)
        ax.set_title(panel.title, fontsize=7)
    for ax in axes:
        ax.axis("off")
    if colorbar and shown is not None:
        fig.colorbar(shown, ax=list(axes), fraction=0.015, pad=0.01)
    if note:
        fig.text(0.005, 0.03 / fig_h, note, fontsize=6, ha="left", va="bottom")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf.seek(0)
    png = Image.open(buf).convert("RGB").quantize(256)
    write = lambda p: png.save(p, format="PNG", optimize=True)  # noqa: E731
    check_out_file(path, replace)
    if replace:
        atomic_write(path, write)
    elif not atomic_create(path, write):  # a file appeared there meanwhile: refused as above
        check_out_file(path, replace=False)
    return path
