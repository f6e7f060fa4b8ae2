"""A tiny method defined in one file, as a plugin package would define it (tests/methods/test_plugin.py
registers it): the drop of the class score f_c when one cell of a grid is greyed out.

Everything gfi needs is on the class: its name and summary, its settings (typed fields with help,
which become ``--grid`` and ``--fill`` on the command line), what it needs and supports, and the
settings the tests run it with. A package registers it with one entry point::

    [project.entry-points."gfi.methods"]
    tiny-occlusion = "my_package.occlusion:Occlusion"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from gfi.methods.base import Explainer, Explanation, TargetsLike
from gfi.settings import Settings, setting


@dataclass(frozen=True)
class OcclusionSettings(Settings):
    """What decides an occlusion map."""

    grid: int = setting(4, "cells per side of the occluding grid", low=1)
    fill: float = setting(0.5, "the grey that replaces a cell", low=0, high=1)


class Occlusion(Explainer):
    name = "tiny-occlusion"
    summary = "Occlusion on a grid (a plugin example): the drop of f_c when one cell is greyed out"
    settings_class = OcclusionSettings
    needs_module = False  # it only calls the model
    shares_across_targets = "all"  # one batch of occluded images scores every target
    test_settings: ClassVar[dict[str, Any]] = {"grid": 2}
    config: OcclusionSettings

    def _explain(self, images: Tensor, targets: TargetsLike) -> Explanation:
        t, probs = self._targets_and_probs(images, targets)
        (b, _, h, w), g = images.shape, self.config.grid
        cells = torch.eye(g * g, device=images.device, dtype=images.dtype).view(g * g, 1, g, g)
        masks = F.interpolate(cells, size=(h, w), mode="nearest")  # (G², 1, H, W): one cell each
        occluded = images[:, None] * (1 - masks) + self.config.fill * masks  # (B, G², 3, H, W)
        with torch.no_grad():
            scores = self.classifier.scores(self.classifier(occluded.flatten(0, 1)).float()).view(b, g * g, -1)
        drop = (probs[:, None, :] - scores.gather(2, t[:, None, :].expand(-1, g * g, -1))).clamp(min=0)
        maps = torch.einsum("bnk,nhw->bkhw", drop, masks[:, 0])  # each cell's drop over its pixels
        top = maps.amax((-2, -1), keepdim=True)
        maps = torch.where(top > 0, maps / top.clamp(min=1e-12), torch.zeros_like(maps))
        return Explanation(maps=maps, targets=t, method=self.name, probs=probs)
