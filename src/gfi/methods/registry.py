"""Method names (as used by ``gfi explain --method``) to classes."""

from __future__ import annotations

from gfi.methods.base import Explainer
from gfi.methods.cam import GradCAM
from gfi.methods.center import Center
from gfi.methods.class_activation_map import CAM
from gfi.methods.extremal import ExtremalPerturbation
from gfi.methods.gfi import GuidedFeatureInversion, GuidedFeatureInversionStage1
from gfi.methods.gradient import Gradient
from gfi.methods.guided_backprop import GuidedBackprop
from gfi.methods.integrated_gradients import IntegratedGradients
from gfi.methods.lrp import LRP
from gfi.methods.meaningful_perturbation import MeaningfulPerturbation
from gfi.methods.pixel_mask import PixelMask
from gfi.methods.rise import RISE
from gfi.methods.smoothgrad import SmoothGrad
from gfi.models.classifier import Classifier

METHODS: dict[str, type[Explainer]] = {
    cls.name: cls
    for cls in (GuidedFeatureInversion, GuidedFeatureInversionStage1, GradCAM, Gradient, Center,
                MeaningfulPerturbation, GuidedBackprop, SmoothGrad, IntegratedGradients, LRP, CAM, PixelMask,
                RISE, ExtremalPerturbation)
}


def get_method(name: str, classifier: Classifier, **options) -> Explainer:
    """An explainer by name; ``options`` go to its constructor."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    return METHODS[name](classifier, **options)


def fast_options(name: str) -> dict:
    """The documented cheaper setting of a slow method (``{}`` for the others), used by ``gfi compare``."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    return dict(getattr(METHODS[name], "fast_options", {}))
