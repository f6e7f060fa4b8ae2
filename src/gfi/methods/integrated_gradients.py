r"""Integrated Gradients (Sundararajan et al., ICML 2017) with Captum's ``IntegratedGradients``.

``IG_i(x) = (x_i - x'_i) * int_0^1 d y_c / d x_i |_{x' + a (x - x')} da`` with the black image
x' = 0 as baseline (the paper's choice for image networks), y_c the logit, and the integral by
Captum's Gauss-Legendre rule with 50 steps (the paper uses 20-300 Riemann steps; Captum's
default rule reaches the same completeness error with fewer steps).

gfi adaptation: the attribution of a pixel is the sum of its three channels' attributions (the
paper aggregates along the colour channel; the sum keeps completeness, sum_i IG_i = y_c(x) - y_c(x'));
the map is ``|sum_channel IG|``, min-max normalised. The path points go through the network
``batch_size`` at a time (a run option; default 16). Cheaper documented setting (``cheaper``): 20
steps.
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
from gfi.targets import TargetGrid


@dataclass(frozen=True)
class IntegratedGradientsSettings(Settings):
    """What decides an Integrated Gradients map."""

    steps: int = setting(50, "steps of Captum's Gauss-Legendre rule along the path from the black image", low=1)


class IntegratedGradients(Explainer):
    name = "integrated-gradients"
    target_objects = True  # any gfi.targets target, through the target grid
    needs_module = False
    summary = "Integrated Gradients (Sundararajan et al. 2017): path integral from a black image (Captum)"
    settings_class = IntegratedGradientsSettings
    cheaper: ClassVar[dict[str, Any]] = {"steps": 20}
    test_settings: ClassVar[dict[str, Any]] = {"steps": 16}
    config: IntegratedGradientsSettings

    def raw(self, images: Tensor, targets: Tensor | TargetGrid) -> Tensor:
        """Captum's IG, one (C, H, W) row per (image, target): (B*K, C, H, W), for (B, K) class indices
        (the logit) or a :class:`~gfi.targets.TargetGrid`. A target other than a plain class index is
        integrated as its own score: Captum calls the score function with each path point's target
        number as an additional forward argument (expanded along the path as the inputs are)."""
        from captum.attr import IntegratedGradients as CaptumIG

        clf = self.classifier
        indices = targets if isinstance(targets, Tensor) else targets.indices
        x = images.repeat_interleave(targets.shape[1], 0)
        steps, batch = self.config.steps, self._batch_size(16)
        with frozen(clf.model):
            if indices is not None:
                return CaptumIG(clf).attribute(x, baselines=0.0, target=indices.reshape(-1).tolist(),
                                               n_steps=steps, internal_batch_size=batch).detach()

            def score(z: Tensor, rows: Tensor) -> Tensor:
                return targets.score(clf(z), "logit", clf.multilabel, rows=rows)

            rows = torch.arange(x.shape[0], device=x.device)
            return CaptumIG(score).attribute(x, baselines=0.0, additional_forward_args=(rows,), n_steps=steps,
                                             internal_batch_size=batch).detach()

    def _explain(self, images: Tensor, targets: TargetsLike) -> Explanation:
        grid, probs = self._target_grid(images, targets)
        b, k = grid.shape
        sal, collapsed = min_max(self.raw(images, grid).sum(1).abs().view(b, k, *images.shape[-2:]))
        return Explanation(maps=sal, method=self.name, collapsed=collapsed, **self._fields(grid, probs))
