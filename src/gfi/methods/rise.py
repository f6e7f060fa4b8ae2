r"""RISE, Randomized Input Sampling for Explanation (Petsiuk, Das, Saenko, BMVC 2018).

Saliency of class c at pixel u (Eq. 6 of the paper, Monte-Carlo estimate)::

    S_c(u) = 1 / (N p) * sum_{i=1}^N f_c(x * M_i) M_i(u)

with f_c the softmax probability (a :mod:`gfi.targets` target: its own score) and M_i random
masks built as in the paper (Sec. 3.2): a binary s x s grid with each cell 1 with probability p,
upsampled bilinearly to (s + 1) * ceil(H / s) and cropped to H x W at a random offset in
[0, ceil(H / s)) per axis (so the mask edges are not on a fixed grid). Masked-out pixels are 0
(black) in pixel space, as in the paper.

Published setting: N = 4000 (ResNet-50; 8000 for VGG-16), s = 7, p = 0.5: the default here.
Cheaper documented setting (``cheaper``): N = 1000. The masks are drawn once per call from
``seed`` (the same masks for every image of the batch) and evaluated in batches of ``batch_size``
masked images (a run option; default 64); one forward gives every class, so all K targets cost the same as one.
The map is min-max normalised.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from gfi.errors import SettingsError
from gfi.masks.channel_mask import min_max
from gfi.methods.base import Explainer, Explanation, RunOptions, TargetsLike
from gfi.models.classifier import Classifier
from gfi.models.layers import frozen
from gfi.settings import Settings, setting
from gfi.targets import TargetGrid


def rise_masks(n: int, s: int, p: float, size: tuple[int, int], generator: torch.Generator) -> Tensor:
    """N random masks (N, H, W) in [0, 1] (Sec. 3.2 of the paper)."""
    h, w = size
    ch, cw = math.ceil(h / s), math.ceil(w / s)
    grid = (torch.rand(n, 1, s, s, generator=generator) < p).float()
    up = F.interpolate(grid, size=((s + 1) * ch, (s + 1) * cw), mode="bilinear", align_corners=False)[:, 0]
    dy = torch.randint(0, ch, (n,), generator=generator)
    dx = torch.randint(0, cw, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, :]
    return up[torch.arange(n)[:, None, None], rows, cols]


def rise_saliency(classifier: Classifier, images: Tensor, masks: Tensor, targets: Tensor | TargetGrid, p: float,
                  batch_size: int = 64, step: Callable[[int], None] | None = None) -> Tensor:
    """Eq. (6): ``1/(N p) sum_i f_c(x * M_i) M_i`` for (B, C, H, W) images, (N, H, W) masks and (B, K)
    targets (class indices, f_c their probability, or a :class:`~gfi.targets.TargetGrid`, whose other
    targets give their own score); returns (B, K, H, W), not normalised."""
    b, n = images.shape[0], masks.shape[0]
    grid = targets if isinstance(targets, TargetGrid) else TargetGrid.of_indices(targets)
    masks = masks.to(images.device, images.dtype)
    sal = torch.zeros(b, grid.shape[1], *images.shape[-2:], device=images.device)
    per_image = max(1, batch_size // b)
    with frozen(classifier.model), torch.no_grad():  # one forward gives f_c of every class
        for start in range(0, n, per_image):
            m = masks[start:start + per_image]
            if step is not None:
                step(m.shape[0])
            masked = (images.unsqueeze(1) * m[None, :, None]).flatten(0, 1)  # (B * n_chunk, C, H, W)
            out = classifier(masked)
            if grid.indices is not None and isinstance(out, Tensor) and out.ndim == 2:
                scores = classifier.scores(out.float()).view(b, m.shape[0], -1)
                f = scores.gather(2, grid.indices.unsqueeze(1).expand(-1, m.shape[0], -1))  # (B, n_chunk, K)
            else:
                rows = torch.arange(b).repeat_interleave(m.shape[0])  # each masked image's image
                f = grid.score_each(out, "prob", classifier.multilabel, rows).float().view(b, m.shape[0], -1)
            sal += torch.einsum("bnk,nhw->bkhw", f, m.float())
    return sal / (n * p)


@dataclass(frozen=True)
class RISESettings(Settings):
    """What decides a RISE map (published values: Petsiuk et al. 2018, ResNet-50)."""

    n_masks: int = setting(4000, "random masks N", paper=4000, low=1)
    grid: int = setting(7, "side s of each mask's binary grid", paper=7, low=1)
    p: float = setting(0.5, "probability that a grid cell is kept", paper=0.5, low=0, low_open=True, high=1)
    seed: int = setting(0, "seed of the masks")


class RISE(Explainer):
    """RISE; ``masks`` (N, H, W) at the model's input size replaces the random masks (tests, studies)."""

    name = "rise"
    target_objects = True  # any gfi.targets target, through the target grid
    needs_module = False
    shares_across_targets = "all"  # one set of masked images scores every target
    summary = "RISE (Petsiuk et al. 2018): class score of 4000 randomly masked copies, averaged over the masks"
    settings_class = RISESettings
    cheaper: ClassVar[dict[str, Any]] = {"n_masks": 1000}
    test_settings: ClassVar[dict[str, Any]] = {"n_masks": 500, "grid": 4}
    config: RISESettings

    def __init__(self, classifier: Classifier, config: RISESettings | str | None = None, *,
                 options: RunOptions | None = None, masks: Tensor | None = None, **overrides: Any) -> None:
        super().__init__(classifier, config, options=options, **overrides)
        if masks is not None and (masks.ndim != 3 or tuple(masks.shape[-2:]) != classifier.input_size):
            raise SettingsError(f"masks must be (N, H, W) at the model's input size {classifier.input_size}, "
                                f"got {tuple(masks.shape)}")
        self.masks = masks

    def _explain(self, images: Tensor, targets: TargetsLike) -> Explanation:
        cfg = self.config
        grid, probs = self._target_grid(images, targets)
        masks = self.masks
        if masks is None:
            masks = rise_masks(cfg.n_masks, cfg.grid, cfg.p, tuple(images.shape[-2:]),
                               torch.Generator().manual_seed(cfg.seed))
        sal, collapsed = min_max(rise_saliency(self.classifier, images, masks, grid, cfg.p, self._batch_size(64),
                                                  self._progress(masks.shape[0])))
        return Explanation(maps=sal, method=self.name, collapsed=collapsed, **self._fields(grid, probs))
