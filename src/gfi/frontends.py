"""What the three front ends (:mod:`gfi.captum`, :mod:`gfi.cam`, :mod:`gfi.quantus`) share: the rule
that turns a batch in the model's own input space into gfi's pixels, a method resolved once, and one
call of the native explainer.

**The input rule.** Users of Captum, pytorch-grad-cam and Quantus pass the tensors their model takes,
usually normalised with a mean and std, while gfi's methods take pixels in [0, 1] and apply the
normalisation inside :class:`~gfi.models.classifier.Classifier`. So:

* ``model`` is a :class:`~gfi.models.classifier.Classifier`: the inputs are pixels in [0, 1] and go
  to the native explainer unchanged (values outside [0, 1] are refused there).
* any other ``nn.Module`` (or, for Captum, any callable): per call, with ``lo`` and ``hi`` the batch's
  minimum and maximum (two scalars), the pixels are ``x01 = (x - lo) / (hi - lo)`` and the model is
  wrapped as ``Classifier(model, mean=-lo / (hi - lo), std=1 / (hi - lo))`` (the same value for every
  channel), so that ``classifier.normalize(x01) == x`` up to float32 rounding: the model sees exactly
  the tensors the user gave. A constant batch (``hi == lo``) has no range and is refused.

Why this gives the native map. The true pixels p and x01 differ by a per-channel affine map
``x01 = a_c p + b_c`` (``a_c = 1 / (s_c (hi - lo))``, ``b_c = (-m_c / s_c - lo) / (hi - lo)`` for the
model's unknown mean m and std s). Gaussian blur (reflect or replicate padding) and the blends of
Eq. (2) and (4), ``m x + (1 - m) p``, are affine with weights that sum to 1, so they commute with
that map: the blurred background, the kept and the removed images built from x01 are, after
``normalize``, the very tensors the native method builds from p. Features, gradients with respect
to features, and the mask maths never see pixel values. Hence GFI with ``background="blur"`` (the
default), its stage-2 start from Grad-CAM weights, Grad-CAM and CAM give the native maps (to float
rounding). Not exact, because they fix a pixel value rather than transform the image:
``background="mean"`` (a constant ImageNet-mean colour in pixel space, which is not the same colour
after a different affine map) and ``background="noise"`` (noise around pixel 0.5); baselines at
pixel 0 (integrated gradients, RISE); and maps of gradients with respect to pixels (gradient,
SmoothGrad, guided backprop), which are scaled per channel by ``s_c (hi - lo)``. For those, pass a
``gfi.Classifier`` with the model's real mean and std and pixels in [0, 1].

Noisy inputs (Captum's ``NoiseTunnel``, ``sensitivity_max``) need no clamping under this rule: the
range is that of the noisy batch itself.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from gfi.errors import UsageError
from gfi.methods.base import Explainer
from gfi.methods.registry import method_class
from gfi.models.classifier import Classifier
from gfi.settings import Settings

__all__ = ["MethodSpec", "module_name", "one_target_each", "pixels_and_classifier"]


class _Forward(nn.Module):
    """A callable that is not an ``nn.Module`` (Captum's ``forward_func``) as a module. It has no
    submodules, so only methods that need no layer (gradient, integrated-gradients, ...) run on it."""

    def __init__(self, func: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.func = func

    def forward(self, x: Tensor) -> Tensor:
        return self.func(x)


def module_name(model: nn.Module, layer: Any, *, who: str) -> str:
    """The name of ``layer`` in ``model.named_modules()``, found by identity; a
    :class:`~gfi.errors.UsageError` naming the fix when it is not one of ``model``'s layers."""
    if not isinstance(layer, nn.Module):
        raise UsageError(f"{who}: a target layer must be an nn.Module of the model, got {type(layer).__name__}; "
                         "pass e.g. target_layers=[model.layer4[-1]]")
    for name, module in model.named_modules():
        if module is layer:
            if not name:
                raise UsageError(f"{who}: the target layer is the whole model; pass one of its layers, "
                                 "e.g. target_layers=[model.layer4[-1]]")
            return name
    raise UsageError(f"{who}: the target layer ({type(layer).__name__}) is not a module of this model "
                     f"({type(model).__name__}); pass a layer of the model you gave, e.g. model.layer4[-1]")


def pixels_and_classifier(model: nn.Module | Callable[[Tensor], Tensor], x: Tensor, *,
                          layer: str | None = None,
                          reshape_transform: Callable | None = None) -> tuple[Classifier, Tensor]:
    """``(classifier, pixels)`` for a batch ``x`` by the input rule of this module's docstring.

    ``layer``: the name of the module to use as both l0 and l1 (pytorch-grad-cam's target layer; None:
    the classifier's own, or :func:`~gfi.models.classifier.auto_layers` for a raw model).
    ``reshape_transform`` goes to ``Classifier(..., reshape_transform=...)`` when it is not None. The
    classifier is moved to the model's device (its normalisation buffers are made on the CPU).
    """
    if not isinstance(x, Tensor):
        raise UsageError(f"inputs must be a torch.Tensor of shape (N, 3, H, W), got {type(x).__name__}")
    x = x.detach()
    if isinstance(model, Classifier):
        if reshape_transform is not None:
            raise UsageError("model is already a gfi.Classifier: give reshape_transform to "
                             "gfi.Classifier(..., reshape_transform=...) instead of to the front end")
        return (model.with_layers(layer, layer) if layer is not None else model), x
    if x.ndim != 4:
        raise UsageError(f"inputs must be a (N, C, H, W) batch, got shape {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise UsageError(f"inputs must be floating point (the tensors the model takes), got {x.dtype}")
    lo, hi = 0.0, 1.0
    if x.numel():
        if not torch.isfinite(x).all():
            raise UsageError("inputs contain NaN or inf; pass finite tensors")
        lo, hi = float(x.min()), float(x.max())
    if not hi > lo:
        raise UsageError(f"inputs are constant (every value is {lo:.6g}), so their pixel range cannot be inferred; "
                         "pass a gfi.Classifier(model, mean=..., std=...) and images in [0, 1] instead")
    span = hi - lo
    channels = x.shape[1]
    kwargs: dict[str, Any] = {}
    if reshape_transform is not None:
        kwargs["reshape_transform"] = reshape_transform
    size = (int(x.shape[-2]), int(x.shape[-1]))
    if layer is not None:
        kwargs.update(inversion_layer=layer, channel_layer=layer)
    net = model if isinstance(model, nn.Module) else _Forward(model)
    clf = Classifier(net, mean=(-lo / span,) * channels, std=(1.0 / span,) * channels, input_size=size, **kwargs)
    clf = clf.to(clf.device if isinstance(model, nn.Module) else x.device)
    return clf, (x - lo) / span


class MethodSpec:
    """A method name with its settings, resolved once (an unknown method or setting is an error when
    the front end is made, not at its first call); :meth:`explainer` builds it on a classifier."""

    def __init__(self, method: str, config: Settings | str | None, settings: Mapping[str, Any]) -> None:
        settings = dict(settings)
        options = settings.pop("options", None)
        self.cls: type[Explainer] = method_class(method)
        self.config, self.options = self.cls.resolve(config, options, settings)

    @property
    def name(self) -> str:
        return self.cls.name

    def explainer(self, classifier: Classifier) -> Explainer:
        return self.cls(classifier, self.config, options=self.options)

    def maps(self, classifier: Classifier, pixels: Tensor, targets: Tensor | list[int] | None) -> Tensor:
        """(N, H, W) maps in [0, 1] at the pixels' size, one target per image (None: top-1)."""
        e = self.explainer(classifier).explain(pixels, targets)
        size = (int(pixels.shape[-2]), int(pixels.shape[-1]))
        if tuple(e.maps.shape[-2:]) != size:
            e = e.resize_to(size)
        return e.maps[:, 0]


def one_target_each(targets: Any, n: int, *, who: str) -> list[int] | None:
    """``targets`` (None, an int, or N ints as a list, tuple, tensor or numpy array) as a list of N
    ints, or None for each image's top-1 class."""
    if targets is None:
        return None
    if isinstance(targets, Tensor):
        targets = targets.detach().cpu()
        if targets.ndim == 0:
            targets = int(targets)
        else:
            targets = targets.reshape(-1).tolist() if targets.ndim == 1 else targets.tolist()
    elif hasattr(targets, "tolist") and not isinstance(targets, list | tuple):  # numpy arrays and scalars
        targets = targets.tolist()
    if isinstance(targets, bool) or (not isinstance(targets, int) and not isinstance(targets, list | tuple)):
        raise UsageError(f"{who}: targets must be None, an int or {n} ints, got {type(targets).__name__}")
    if isinstance(targets, int):
        return [targets] * n
    if len(targets) != n:
        raise UsageError(f"{who}: {len(targets)} targets for {n} inputs; give one class index per input "
                         "(or one int for all)")
    return [_class_index(t, who) for t in targets]


def _class_index(t: Any, who: str) -> int:
    """``t`` as an int: a Python or numpy integer, or a one-element integer tensor; bools are refused."""
    if not isinstance(t, bool):
        try:
            return operator.index(t)
        except TypeError as exc:
            raise UsageError(f"{who}: every target must be one class index (an int), got {t!r}; "
                             "gfi explains one class per input here") from exc
    raise UsageError(f"{who}: a target must be a class index, got the bool {t!r}")
