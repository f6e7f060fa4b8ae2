"""gfi's explainers as a Quantus ``explain_func``:
``metric(..., explain_func=gfi.frontends.quantus.explain)``.

A thin front end over :func:`gfi.methods.resolve` in the convention of
``quantus.explain`` (``quantus/functions/explanation_func.py``): a Quantus metric called with
``a_batch=None`` computes its explanations as
``explain_func(model=model, inputs=x_batch, targets=y_batch, **explain_func_kwargs)`` with numpy
batches (``quantus.metrics.base.Metric.explain_batch``), adding ``device`` to the keywords when the
metric was given one. This module does not import Quantus.

Inputs (the rule of :mod:`gfi.frontends`): when ``model`` is a :class:`gfi.Classifier`, ``x_batch``
holds pixels in [0, 1]. Any other ``nn.Module`` takes the arrays the model itself takes (e.g.
ImageNet-normalised): with ``mean`` and ``std`` in ``explain_func_kwargs`` (the model's
normalisation, as in torchvision's ``Normalize``) the pixels are ``x_batch * std + mean``, exact for
every method and background; without them each call rescales its batch by the batch's min and max
so that the model sees exactly those values (exact for GFI's blur background and the CAM methods
only). Metrics that perturb the inputs (e.g. with noise) can take pixels out of [0, 1]; with
``mean``/``std`` that is an error unless ``clamp=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gfi.errors import UsageError
from gfi.evidence import warn_empty
from gfi.frontends.common import check_normalization, explain_maps, one_target_each, pixels_and_classifier
from gfi.methods.base import RunOptions
from gfi.methods.spec import resolve
from gfi.settings import Settings

__all__ = ["explain"]

#: what Quantus does with an all-zero explanation (quantus 0.6: measured), said when one is returned
QUANTUS_ZEROS = ("Quantus scores such an explanation NaN where a metric divides by its sum or correlates with it "
                 "(e.g. Complexity, RelevanceMassAccuracy, FaithfulnessEstimate), and refuses a batch of only zeros "
                 "(AssertionError): leave these inputs out, or average with np.nanmean")


def explain(model: nn.Module, inputs: np.ndarray | Tensor, targets: np.ndarray | Tensor | int | None, *,
            method: str = "gfi", config: Settings | str | None = None, options: RunOptions | None = None,
            device: str | torch.device | None = None, mean: Sequence[float] | float | None = None,
            std: Sequence[float] | float | None = None, clamp: bool = False, **settings: Any) -> np.ndarray:
    """Maps of ``inputs`` (N, 3, H, W) for ``targets`` (N class indices, one int, or None: top-1) as a
    float32 numpy array (N, 1, H, W) in [0, 1], the layout Quantus expects of an explanation.

    A map that is all zeros means the method found none of the class's evidence (e.g. GFI on random
    weights); it is returned as zeros, never replaced, with a :class:`gfi.evidence.EmptyMapWarning`
    naming the inputs and what Quantus makes of it (NaN in metrics that divide by the map's sum).

    Args:
        model: a :class:`gfi.Classifier` (inputs are pixels in [0, 1]) or the raw ``nn.Module``
            (inputs are what it takes; see :mod:`gfi.frontends` for the exact rule). The model is
            never moved.
        method: any name of :data:`gfi.methods.registry.METHODS` (default ``"gfi"``).
        config: the method's settings object or a preset name.
        options: the :class:`gfi.RunOptions` to start from (how fast, never what the map is).
        device: Quantus's device keyword; it must be the model's device (or None). The inputs are
            moved there.
        mean, std: the model's input normalisation (one number per channel, or one for all; give
            both or neither; refused with a ``gfi.Classifier``, which has its own): the pixels are
            ``inputs * std + mean``, which must lie in [0, 1] (to 1e-3).
        clamp: with ``mean``/``std``, clamp the pixels to [0, 1] instead of refusing inputs outside;
            the model then sees the clamped images.
        **settings: overrides of the method's settings or of :class:`gfi.RunOptions`.

    Every keyword reaches it through the metric's ``explain_func_kwargs``.
    """
    if not isinstance(model, nn.Module):
        raise UsageError(f"gfi.frontends.quantus.explain: model must be a torch.nn.Module, got {type(model).__name__}")
    spec = resolve(method, config, settings, options=options)
    check_normalization(model, mean, std, clamp, who="gfi.frontends.quantus.explain")
    here = _model_device(model)
    if device is not None and not _same_device(torch.device(device), here):
        raise UsageError(f"gfi.frontends.quantus.explain: device {device} is not the model's device {here}; "
                         f"move the model there (model.to({str(device)!r})) or pass device={str(here)!r}")
    x = inputs if isinstance(inputs, Tensor) else torch.from_numpy(np.ascontiguousarray(inputs))
    if not torch.is_floating_point(x):
        raise UsageError(f"gfi.frontends.quantus.explain: inputs must be floating point, got {x.dtype}")
    x = x.to(device=here, dtype=torch.float32)
    clf, pixels = pixels_and_classifier(model, x, mean=mean, std=std, clamp=clamp, who="gfi.frontends.quantus.explain")
    classes = one_target_each(targets, pixels.shape[0], who="gfi.frontends.quantus.explain")
    maps = explain_maps(spec, clf, pixels, classes)
    warn_empty(maps, "gfi.frontends.quantus.explain", QUANTUS_ZEROS)
    return maps.unsqueeze(1).detach().float().cpu().numpy()


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:0`` are one device when the current one is 0."""
    if a.type != b.type:
        return False
    if a.index is None or b.index is None:
        current = torch.cuda.current_device() if a.type == "cuda" and torch.cuda.is_available() else 0
        return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)
    return a.index == b.index
