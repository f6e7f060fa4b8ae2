"""What the three front ends (:mod:`gfi.frontends.captum`, :mod:`gfi.frontends.cam`,
:mod:`gfi.frontends.quantus`) share: the input rule of :mod:`gfi.frontends` that turns a batch in
the model's own input space into gfi's pixels (:func:`pixels_and_classifier`), the check that a
method's model can run it (:func:`require_module`), targets one per input, and one call of the
native explainer (:func:`explain_maps`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from gfi.errors import UsageError
from gfi.methods.base import PIXEL_TOLERANCE, Explainer
from gfi.methods.registry import METHODS
from gfi.methods.spec import MethodSpec
from gfi.models.classifier import Classifier

__all__ = ["Normalization", "check_normalization", "explain_maps", "module_name", "one_target_each",
           "pixels_and_classifier", "require_module"]

#: ``(mean, std)`` as tuples of floats (one per channel, or one for all), or None for rule 3
Normalization = tuple[tuple[float, ...], tuple[float, ...]] | None


class _Forward(nn.Module):
    """A callable that is not an ``nn.Module`` (Captum's ``forward_func``) as a module. It has no
    submodules, so only the methods without ``needs_module`` run on it (:func:`require_module`
    refuses the others before they reach it)."""

    def __init__(self, func: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.func = func

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        return self.func(x, *args, **kwargs)


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


def require_module(model: Any, method: type[Explainer], *, who: str) -> None:
    """A one-line :class:`~gfi.errors.UsageError` when ``method`` needs an ``nn.Module`` (its class's
    ``needs_module``) and ``model`` is a plain callable."""
    if method.needs_module and not isinstance(model, nn.Module):
        layer = ", ".join(n for n, c in METHODS.items() if c.needs_module)
        other = ", ".join(n for n, c in METHODS.items() if not c.needs_module)
        raise UsageError(f"{who}: method {method.name!r} needs an nn.Module whose layers can be hooked, got a "
                         f"{type(model).__name__}; pass the model itself (the methods {layer} need one), or use "
                         f"a gradient or perturbation method with a callable ({other})")


def check_normalization(model: Any, mean: Any, std: Any, clamp: bool, *, who: str) -> Normalization:
    """``mean`` and ``std`` (rule 2 of :mod:`gfi.frontends`) as tuples of floats, or None when both
    are None; a one-line :class:`~gfi.errors.UsageError` for one without the other, values that are
    not finite numbers (std > 0), a :class:`~gfi.models.classifier.Classifier` model (it has its own),
    or ``clamp`` without them."""
    if not isinstance(clamp, bool):
        raise UsageError(f"{who}: clamp must be True or False, got {clamp!r}")
    if mean is None and std is None:
        if clamp:
            raise UsageError(f"{who}: clamp=True applies only with mean= and std= (without them each batch is "
                             "rescaled by its own min and max, which needs no clamping); drop clamp or give both")
        return None
    if isinstance(model, Classifier):
        raise UsageError(f"{who}: model is a gfi.Classifier, which has its own mean and std; drop mean=/std= "
                         "(its inputs are pixels in [0, 1]) or pass the raw module with them")
    if mean is None or std is None:
        raise UsageError(f"{who}: give both mean= and std= (torchvision Normalize's), or neither; got only "
                         f"{'mean' if std is None else 'std'}")
    out = []
    for label, value in (("mean", mean), ("std", std)):
        try:
            values = tuple(float(v) for v in torch.as_tensor(value, dtype=torch.float64).reshape(-1).tolist())
        except (TypeError, ValueError, RuntimeError) as exc:
            raise UsageError(f"{who}: {label} must be one number per channel (e.g. (0.485, 0.456, 0.406)), "
                             f"got {value!r}") from exc
        if not values or not all(torch.isfinite(torch.tensor(values))):
            raise UsageError(f"{who}: {label} must be finite numbers, one per channel, got {value!r}")
        if label == "std" and min(values) <= 0:
            raise UsageError(f"{who}: std must be positive, got {value!r}")
        out.append(values)
    return out[0], out[1]


def pixels_and_classifier(model: nn.Module | Callable[[Tensor], Tensor], x: Tensor, *,
                          layer: str | None = None,
                          reshape_transform: Callable | None = None,
                          mean: Sequence[float] | float | None = None, std: Sequence[float] | float | None = None,
                          clamp: bool = False, who: str = "gfi") -> tuple[Classifier, Tensor]:
    """``(classifier, pixels)`` for a batch ``x`` by the input rule of :mod:`gfi.frontends`.

    ``layer``: the name of the module to use as both l0 and l1 (pytorch-grad-cam's target layer; None:
    the classifier's own, or :func:`~gfi.models.classifier.auto_layers` for a raw model).
    ``reshape_transform`` goes to ``Classifier(..., reshape_transform=...)`` when it is not None.
    ``mean``, ``std``: the model's input normalisation (rule 2; None: rule 3); ``clamp``: clamp rule 2's
    pixels to [0, 1] instead of refusing those outside. ``who`` names the caller in errors. The
    classifier is moved to the model's device (its normalisation buffers are made on the CPU).
    """
    norm = check_normalization(model, mean, std, clamp, who=who)
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
    if not torch.isfinite(x).all():
        raise UsageError("inputs contain NaN or inf; pass finite tensors")
    channels = x.shape[1]
    kwargs: dict[str, Any] = {}
    if reshape_transform is not None:
        kwargs["reshape_transform"] = reshape_transform
    size = (int(x.shape[-2]), int(x.shape[-1]))
    if layer is not None:
        kwargs.update(inversion_layer=layer, channel_layer=layer)
    if norm is not None:
        m, s = (_per_channel(v, channels, label, who) for v, label in zip(norm, ("mean", "std"), strict=True))
        shape = (1, channels, 1, 1)
        pixels = x * torch.tensor(s, dtype=x.dtype, device=x.device).view(shape) \
            + torch.tensor(m, dtype=x.dtype, device=x.device).view(shape)
        if pixels.numel():
            lo, hi = float(pixels.min()), float(pixels.max())
            if clamp:
                pixels = pixels.clamp(0.0, 1.0)
            elif lo < -PIXEL_TOLERANCE or hi > 1 + PIXEL_TOLERANCE:
                raise UsageError(f"{who}: inputs * std + mean are pixels in [{lo:.4g}, {hi:.4g}], outside [0, 1] "
                                 "(noise such as NoiseTunnel's, or not this mean/std); pass clamp=True to clamp "
                                 "them (the model then sees the clamped images, not these inputs), or leave out "
                                 "mean= and std= to rescale each batch by its own min and max")
    else:
        lo, hi = (float(x.min()), float(x.max())) if x.numel() else (0.0, 1.0)
        if not hi > lo:
            raise UsageError(f"inputs are constant (every value is {lo:.6g}), so their pixel range cannot be "
                             "inferred; pass the model's mean= and std=, or a gfi.Classifier(model, mean=..., "
                             "std=...) and images in [0, 1]")
        span = hi - lo
        m, s = (-lo / span,) * channels, (1.0 / span,) * channels
        pixels = (x - lo) / span
    net = model if isinstance(model, nn.Module) else _Forward(model)
    clf = Classifier(net, mean=m, std=s, channels=channels, input_size=size, **kwargs)
    clf = clf.to(clf.device if isinstance(model, nn.Module) else x.device)
    return clf, pixels


def _per_channel(values: tuple[float, ...], channels: int, label: str, who: str) -> tuple[float, ...]:
    """One value per channel: ``values`` itself, or its single value repeated."""
    if len(values) == 1:
        return values * channels
    if len(values) != channels:
        raise UsageError(f"{who}: {label} has {len(values)} values for inputs with {channels} channels; "
                         "give one per channel (or one for all)")
    return values


def explain_maps(spec: MethodSpec, classifier: Classifier, pixels: Tensor,
                 targets: Tensor | list[int] | None, forward_args: Any = None) -> Tensor:
    """(N, H, W) maps in [0, 1] of ``spec``'s method at the pixels' size, one target per image (None: top-1).
    ``forward_args``: Captum's ``additional_forward_args``, given to every forward of the model after the
    images (:meth:`gfi.methods.base.Explainer.explain`)."""
    e = spec.explainer(classifier).explain(pixels, targets, forward_args=forward_args)
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
