"""gfi's explainers as a Captum attribution: ``GuidedFeatureInversion(model).attribute(x, target=c)``.

A thin front end over :func:`gfi.methods.registry.get_method` in the calling convention of
``captum.attr`` (``captum.attr.Attribution``), so Captum's wrappers and metrics take it:
``captum.attr.NoiseTunnel`` (which calls ``attribute`` through its ``__wrapped__``, under
``torch.no_grad()``), ``captum.metrics.infidelity`` (on attributions made by ``attribute``) and
``captum.metrics.sensitivity_max`` (which calls ``attribute`` on perturbed inputs).

Inputs (the rule of :mod:`gfi.frontends`): when ``forward_func`` is a :class:`gfi.Classifier`, the
inputs are pixels in [0, 1]; any other module or callable takes the tensors the model itself takes
(e.g. ImageNet-normalised), and each call rescales its batch by the batch's min and max so that the
model sees exactly those tensors. Perturbing wrappers (``NoiseTunnel``, ``sensitivity_max``) therefore
want the raw module: their noise takes pixels out of [0, 1], which a ``gfi.Classifier`` refuses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from captum.attr import Attribution
from captum.log import log_usage
from torch import Tensor

from gfi.errors import UsageError
from gfi.frontends import MethodSpec, one_target_each, pixels_and_classifier
from gfi.settings import Settings

__all__ = ["GuidedFeatureInversion"]


class GuidedFeatureInversion(Attribution):
    """Guided Feature Inversion (or any gfi method) as a ``captum.attr.Attribution``.

    Args:
        forward_func: a :class:`gfi.Classifier` (inputs are pixels in [0, 1]), or the raw ``nn.Module``
            (or callable) mapping the tensors it takes to (N, classes) logits (inputs are then in the
            model's own space; see :mod:`gfi.frontends` for the exact rule and when it gives the
            native map). GFI and the CAM methods need an ``nn.Module`` to find their layers (l0, l1:
            the classifier's, or :func:`gfi.models.classifier.auto_layers` for a raw module).
        method: any name of :data:`gfi.methods.registry.METHODS` (default ``"gfi"``).
        config: the method's settings object or a preset name (``"default"``, ``"paper"``).
        **settings: overrides of the method's settings or of :class:`gfi.RunOptions`
            (e.g. ``iters1=2, iters2=2``); ``options=RunOptions(...)`` works too. An unknown name is
            an error here, not at the first call.
    """

    def __init__(self, forward_func: Callable[[Tensor], Tensor], *, method: str = "gfi",
                 config: Settings | str | None = None, **settings: Any) -> None:
        super().__init__(forward_func)
        self.spec = MethodSpec(method, config, settings)

    @log_usage()
    def attribute(self, inputs: Tensor | tuple[Tensor], target: int | list[int] | Tensor | None = None
                  ) -> Tensor | tuple[Tensor]:
        """Attributions of ``inputs`` (N, 3, H, W) for ``target``, shaped like ``inputs``.

        ``target``: one class index for every input, N of them (a list or a tensor), or None for each
        input's top-1 class (Captum's convention; one class per input). The result is the method's
        (N, H, W) map in [0, 1] at the inputs' size **repeated over the 3 channels** (the map is one
        value per pixel), in the inputs' dtype and on their device. A 1-tuple of inputs gives a
        1-tuple back.
        """
        is_tuple = isinstance(inputs, tuple)
        if is_tuple:
            if len(inputs) != 1:
                raise UsageError(f"{type(self).__name__} explains one input tensor, got a tuple of {len(inputs)}; "
                                 "pass the image batch alone")
            inputs = inputs[0]
        clf, pixels = pixels_and_classifier(self.forward_func, inputs)
        targets = one_target_each(target, pixels.shape[0], who=f"{type(self).__name__}.attribute")
        maps = self.spec.maps(clf, pixels, targets)
        out = maps.unsqueeze(1).to(device=inputs.device, dtype=inputs.dtype).expand_as(inputs).contiguous()
        return (out,) if is_tuple else out
