"""gfi's explainers as a Captum attribution: ``GuidedFeatureInversion(model).attribute(x, target=c)``.

A thin front end over :func:`gfi.methods.resolve` in the calling convention of
``captum.attr`` (``captum.attr.Attribution``), so Captum's wrappers and metrics take it:
``captum.attr.NoiseTunnel`` (which calls ``attribute`` through its ``__wrapped__``, under
``torch.no_grad()``), ``captum.metrics.infidelity`` (on attributions made by ``attribute``) and
``captum.metrics.sensitivity_max`` (which calls ``attribute`` on perturbed inputs).

Inputs (the rule of :mod:`gfi.frontends`): when ``forward_func`` is a :class:`gfi.Classifier`, the
inputs are pixels in [0, 1]. Any other module or callable takes the tensors the model itself takes
(e.g. ImageNet-normalised): with ``mean=`` and ``std=`` (the model's normalisation, as in
torchvision's ``Normalize``) the pixels are ``inputs * std + mean``, exact for every method and
background; without them each call rescales its batch by the batch's min and max so that the model
sees exactly those tensors (exact for GFI's blur background and the CAM methods only). Perturbing
wrappers (``NoiseTunnel``, ``sensitivity_max``) take noise out of [0, 1]: a ``gfi.Classifier``
refuses it, ``mean``/``std`` refuse it unless ``clamp=True`` (the model then sees clamped images),
and the min/max rule takes it as it is.

Targets are read as Captum reads them (:func:`captum_targets`), and ``additional_forward_args`` go
to every forward of the model after the inputs, as in Captum.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import torch
from captum.attr import Attribution
from captum.log import log_usage
from torch import Tensor

from gfi.errors import UsageError
from gfi.evidence import warn_empty
from gfi.frontends.common import (
    check_normalization,
    explain_maps,
    pixels_and_classifier,
    require_module,
)
from gfi.methods.base import RunOptions
from gfi.methods.spec import resolve
from gfi.settings import Settings
from gfi.targets import OutputIndex

__all__ = ["GuidedFeatureInversion", "captum_targets"]

#: Captum's target types (``captum._utils.typing.TargetType``)
TargetType = int | tuple[int, ...] | Tensor | list[int] | list[tuple[int, ...]] | None


def _index(t: Any, where: str) -> int:
    """``t`` as one index (a Python or numpy integer, or a 0-d integer tensor); bools are refused."""
    if not isinstance(t, bool):
        try:
            return operator.index(t)
        except TypeError:
            pass
    raise UsageError(f"{where} must be an index (an int), got {t!r}")


def _tuple_target(t: tuple, where: str) -> int | OutputIndex:
    """Captum's tuple target: one index into every example's output, ``output[:, *t]``. ``(c,)`` is
    class c (what an int means); any other length is :class:`gfi.targets.OutputIndex` ``(t)``, an entry
    of an output of more dimensions (an error at the call when the model's output has another rank,
    as Captum asserts)."""
    if len(t) == 1:
        return _index(t[0], where)
    return OutputIndex(tuple(_index(i, where) for i in t))


def captum_targets(target: TargetType, n: int, *,
                   who: str = "GuidedFeatureInversion.attribute") -> list[int | OutputIndex] | None:
    """Captum's ``target`` for N examples as N gfi targets (None: each example's top-1 class), read as
    Captum reads it (``captum._utils.common._select_targets``):

    * an int, or a 1-element integer tensor: that class for every example;
    * a tuple: one index into every example's output, ``output[:, *target]``: ``(c,)`` is class c for
      every example, a longer tuple :class:`gfi.targets.OutputIndex` ``(target)`` (an output of more
      dimensions; on (N, classes) scores it is a one-line error at the call, as Captum asserts),
      never N classes;
    * a list of N ints, or of N tuples (each as above), or a 1-D integer tensor of N: one per example.

    A list or tensor of another length than N, a float or 2-D tensor, and a bool are each a one-line
    :class:`~gfi.errors.UsageError`. Numpy integers are taken as ints (Captum's own check refuses
    a list of them)."""
    if target is None:
        return None
    if isinstance(target, Tensor):
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise UsageError(f"{who}: target must be an integer tensor of class indices, got {target.dtype}; use "
                             "target.long() if its values are class indices")
        if target.numel() == 1:
            return [int(target.reshape(()))] * n
        if target.ndim != 1:
            raise UsageError(f"{who}: target of shape {tuple(target.shape)}: Captum takes one class, or a 1-D tensor "
                             "of one class per example")
        target = target.tolist()
    if isinstance(target, tuple):
        return [_tuple_target(target, f"{who}: target")] * n
    if isinstance(target, list):
        if len(target) != n:
            raise UsageError(f"{who}: {len(target)} targets for {n} inputs; give one per input (an int or a "
                             "1-tuple), or one int for all")
        where = f"{who}: every target of a list"
        return [_tuple_target(t, where) if isinstance(t, tuple) else _index(t, where) for t in target]
    if hasattr(target, "ndim") and hasattr(target, "tolist"):  # numpy arrays and scalars
        return captum_targets(target.tolist() if target.ndim else target.item(), n, who=who)
    return [_index(target, f"{who}: target")] * n

#: what Captum does with an all-zero attribution, said when one is returned
CAPTUM_ZEROS = ("captum.attr.visualization.visualize_image_attr cannot draw an all-zero attribution (it asserts "
                "'Cannot normalize by scale factor = 0'): leave these inputs out of the figure")


class GuidedFeatureInversion(Attribution):
    """Guided Feature Inversion (or any gfi method) as a ``captum.attr.Attribution``.

    Args:
        forward_func: a :class:`gfi.Classifier` (inputs are pixels in [0, 1]), or the raw ``nn.Module``
            (or callable) mapping the tensors it takes to (N, classes) logits (inputs are then in the
            model's own space; see :mod:`gfi.frontends` for the exact rule and when it gives the
            native map). A method whose class says ``needs_module`` (the layer methods such as gfi
            and gradcam, guided-backprop, lrp) needs an ``nn.Module`` (l0, l1: the classifier's, or
            :func:`gfi.models.classifier.auto_layers` for a raw module); with a plain callable it is
            an error here, and the gradient and perturbation methods run.
        method: any name of :data:`gfi.methods.registry.METHODS` (default ``"gfi"``).
        config: the method's settings object or a preset name (``"default"``, ``"paper"``).
        options: the :class:`gfi.RunOptions` to start from (how fast, never what the map is).
        mean, std: the model's input normalisation (one number per channel, or one for all; give
            both or neither; refused with a ``gfi.Classifier``, which has its own): the pixels are
            ``inputs * std + mean``, which must lie in [0, 1] (to 1e-3).
        clamp: with ``mean``/``std``, clamp the pixels to [0, 1] instead of refusing inputs outside
            (e.g. ``NoiseTunnel``'s noise); the model then sees the clamped images.
        **settings: overrides of the method's settings or of :class:`gfi.RunOptions`
            (e.g. ``iters1=2, iters2=2``). An unknown name is an error here, not at the first call.
    """

    def __init__(self, forward_func: Callable[[Tensor], Tensor], *, method: str = "gfi",
                 config: Settings | str | None = None, options: RunOptions | None = None,
                 mean: Sequence[float] | float | None = None, std: Sequence[float] | float | None = None,
                 clamp: bool = False, **settings: Any) -> None:
        super().__init__(forward_func)
        self.spec = resolve(method, config, settings, options=options)
        who = type(self).__name__
        require_module(forward_func, self.spec.cls, who=who)
        self.normalization = check_normalization(forward_func, mean, std, clamp, who=who)
        self.clamp = clamp

    @log_usage()
    def attribute(self, inputs: Tensor | tuple[Tensor], target: TargetType = None,
                  additional_forward_args: Any = None) -> Tensor | tuple[Tensor]:
        """Attributions of ``inputs`` (N, C, H, W) for ``target``, shaped like ``inputs``.

        ``target``, as Captum reads it (:func:`captum_targets`): one class for every input (an int,
        a 1-tuple ``(c,)``, a 1-element tensor), one per input (a list of N ints or 1-tuples, a
        1-D tensor of N), or None for each input's top-1 class. ``additional_forward_args``: what the
        model takes after the inputs, given to every forward as Captum gives it (a tuple: the
        arguments; anything else: one argument; numbers and batch-1 tensors go to every row, a tensor
        with one row per input follows its input: :mod:`gfi.models.forward_args`).

        The result is the method's (N, H, W) map in [0, 1] at the inputs' size **repeated over the C
        channels** (the map is one value per pixel), in the inputs' dtype and on their device. A
        1-tuple of inputs gives a 1-tuple back. A map that is all zeros (the method found none of the class's
        evidence, e.g. GFI on random weights) is returned as zeros with a :class:`gfi.evidence.EmptyMapWarning`.
        """
        is_tuple = isinstance(inputs, tuple)
        if is_tuple:
            if len(inputs) != 1:
                raise UsageError(f"{type(self).__name__} explains one input tensor, got a tuple of {len(inputs)}; "
                                 "pass the image batch alone")
            inputs = inputs[0]
        mean, std = self.normalization or (None, None)
        clf, pixels = pixels_and_classifier(self.forward_func, inputs, mean=mean, std=std, clamp=self.clamp,
                                            who=type(self).__name__)
        targets = captum_targets(target, pixels.shape[0], who=f"{type(self).__name__}.attribute")
        maps = explain_maps(self.spec, clf, pixels, targets, forward_args=additional_forward_args)
        warn_empty(maps, f"{type(self).__name__}.attribute", CAPTUM_ZEROS)
        out = maps.unsqueeze(1).to(device=inputs.device, dtype=inputs.dtype).expand_as(inputs).contiguous()
        return (out,) if is_tuple else out
