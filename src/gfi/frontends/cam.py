"""gfi's explainers in pytorch-grad-cam's calling convention: ``GFICAM(model, target_layers=[layer])``.

A thin front end over :func:`gfi.methods.resolve` that is called like
``pytorch_grad_cam.base_cam.BaseCAM``: ``cam(input_tensor=x, targets=[ClassifierOutputTarget(c), ...])``
returns a float32 numpy array (N, H, W) in [0, 1] at the input size, and ``with GFICAM(...) as cam:``
works. The one target layer is GFI's inversion layer l0 and channel layer l1 alike
(``Classifier.with_layers(inversion_layer=name, channel_layer=name)``).

Inputs (the rule of :mod:`gfi.frontends`): when ``model`` is a :class:`gfi.Classifier`, the inputs
are pixels in [0, 1]. Any other ``nn.Module`` takes the tensors it takes itself (e.g.
ImageNet-normalised, as in pytorch-grad-cam's examples): with ``mean=`` and ``std=`` (the model's
normalisation, as in torchvision's ``Normalize``) the pixels are ``input_tensor * std + mean``, exact
for every method and background; without them each call rescales its batch by the batch's min and
max so that the model sees exactly those tensors (exact for GFI's blur background and the CAM
methods only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch import Tensor, nn

from gfi.errors import UsageError
from gfi.frontends.common import check_normalization, explain_maps, module_name, one_target_each, pixels_and_classifier
from gfi.methods.base import RunOptions
from gfi.methods.spec import resolve
from gfi.models.classifier import Classifier
from gfi.settings import Settings

__all__ = ["GFICAM"]


def _target_class() -> type | None:
    """pytorch-grad-cam's ``ClassifierOutputTarget``, or None when grad-cam is not installed (then no
    target object can be one, and only ``targets=None`` is accepted)."""
    from importlib.util import find_spec

    if find_spec("pytorch_grad_cam") is None:
        return None
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    return ClassifierOutputTarget


class GFICAM:
    """Guided Feature Inversion (or any gfi method) called like a pytorch-grad-cam CAM.

    Args:
        model: a :class:`gfi.Classifier` (inputs are pixels in [0, 1]) or the raw ``nn.Module``
            (inputs are the tensors it takes; see :mod:`gfi.frontends` for the exact rule).
        target_layers: a list of exactly one module of ``model`` (found by identity in
            ``named_modules()``): GFI's l0 and l1 (for ``method="gradcam"``, the layer Grad-CAM reads).
        reshape_transform: passed to ``gfi.Classifier(..., reshape_transform=...)`` for a raw module
            when not None (for a ``gfi.Classifier``, give it to the Classifier itself).
        method: any name of :data:`gfi.methods.registry.METHODS` (default ``"gfi"``).
        config: the method's settings object or a preset name.
        options: the :class:`gfi.RunOptions` to start from (how fast, never what the map is).
        mean, std: the model's input normalisation (one number per channel, or one for all; give
            both or neither; refused with a ``gfi.Classifier``, which has its own): the pixels are
            ``input_tensor * std + mean``, which must lie in [0, 1] (to 1e-3).
        clamp: with ``mean``/``std``, clamp the pixels to [0, 1] instead of refusing inputs outside;
            the model then sees the clamped images.
        **settings: overrides of the method's settings or of :class:`gfi.RunOptions`.
    """

    def __init__(self, model: nn.Module, target_layers: Sequence[nn.Module],
                 reshape_transform: Callable | None = None, *, method: str = "gfi",
                 config: Settings | str | None = None, options: RunOptions | None = None,
                 mean: Sequence[float] | float | None = None, std: Sequence[float] | float | None = None,
                 clamp: bool = False, **settings: Any) -> None:
        if not isinstance(model, nn.Module):
            raise UsageError(f"GFICAM: model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(target_layers, nn.Module) or not isinstance(target_layers, Sequence) \
                or len(target_layers) != 1:
            got = ("a module, not a list" if isinstance(target_layers, nn.Module)
                   else f"{len(target_layers)} layers" if isinstance(target_layers, Sequence)
                   else type(target_layers).__name__)
            raise UsageError(f"GFICAM takes exactly one target layer (GFI's l0 and l1), got {got}; "
                             "pass target_layers=[layer], e.g. [model.layer4[-1]]")
        self.model = model
        self.target_layers = list(target_layers)
        self.reshape_transform = reshape_transform
        inner = model.model if isinstance(model, Classifier) else model
        self.layer = module_name(inner, self.target_layers[0], who="GFICAM")
        self.spec = resolve(method, config, settings, options=options)
        self.normalization = check_normalization(model, mean, std, clamp, who="GFICAM")
        self.clamp = clamp

    def __call__(self, input_tensor: Tensor, targets: Sequence[Any] | None = None, aug_smooth: bool = False,
                 eigen_smooth: bool = False) -> np.ndarray:
        """Maps of ``input_tensor`` (N, 3, H, W) for ``targets``: a float32 array (N, H, W) in [0, 1].

        ``targets``: N ``pytorch_grad_cam.utils.model_targets.ClassifierOutputTarget(category)``, or
        None for each input's top-1 class. ``aug_smooth`` and ``eigen_smooth`` are pytorch-grad-cam's
        options for CAMs and are refused when true.
        """
        if aug_smooth or eigen_smooth:
            raise UsageError("GFICAM does not support aug_smooth or eigen_smooth (pytorch-grad-cam's CAM "
                             "post-processing); call it without them")
        mean, std = self.normalization or (None, None)
        clf, pixels = pixels_and_classifier(self.model, input_tensor, layer=self.layer,
                                            reshape_transform=self.reshape_transform, mean=mean, std=std,
                                            clamp=self.clamp, who="GFICAM")
        classes = self._categories(targets, pixels.shape[0])
        maps = explain_maps(self.spec, clf, pixels, classes)
        return maps.detach().float().cpu().numpy()

    forward = __call__

    @staticmethod
    def _categories(targets: Sequence[Any] | None, n: int) -> list[int] | None:
        if targets is None:
            return None
        if not isinstance(targets, Sequence):
            raise UsageError(f"GFICAM: targets must be a list of ClassifierOutputTarget or None, "
                             f"got {type(targets).__name__}")
        cls = _target_class()
        bad = [t for t in targets if cls is None or type(t) is not cls]
        if bad:
            raise UsageError(f"GFICAM supports ClassifierOutputTarget(category) targets (or None for top-1), got "
                             f"{type(bad[0]).__name__}; gfi's methods explain a class index with their own class "
                             "score, so pass ClassifierOutputTarget(index)")
        return one_target_each([t.category for t in targets], n, who="GFICAM")

    def __enter__(self) -> GFICAM:
        return self

    def __exit__(self, exc_type: Any, exc_value: Any, exc_tb: Any) -> None:
        """Nothing to release: gfi's hooks come off after every call. Exceptions propagate."""
        return None
