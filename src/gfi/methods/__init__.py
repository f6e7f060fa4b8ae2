"""Explanation methods behind one interface, ``explain(images, targets) -> Explanation``."""

from gfi.methods.base import Explainer, Explanation, as_targets
from gfi.methods.cam import GradCAM
from gfi.methods.center import Center
from gfi.methods.gfi import GFIConfig, GuidedFeatureInversion, GuidedFeatureInversionStage1
from gfi.methods.gradient import Gradient
from gfi.methods.registry import METHODS, get_method

__all__ = [
    "METHODS",
    "Center",
    "Explainer",
    "Explanation",
    "GFIConfig",
    "GradCAM",
    "Gradient",
    "GuidedFeatureInversion",
    "GuidedFeatureInversionStage1",
    "as_targets",
    "get_method",
]
