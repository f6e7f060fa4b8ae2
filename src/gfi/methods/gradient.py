"""Gradient saliency (Simonyan et al. 2014): ``max_channel |d y_c / d x|``, min-max normalised
(y_c the logit, or a :mod:`gfi.targets` target's own score)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from torch import Tensor

from gfi.masks.channel_mask import min_max
from gfi.methods.base import Explainer, Explanation, TargetsLike
from gfi.models.layers import frozen, gradient_of


class Gradient(Explainer):
    name = "gradient"
    target_objects = True  # any gfi.targets target, through the target grid
    needs_module = False
    summary = "Gradient (Simonyan et al. 2014): |d logit / d pixel|, max over colour channels"

    def backward_rule(self) -> AbstractContextManager:
        """A context in which the backward pass is taken (plain backprop here; subclasses change it)."""
        return nullcontext()

    def _explain(self, images: Tensor, targets: TargetsLike) -> Explanation:
        clf = self.classifier
        grid, probs = self._target_grid(images, targets)
        b, k = grid.shape
        x = images.repeat_interleave(k, 0).requires_grad_(True)
        with frozen(clf.model), self.backward_rule(), torch.enable_grad():
            grad = gradient_of(grid.score(clf(x), "logit", clf.multilabel).sum(), x)
        sal, collapsed = min_max(grad.abs().amax(1).view(b, k, *images.shape[-2:]))
        return Explanation(maps=sal, method=self.name, collapsed=collapsed, **self._fields(grid, probs))
