"""Gradient saliency (Simonyan et al. 2014): ``max_channel |d y_c / d x|``, min-max normalised."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from torch import Tensor

from gfi.masks.channel_mask import min_max
from gfi.methods.base import Explainer, Explanation, TargetsLike
from gfi.models.layers import frozen


class Gradient(Explainer):
    name = "gradient"
    needs_module = False
    summary = "Gradient (Simonyan et al. 2014): |d logit / d pixel|, max over colour channels"

    def backward_rule(self) -> AbstractContextManager:
        """A context in which the backward pass is taken (plain backprop here; subclasses change it)."""
        return nullcontext()

    def _explain(self, images: Tensor, targets: TargetsLike) -> Explanation:
        clf = self.classifier
        t, probs = self._targets_and_probs(images, targets)
        b, k = t.shape
        x = images.repeat_interleave(k, 0).requires_grad_(True)
        with frozen(clf.model), self.backward_rule(), torch.enable_grad():
            logits = clf(x)
            grad = torch.autograd.grad(logits.gather(1, t.reshape(-1, 1)).sum(), x)[0]
        sal, collapsed = min_max(grad.abs().amax(1).view(b, k, *images.shape[-2:]))
        return Explanation(maps=sal, targets=t, method=self.name, probs=probs, collapsed=collapsed)
