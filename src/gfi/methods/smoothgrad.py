r"""SmoothGrad (Smilkov et al. 2017) with Captum's ``NoiseTunnel`` over ``Saliency``.

Eq. (1) of the paper: ``M_c(x) = 1/n sum_{i=1}^n d y_c / d x |_{x + N(0, sigma^2)}`` with the
published n = 50 samples and noise level sigma / (x_max - x_min) = 15% (the paper's 10-20%
range); pixels are in [0, 1], so sigma = 0.15. ``y_c`` is the logit.

gfi adaptation: Captum returns the (B, 3, H, W) average of the signed gradients
(``Saliency(abs=False)``); the map is ``max_channel |M_c(x)|``, min-max normalised, the reduction of
:mod:`gfi.methods.gradient` (Simonyan et al. 2014), so ``smoothgrad`` is exactly the noise-averaged
``gradient``. The noise is seeded (``seed``) without touching the global random state. The noisy
copies go through the network ``batch_size`` at a time (a run option; default 16). Cheaper
documented setting (``cheaper``): 16 samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from gfi.masks.channel_mask import min_max
from gfi.methods.base import Explainer, Explanation, TargetsLike
from gfi.models.layers import frozen
from gfi.settings import Settings, setting


@dataclass(frozen=True)
class SmoothGradSettings(Settings):
    """What decides a SmoothGrad map (published values: Smilkov et al. 2017)."""

    samples: int = setting(50, "noisy copies averaged", paper=50, low=1)
    noise: float = setting(0.15, "standard deviation of the Gaussian noise, in units of the pixel range [0, 1]",
                           paper=0.15, low=0)
    seed: int = setting(0, "seed of the noise")


class SmoothGrad(Explainer):
    name = "smoothgrad"
    summary = "SmoothGrad (Smilkov et al. 2017): gradient averaged over 50 noisy copies (Captum NoiseTunnel)"
    settings_class = SmoothGradSettings
    cheaper: ClassVar[dict[str, Any]] = {"samples": 16}
    config: SmoothGradSettings

    def raw(self, images: Tensor, targets: Tensor) -> Tensor:
        """Captum's SmoothGrad of the logits, one (3, H, W) row per (image, target): (B*K, 3, H, W)."""
        from captum.attr import NoiseTunnel, Saliency

        clf = self.classifier
        x = images.repeat_interleave(targets.shape[1], 0)
        devices = [x.device] if x.device.type == "cuda" else []
        with frozen(clf.model), torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.config.seed)
            return NoiseTunnel(Saliency(clf)).attribute(
                x, nt_type="smoothgrad", nt_samples=self.config.samples, nt_samples_batch_size=self._batch_size(16),
                stdevs=self.config.noise, target=targets.reshape(-1).tolist(), abs=False).detach()

    def _explain(self, images: Tensor, targets: TargetsLike) -> Explanation:
        t, probs = self._targets_and_probs(images, targets)
        b, k = t.shape
        sal, collapsed = min_max(self.raw(images, t).abs().amax(1).view(b, k, *images.shape[-2:]))
        return Explanation(maps=sal, targets=t, method=self.name, probs=probs, collapsed=collapsed)
