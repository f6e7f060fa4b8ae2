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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from captum.attr import Attribution
from captum.log import log_usage
from torch import Tensor

from gfi.errors import UsageError
from gfi.evidence import warn_empty
from gfi.frontends.common import (
    check_normalization,
    explain_maps,
    one_target_each,
    pixels_and_classifier,
    require_module,
)
from gfi.methods.base import RunOptions
from gfi.methods.spec import resolve
from gfi.settings import Settings

__all__ = ["GuidedFeatureInversion"]

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
    def attribute(self, inputs: Tensor | tuple[Tensor], target: int | list[int] | Tensor | None = None
                  ) -> Tensor | tuple[Tensor]:
        """Attributions of ``inputs`` (N, 3, H, W) for ``target``, shaped like ``inputs``.

        ``target``: one class index for every input, N of them (a list or a tensor), or None for each
        input's top-1 class (Captum's convention; one class per input). The result is the method's
        (N, H, W) map in [0, 1] at the inputs' size **repeated over the 3 channels** (the map is one
        value per pixel), in the inputs' dtype and on their device. A 1-tuple of inputs gives a
        1-tuple back. A map that is all zeros (the method found none of the class's evidence, e.g. GFI
        on random weights) is returned as zeros with a :class:`gfi.evidence.EmptyMapWarning`.
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
        targets = one_target_each(target, pixels.shape[0], who=f"{type(self).__name__}.attribute")
        maps = explain_maps(self.spec, clf, pixels, targets)
        warn_empty(maps, f"{type(self).__name__}.attribute", CAPTUM_ZEROS)
        out = maps.unsqueeze(1).to(device=inputs.device, dtype=inputs.dtype).expand_as(inputs).contiguous()
        return (out,) if is_tuple else out
