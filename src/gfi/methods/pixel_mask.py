r"""The paper's own ablation, "pixel-mask": GFI's two stages with a free per-pixel mask.

Du et al. (KDD 2018) first write both stages over a mask ``m in [0, 1]^d`` on the pixels, and then
(Sec. 3.4) replace it by a combination of l1's channels because the free mask "has the weakness of
generating undesirable artifacts". This method is that free-mask formulation:

Stage 1, Eq. (3)::

    L_inversion(m) = ||f^{l0}(Phi(x, m)) - f^{l0}(x)||^2 + alpha * 1/d sum_i m_i

Stage 2, Eq. (5), started from stage 1's m::

    L_target(m) = -f_c(Phi(x, m)) + lambda f_c(Phi_bg(x, m)) + beta * 1/d sum_i m_i

with ``Phi = x * m + p * (1 - m)`` (Eq. 2) and ``Phi_bg = x * (1 - m) + p * m`` (Eq. 4), m clipped to
[0, 1] after every Adam step, and **no** channel parametrisation and no smoothness prior: the
artifacts case of Sec. 3.4.

Everything the two formulations share is a field of :class:`PixelMaskSettings` with GFI's default
value (and, in the ``paper`` preset, the paper's): the background p (one p for both stages, as the
paper has it; stage 2's own blur of gfi's default belongs to the channel mask's tuning and has no
counterpart here), the inversion error reading (``inversion_error``), the score reading of f_c
(``score``, ``lam``), the iteration counts ``iters1``/``iters2`` and stage 2's learning-rate decay.
Choices specific to the free mask:

* resolution: the mask has one entry per input pixel (``resolution=None``, d = H * W, as Eq. 3
  is written); an integer r gives an r x r mask upsampled bilinearly.
* alpha = 1 (Eq. 3): with the default relative inversion error (1 = everything lost), removing the
  whole image costs as much as keeping it all; beta = 0.5 (Eq. 5): the weight gfi's default gave
  the same mean-area term on the channel mask (``GFIConfig.area2``) when this method was set up
  (that default is now 0.1, chosen for the channel mask's stage 2 alone; docs/METHOD.md).
* m starts at 0.5 everywhere (neutral); Adam's learning rate is 0.05 (a step of 5% of the mask's
  range, as gfi's 1e-2 is 10% of its initial weight 0.1).

The maps are min-max normalised; ``stage1_map`` holds Eq. (3)'s mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from gfi.masks.backgrounds import make_background
from gfi.masks.channel_mask import KeptAndRemoved, Upsampler, min_max
from gfi.masks.optimizer import MaskOptimizer, StepDecay
from gfi.methods.base import Explainer, Explanation, InversionExplanation, TargetsLike, target_score_terms
from gfi.models.layers import frozen
from gfi.objectives import inversion_error, target_terms
from gfi.settings import Settings, setting


@dataclass(frozen=True)
class PixelMaskSettings(Settings):
    """What decides a pixel-mask map: GFI's shared readings (same defaults and paper values) and the
    free mask's own weights (alpha, beta), step, start and resolution."""

    alpha: float = setting(1.0, "weight of the mask's mean area in Eq. 3 (stage 1)", low=0)
    beta: float = setting(0.5, "weight of the mask's mean area in Eq. 5 (stage 2)", low=0)
    lr: float = setting(0.05, "Adam learning rate of both stages", low=0, low_open=True)
    init: float = setting(0.5, "initial value of every mask entry", low=0, high=1)
    resolution: int | None = setting(None, "side of the mask, upsampled bilinearly (none: one entry per pixel)",
                                     low=1)
    lam: float = setting(1.0, "lambda, weight of the removed image's score in Eq. 5", paper=1.0, low=0)
    iters1: int = setting(10, "iterations of stage 1", paper=10, low=0)
    iters2: int = setting(30, "iterations of stage 2", paper=70, low=0)
    lr_decay_every: int = setting(10, "stage 2 multiplies its learning rate by lr_decay every this many iterations",
                                  paper=10, low=1)
    lr_decay: float = setting(0.5, "factor of stage 2's learning-rate decay", paper=0.5, low=0, low_open=True)
    background: Literal["blur", "mean", "noise"] = setting(
        "blur", "the background p of Eq. 2 and 4: a blur of the image, the mean colour (ImageNet's; a non-RGB "
                "model's own mean), or noise", paper="blur")
    blur_kernel: int = setting(11, "kernel size of the blurred background", paper=11, odd=True)
    blur_sigma: float = setting(5.0, "sigma of the blurred background", paper=5.0, low=0, low_open=True)
    noise_std: float = setting(0.2, "standard deviation of the noise background", low=0)
    inversion_error: Literal["sum", "relative"] = setting(
        "relative", "Eq. 3's inversion error: summed over the inversion layer's features, or relative to "
                    "their squared norm", paper="sum")
    score: Literal["prob", "log"] = setting(
        "log", "stage 2's class score: the probability f_c, or -log f_c(kept) - lambda log(1 - f_c(removed))",
        paper="prob")
    seed: int = setting(0, "seed of the noise background")


