"""Grad-CAM (Selvaraju et al. 2017) on gfi's own hooks.

``cam = ReLU(sum_k a_k A^k)`` with ``a_k`` the spatial mean of d y_c / d A^k (y_c the logit; a
:mod:`gfi.targets` target: its own score, e.g. the contrastive ``y_c - beta mean_j y_j``, whose
``a_k`` is ``a_k(c) - beta mean_j a_k(j)``),
upsampled bilinearly and min-max normalised. The layer defaults to the classifier's l0 (the last
spatial feature map), the usual Grad-CAM choice.

A variant that weights the channels otherwise (Grad-CAM++, XGrad-CAM, ...) is a subclass that sets
``name``/``summary`` and overrides :meth:`GradCAM.channel_weights` (and ``settings_class`` when it
has settings of its own); it is then one line of ``gfi.methods.registry``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gfi.masks.channel_mask import min_max, upsample
from gfi.methods.base import Explainer, Explanation, LayerSettings, TargetsLike
from gfi.models.layers import LayerRef, frozen, layer_gradients
from gfi.settings import setting


@dataclass(frozen=True)
class GradCAMSettings(LayerSettings):
    """What decides a Grad-CAM map: the layer whose activations are weighted."""

    layer: str | None = setting(None, "the layer whose activations are weighted (none: the model's l0, the last "
                                      "spatial feature map)")


class GradCAM(Explainer):
    name = "gradcam"
    target_objects = True  # any gfi.targets target, through the target grid
    needs_module = True  # reads its layer's activations and gradients
    #: one forward of the images; each target is one backward from the outputs to the layer
    #: (gfi.models.layers.layer_gradients; a model whose output has no row per image repeats the image)
    shares_across_targets = "all"
    summary = "Grad-CAM (Selvaraju et al. 2017): gradient-weighted class activation map"
    settings_class = GradCAMSettings
    config: GradCAMSettings

    @property
    def layer(self) -> LayerRef | None:
        """The configured layer (None: the classifier's l0)."""
        return self.config.layer_ref

    def channel_weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        """a_k of every row: (B*K, C, 1, 1) from the layer's activations A and d y_c / d A (both
        (B*K, C, h, w)). Grad-CAM: the spatial mean of the gradient (Eq. 1 of the paper)."""
        return gradients.mean((2, 3), keepdim=True)

    def _explain(self, images: Tensor, targets: TargetsLike) -> Explanation:
        clf = self.classifier
        layer = self.layer or clf.inversion_layer
        grid, probs = self._target_grid(images, targets)
        b, k = grid.shape
        with frozen(clf.model):
            act, grad = layer_gradients(clf, images, grid, layer)
        cam = torch.relu((self.channel_weights(act, grad) * act).sum(1))
        cam, collapsed = min_max(cam.view(b, k, *cam.shape[-2:]))
        return Explanation(maps=upsample(cam, images.shape[-2:]), method=self.name, collapsed=collapsed,
                           **self._fields(grid, probs))
