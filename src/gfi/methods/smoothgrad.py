r"""SmoothGrad (Smilkov et al. 2017), with the noise drawn as Captum's ``NoiseTunnel`` draws it.

Eq. (1) of the paper: ``M_c(x) = 1/n sum_{i=1}^n d y_c / d x |_{x + N(0, sigma^2)}`` with the
published n = 50 samples and noise level sigma / (x_max - x_min) = 15% (the paper's 10-20%
range); pixels are in [0, 1], so sigma = 0.15. ``y_c`` is the logit.

gfi adaptation: the (B, C, H, W) average of the signed gradients (what Captum's
``NoiseTunnel(Saliency(abs=False))`` returns for ``nt_type="smoothgrad"``); the map is
``max_channel |M_c(x)|``, min-max normalised, the reduction of :mod:`gfi.methods.gradient`
(Simonyan et al. 2014), so ``smoothgrad`` is exactly the noise-averaged ``gradient``.

The noise is seeded (``seed``) without touching the global random state and drawn in groups of 16
copies per image, as Captum draws it with ``nt_samples_batch_size=16`` (the same numbers), so the
noisy copies can go through the network in forward batches of any size (the ``batch_size`` run
option; default: one group of every image at a time) without changing the noise. Cheaper
documented setting (``cheaper``): 16 samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from gfi.masks.channel_mask import min_max
from gfi.methods.base import Explainer, Explanation, TargetsLike
from gfi.models.layers import frozen, gradient_of
from gfi.settings import Settings, setting
from gfi.targets import TargetGrid

#: noisy copies per image drawn at a time (Captum's ``nt_samples_batch_size``; gfi's former batch)
NOISE_GROUP = 16


@dataclass(frozen=True)
class SmoothGradSettings(Settings):
    """What decides a SmoothGrad map (published values: Smilkov et al. 2017)."""

    samples: int = setting(50, "noisy copies averaged", paper=50, low=1)
    noise: float = setting(0.15, "standard deviation of the Gaussian noise, in units of the pixel range [0, 1]",
                           paper=0.15, low=0)
    seed: int = setting(0, "seed of the noise")


class SmoothGrad(Explainer):
    name = "smoothgrad"
    target_objects = True  # any gfi.targets target, through the target grid
    needs_module = False
    summary = "SmoothGrad (Smilkov et al. 2017): gradient averaged over 50 noisy copies (Captum NoiseTunnel)"
    settings_class = SmoothGradSettings
    cheaper: ClassVar[dict[str, Any]] = {"samples": 16}
    test_settings: ClassVar[dict[str, Any]] = {"samples": 8}
    config: SmoothGradSettings

    def raw(self, images: Tensor, targets: Tensor | TargetGrid) -> Tensor:
        """The mean signed gradient of the logit (or of a :mod:`gfi.targets` target's score) over the
        noisy copies, one (C, H, W) row per (image, target): (B*K, C, H, W), for (B, K) class indices or
        a :class:`~gfi.targets.TargetGrid`. Equals Captum's ``NoiseTunnel(Saliency(clf)).attribute(x,
        nt_type="smoothgrad", nt_samples=samples, nt_samples_batch_size=16, stdevs=noise, abs=False)``
        after ``torch.manual_seed(seed)``."""
        cfg, clf = self.config, self.classifier
        grid = targets if isinstance(targets, TargetGrid) else TargetGrid.of_indices(targets)
        x = images.repeat_interleave(grid.shape[1], 0)
        n = x.shape[0]
        rows = torch.arange(n)  # each row's target number
        # at most 2 groups of noisy copies per forward unless asked (memory bounded whatever the batch:
        # 8 rows of 448 x 448 grids at once took 16 GB and were killed)
        forward_batch = self._batch_size(min(n, 2) * NOISE_GROUP)
        total = torch.zeros_like(x)
        devices = [x.device] if x.device.type == "cuda" else []
        with frozen(clf.model), torch.random.fork_rng(devices=devices):
            torch.manual_seed(cfg.seed)
            step = self._progress(cfg.samples)
            for start in range(0, cfg.samples, NOISE_GROUP):
                g = min(NOISE_GROUP, cfg.samples - start)
                step(g)
                # Captum's draw: normal(0, a tensor of stdevs) over the row-interleaved copies
                std = torch.tensor(cfg.noise, device=x.device).repeat((n * g, *x.shape[1:]))
                noisy = x.repeat_interleave(g, 0) + torch.normal(0, std)
                t = rows.repeat_interleave(g)
                grads = [self._gradient(noisy[i:i + forward_batch], grid, t[i:i + forward_batch])
                         for i in range(0, n * g, forward_batch)]
                total += torch.cat(grads).view(n, g, *x.shape[1:]).sum(1)
        return total / cfg.samples

    def _gradient(self, x: Tensor, grid: TargetGrid, rows: Tensor) -> Tensor:
        """d y_c / d x of every row (Captum's ``Saliency(abs=False)``); ``rows``: each row's target number."""
        clf = self.classifier
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            return gradient_of(grid.score(clf(x), "logit", clf.multilabel, rows=rows).sum(), x).detach()

    def _explain(self, images: Tensor, targets: TargetsLike) -> Explanation:
        grid, probs = self._target_grid(images, targets)
        b, k = grid.shape
        sal, collapsed = min_max(self.raw(images, grid).abs().amax(1).view(b, k, *images.shape[-2:]))
        return Explanation(maps=sal, method=self.name, collapsed=collapsed, **self._fields(grid, probs))