class PixelMask(Explainer):
    name = "pixel-mask"
    target_objects = True  # any gfi.targets target, through the target grid
    needs_module = True  # stage 1 inverts the inversion layer's features
    test_settings: ClassVar[dict[str, Any]] = {"iters1": 5, "iters2": 10}
    shares_across_targets = "stage 1"
    summary = "GFI's Eq. (3) + (5) on a free per-pixel mask (the paper's artifact-prone ablation of Sec. 3.4)"
    settings_class = PixelMaskSettings
    presets = ("paper", "default")
    has_stage1 = True
    config: PixelMaskSettings

    def _explain(self, images: Tensor, targets: TargetsLike) -> Explanation:
        cfg, clf = self.config, self.classifier
        inversion_layer = clf.inversion_layer
        size = tuple(images.shape[-2:])
        res = (cfg.resolution, cfg.resolution) if cfg.resolution else size
        full = (lambda m: m) if res == size else Upsampler(res, size, device=images.device, dtype=images.dtype)
        with frozen(clf.model):
            with torch.no_grad():
                feats, logits = clf.activations(images, [inversion_layer], stop=False)
            grid, probs = self._target_grid(images, targets, logits)
            f_inversion = feats[inversion_layer]
            p = make_background(images, cfg.background, blur_kernel=cfg.blur_kernel, blur_sigma=cfg.blur_sigma,
                                noise_std=cfg.noise_std, generator=torch.Generator().manual_seed(cfg.seed),
                                mean=clf.background_mean)
            kept_and_removed = KeptAndRemoved(images, p)
            step = self._progress(cfg.iters1 + cfg.iters2)

            def eq3(m: Tensor, _it: int) -> Tensor:
                big = full(m)
                phi = kept_and_removed.kept(big)[:, 0]
                f_phi = clf.activations(phi, [inversion_layer], stop=True, clone=False)[0][inversion_layer]
                return (inversion_error(f_phi, f_inversion, cfg.inversion_error == "relative")
                        + cfg.alpha * big.mean((-2, -1))[:, 0])

            def eq5(m: Tensor, _it: int) -> Tensor:
                big = full(m)
                out = clf(kept_and_removed(big).flatten(0, 2))
                if grid.indices is not None and isinstance(out, Tensor) and out.ndim == 2:
                    gain, removed = target_terms(out.view(2, *grid.shape, -1), grid.indices, clf.multilabel, cfg.score)
                else:
                    gain, removed = target_score_terms(grid, out, cfg.score, clf.multilabel)
                return -gain + cfg.lam * removed + cfg.beta * big.mean((-2, -1))

            # stage 1, Eq. (3), then stage 2, Eq. (5) from stage 1's mask, one row per target
            start = torch.full((images.shape[0], 1, *res), cfg.init, device=images.device)
            first = MaskOptimizer(cfg.lr, project=(0, 1), progress=step).run(start, eq3, cfg.iters1)
            m1 = first.param
            second = MaskOptimizer(cfg.lr, decay=StepDecay(cfg.lr_decay_every, cfg.lr_decay), project=(0, 1),
                                   progress=step).run(m1.expand(-1, grid.shape[1], -1, -1), eq5, cfg.iters2)
            m = second.param
        with torch.no_grad():
            maps, collapsed = min_max(full(m))
            s1, col1 = min_max(full(m1)[:, 0])
        history = {name: r.losses for name, r in (("stage1", first), ("stage2", second)) if r.losses is not None}
        return InversionExplanation(maps=maps, method=self.name, stage1_map=s1, loss_history=history,
                                    collapsed=collapsed, stage1_collapsed=col1, **self._fields(grid, probs))
