"""Grad-CAM (Selvaraju et al. 2017) on gfi's own hooks.

``cam = ReLU(sum_k a_k A^k)`` with ``a_k`` the spatial mean of d y_c / d A^k (y_c the logit),
upsampled bilinearly and min-max normalised. The layer defaults to the classifier's l0 (the last
spatial feature map), the usual Grad-CAM choice.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gfi.masks.channel_mask import min_max, upsample
from gfi.methods.base import Explainer, Explanation, TargetsLike
from gfi.models.classifier import Classifier
from gfi.models.layers import LayerRef, capture, frozen


def layer_gradients(
    classifier: Classifier, images: Tensor, targets: Tensor, layer: LayerRef
) -> tuple[Tensor, Tensor]:
    """Activations A of ``layer`` and d logit_c / d A, one row per (image, target): (B*K, C, h, w) each.

    Call with the model frozen: the input carries the graph, so no parameter gets a gradient."""
    x = images.repeat_interleave(targets.shape[1], 0).requires_grad_(True)
    with torch.enable_grad(), capture(classifier.model, [layer], clone=False) as store:
        logits = classifier(x)
        act = store[layer]
        grad = torch.autograd.grad(logits.gather(1, targets.reshape(-1, 1)).sum(), act)[0]
    return act.detach(), grad


class GradCAM(Explainer):
    name = "gradcam"
    summary = "Grad-CAM (Selvaraju et al. 2017): gradient-weighted class activation map"

    def __init__(self, classifier: Classifier, layer: str | LayerRef | None = None) -> None:
        super().__init__(classifier)
        self.layer = LayerRef.parse(layer) if layer is not None else None

    def _explain(self, images: Tensor, targets: TargetsLike) -> Explanation:
        clf = self.classifier
        layer = self.layer or clf.inversion_layer
        t, probs = self._targets_and_probs(images, targets)
        b, k = t.shape
        with frozen(clf.model):
            act, grad = layer_gradients(clf, images, t, layer)
        cam = torch.relu((grad.mean((2, 3), keepdim=True) * act).sum(1))
        cam, collapsed = min_max(cam.view(b, k, *cam.shape[-2:]))
        return Explanation(maps=upsample(cam, images.shape[-2:]), targets=t, method=self.name,
                           probs=probs, collapsed=collapsed)
