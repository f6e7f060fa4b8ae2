"""Method names (as used by ``gfi explain --method``) to classes: adding a method is one line here."""

from __future__ import annotations

from typing import Any

from gfi.errors import UsageError
from gfi.methods.base import Explainer, RunOptions
from gfi.methods.cam import CAM
from gfi.methods.center import Center
from gfi.methods.extremal import ExtremalPerturbation
from gfi.methods.gfi import GuidedFeatureInversion, GuidedFeatureInversionStage1
from gfi.methods.grad_cam import GradCAM
from gfi.methods.gradient import Gradient
from gfi.methods.guided_backprop import GuidedBackprop
from gfi.methods.integrated_gradients import IntegratedGradients
from gfi.methods.lrp import LRP
from gfi.methods.meaningful_perturbation import MeaningfulPerturbation
from gfi.methods.pixel_mask import PixelMask
from gfi.methods.rise import RISE
from gfi.methods.smoothgrad import SmoothGrad
from gfi.models.classifier import Classifier
from gfi.settings import Settings

METHODS: dict[str, type[Explainer]] = {
    cls.name: cls
    for cls in (GuidedFeatureInversion, GuidedFeatureInversionStage1, GradCAM, Gradient, Center,
                MeaningfulPerturbation, GuidedBackprop, SmoothGrad, IntegratedGradients, LRP, CAM, PixelMask,
                RISE, ExtremalPerturbation)
}


def method_class(name: str) -> type[Explainer]:
    """The class of method ``name``; a :class:`~gfi.errors.UsageError` listing the valid names otherwise."""
    if name not in METHODS:
        raise UsageError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    return METHODS[name]


def get_method(name: str, classifier: Classifier, config: Settings | str | None = None, *,
               options: RunOptions | None = None, **overrides: Any) -> Explainer:
    """An explainer by name: ``METHODS[name](classifier, config, options=options, **overrides)``."""
    return method_class(name)(classifier, config, options=options, **overrides)


def support_table() -> str:
    """What each method supports, as a Markdown table generated from its class attributes
    (``supports_cnn``, ``supports_tokens``, ``supports_multilabel``, ``shares_across_targets``,
    ``any_device``); docs/METHOD.md holds its output and a test keeps the two equal
    (``python scripts/support_table.py`` rewrites it)."""
    def yes(flag: bool) -> str:
        return "yes" if flag else "no"

    rows = ["| method | CNN | token model (ViT, DeiT, Swin) | multi-label | K targets of one image share | "
            "any device (CPU, GPU) |", "|---|---|---|---|---|---|"]
    rows += [f"| `{name}` | {cls.supports_cnn} | {yes(cls.supports_tokens)} | {yes(cls.supports_multilabel)} | "
             f"{cls.shares_across_targets} | {yes(cls.any_device)} |" for name, cls in METHODS.items()]
    return "\n".join(rows)
