r"""CAM, Class Activation Mapping (Zhou et al., CVPR 2016), on gfi's own hooks.

For a network whose last convolutional features ``A`` (C, h, w) are global-average-pooled and fed
to a single linear layer giving the logits, ``y_c = sum_k w_{c,k} mean_{uv} A_k(u, v) + b_c``, the
class activation map is ``M_c(u, v) = sum_k w_{c,k} A_k(u, v)`` (Eq. 2 of the paper). It is
upsampled bilinearly to the input size and min-max normalised as in the authors' code (no ReLU:
the minimum maps to 0).

The structure is not assumed from the model's class: in the same forward pass that reads ``A``,
every ``nn.Linear`` module's input and output are recorded, and CAM requires (1) a linear layer
whose output *is* the logits and (2) whose input *is* the spatial mean of ``A``. This holds for
torchvision's ResNets (``fc`` after ``avgpool``) and timm's EfficientNets (``forward_features``,
global average pool, ``get_classifier()``), and fails with a clear error for VGG/AlexNet (an MLP
after the features) or a pooled feature map that passes through another layer (e.g. a 1x1 conv
head after the pooling). ``A`` is read at ``layer`` (default: the last module that outputs a
spatial map, as for :func:`gfi.models.classifier.auto_layers`).

Targets: a class (its weights ``w_c``) and a contrastive difference of logits (weights
``w_c - beta mean_j w_j``, :func:`class_weights`); CAM has no weights for any other score.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gfi.errors import NotApplicable
from gfi.masks.channel_mask import combine_channels, min_max, upsample
from gfi.methods.base import Explainer, Explanation, LayerSettings, TargetsLike
from gfi.models.classifier import auto_layers
from gfi.models.layers import LayerRef, capture, frozen
from gfi.settings import setting
from gfi.targets import ClassTarget, Contrastive, Logit, Target


class CAMStructureError(NotApplicable):
    """The model does not end in global average pooling followed by one linear layer."""


def _close(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max().clamp_min(1)))


@dataclass(frozen=True)
class CAMSettings(LayerSettings):
    """What decides a CAM map: the layer of the features that are pooled into the last linear layer."""

    layer: str | None = setting(None, "the layer of the pooled features (none: the last module with a spatial "
                                      "output)")


class CAM(Explainer):
    name = "cam"
    target_objects = True  # class logits (and contrastive differences of them) only: check_target
    needs_module = True  # reads its layer's activations and the linear layer's weights
    shares_across_targets = "all"
    supports_tokens = False  # needs global-average-pooled conv maps into one linear layer
    supports_cnn = "global average pooling into one linear layer (ResNet, EfficientNet; not VGG, AlexNet)"
    summary = "CAM (Zhou et al. 2016): fc weights x last conv features; needs global average pool + one linear layer"
    settings_class = CAMSettings
    config: CAMSettings

    @property
    def layer(self) -> LayerRef | None:
        """The configured layer (None: the last module with a spatial output)."""
        return self.config.layer_ref

    def features_and_weights(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One forward: ``(A, W, logits)`` with A (B, C, h, w) and W (n_classes, C) the weights of the
        linear layer that maps mean(A) to the logits. Raises :class:`CAMStructureError` otherwise."""
        clf = self.classifier
        layer = self.layer or auto_layers(clf)[0]
        model_name = type(clf.model).__name__
        linears = [n for n, m in clf.model.named_modules() if isinstance(m, nn.Linear)]
        advice = ("CAM (Zhou et al. 2016) needs the last convolutional features global-average-pooled into a "
                  "single linear layer that gives the logits; use 'gradcam', which works on any CNN.")
        if not linears:
            raise CAMStructureError(f"cam: {model_name} has no nn.Linear layer. {advice}")
        refs = [layer] + [LayerRef(n, use_input=True) for n in linears] + [LayerRef(n) for n in linears]
        with frozen(clf.model), torch.no_grad(), capture(clf.model, refs) as store:
            logits = clf(images)
        feats = store[layer]
        if feats.ndim != 4:
            raise CAMStructureError(f"cam: layer {layer} gives a {feats.ndim}-D tensor, not a (B, C, h, w) map")
        head = [n for n in linears if _close(store[LayerRef(n)], logits)]
        if not head:
            raise CAMStructureError(f"cam: the logits of {model_name} are not the output of one nn.Linear layer. "
                                    f"{advice}")
        fc = head[-1]
        if not _close(store[LayerRef(fc, use_input=True)].flatten(1), feats.mean((2, 3))):
            raise CAMStructureError(
                f"cam: the input of {model_name}'s last linear layer '{fc}' is not the global average of layer "
                f"{layer}'s feature map (e.g. VGG/AlexNet have fully connected layers after the features). {advice}")
        return feats, dict(clf.model.named_modules())[fc].weight.detach(), logits

    def check_target(self, target: Target) -> None:
        class_weights(torch.zeros(max(target.classes(), default=0) + 1, 1), target)

    def _explain(self, images: Tensor, targets: TargetsLike) -> Explanation:
        feats, weight, logits = self.features_and_weights(images)
        grid, probs = self._target_grid(images, targets, logits)
        w = weight[grid.indices] if grid.indices is not None else \
            torch.stack([torch.stack([class_weights(weight, x) for x in row]) for row in grid.rows])
        cam, collapsed = min_max(combine_channels(w, feats))
        return Explanation(maps=upsample(cam, images.shape[-2:]), method=self.name, collapsed=collapsed,
                           **self._fields(grid, probs))


def class_weights(weight: Tensor, target: Target) -> Tensor:
    r"""The (C,) weights of ``target``'s score on the pooled features: row c of the linear layer's
    ``weight`` (n_classes, C) for a class (a plain index or its :class:`~gfi.targets.Logit`), and for a
    :class:`~gfi.targets.Contrastive` difference of logits :math:`w_c - \beta\,\mathrm{mean}_j\, w_j`
    (the logits are linear in the pooled features, so is their difference). Any other target is
    :class:`~gfi.errors.NotApplicable`: CAM has no weights for a probability or a non-class output."""
    if type(target) in (ClassTarget, Logit):
        return weight[target.class_index]
    parts = (target.target, *target.others) if isinstance(target, Contrastive) else ()
    if parts and all(type(p) in (ClassTarget, Logit) for p in parts):
        others = torch.stack([weight[p.class_index] for p in target.others])
        return weight[target.class_index] - target.beta * others.mean(0)
    raise NotApplicable(f"cam reads the last linear layer's weights of a class, so it explains class logits and "
                        f"contrastive differences of logits only, not {target.describe()}; use 'gradcam' for "
                        "any other target")
