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

Everything the two formulations share comes from a :class:`~gfi.methods.gfi.GFIConfig` (default:
gfi's default preset): the background p (one p for both stages, as the paper has it: stage 1's
``blur_kernel``/``blur_sigma``; stage 2's own blur, ``blur_kernel2``/``blur_sigma2``, belongs to the
channel mask's tuning and is not read here), the inversion error reading (``inversion_error``), the
score reading of f_c (``score``, ``lam``), the iteration counts ``iters1``/``iters2`` and stage 2's
learning-rate decay. Choices specific to the free mask:

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

from dataclasses import replace

import torch
from torch import Tensor

from gfi.masks.backgrounds import make_background
from gfi.masks.channel_mask import blend, blend_kept_and_removed, min_max, upsample
from gfi.methods.base import Explainer, Explanation, TargetsLike
from gfi.methods.gfi import GFIConfig, inversion_error, target_terms
from gfi.models.classifier import Classifier
from gfi.models.layers import frozen


class PixelMask(Explainer):
    name = "pixel-mask"
    summary = "GFI's Eq. (3) + (5) on a free per-pixel mask (the paper's artifact-prone ablation of Sec. 3.4)"

    def __init__(self, classifier: Classifier, config: GFIConfig | str | None = None, alpha: float = 1.0,
                 beta: float = 0.5, lr: float = 0.05, init: float = 0.5, resolution: int | None = None,
                 **overrides) -> None:
        super().__init__(classifier)
        if config is None or isinstance(config, str):
            config = GFIConfig.preset(config or "default", **overrides)
        elif overrides:
            config = replace(config, **overrides)
        if alpha < 0 or beta < 0 or lr <= 0 or not 0 <= init <= 1 or (resolution is not None and resolution < 1):
            raise ValueError("alpha, beta >= 0, lr > 0, 0 <= init <= 1 and resolution >= 1 are required")
        self.config, self.alpha, self.beta, self.lr, self.init, self.resolution = (
            config, alpha, beta, lr, init, resolution)

    def _full(self, m: Tensor, size: tuple[int, int]) -> Tensor:
        return m if tuple(m.shape[-2:]) == tuple(size) else upsample(m, size)

    def _explain(self, images: Tensor, targets: TargetsLike) -> Explanation:
        cfg, clf = self.config, self.classifier
        l0 = clf.inversion_layer
        size = tuple(images.shape[-2:])
        res = (self.resolution, self.resolution) if self.resolution else size
        with frozen(clf.model):
            with torch.no_grad():
                feats, logits = clf.activations(images, [l0], stop=False)
            t, probs = self._targets_and_probs(images, targets, logits)
            f_l0 = feats[l0]
            p = make_background(images, cfg.background, blur_kernel=cfg.blur_kernel, blur_sigma=cfg.blur_sigma,
                                noise_std=cfg.noise_std, generator=torch.Generator().manual_seed(cfg.seed))
            # stage 1, Eq. (3)
            m = torch.full((images.shape[0], 1, *res), self.init, device=images.device, requires_grad=True)
            opt = torch.optim.Adam([m], lr=self.lr)
            hist1 = []
            for _ in range(cfg.iters1):
                big = self._full(m, size)
                f_phi = clf.activations(blend(images, p, big)[:, 0], [l0], stop=True, clone=False)[0][l0]
                loss = (inversion_error(f_phi, f_l0, cfg.inversion_error == "relative")
                        + self.alpha * big.mean((-2, -1))[:, 0])
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                opt.step()
                with torch.no_grad():
                    m.clamp_(0, 1)
                hist1.append(loss.detach())
            m1 = m.detach()
            # stage 2, Eq. (5), from stage 1's mask, one row per target
            m = m1.expand(-1, t.shape[1], -1, -1).clone().requires_grad_(True)
            opt = torch.optim.Adam([m], lr=self.lr)
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_decay_every, gamma=cfg.lr_decay)
            hist2 = []
            for _ in range(cfg.iters2):
                big = self._full(m, size)
                z = clf(blend_kept_and_removed(images, p, big).flatten(0, 2)).view(2, *t.shape, -1)
                gain, removed = target_terms(z, t, clf.multilabel, cfg.score)
                loss = -gain + cfg.lam * removed + self.beta * big.mean((-2, -1))
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                opt.step()
                sched.step()
                with torch.no_grad():
                    m.clamp_(0, 1)
                hist2.append(loss.detach())
        with torch.no_grad():
            maps, collapsed = min_max(self._full(m.detach(), size))
            s1, col1 = min_max(self._full(m1, size)[:, 0])
        history = {"stage1": torch.stack(hist1)} if hist1 else {}
        if hist2:
            history["stage2"] = torch.stack(hist2)
        return Explanation(maps=maps, targets=t, method=self.name, probs=probs, stage1_map=s1,
                           loss_history=history, collapsed=collapsed, stage1_collapsed=col1)
