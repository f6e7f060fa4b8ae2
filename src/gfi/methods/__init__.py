"""Explanation methods behind one interface, ``explain(images, targets) -> Explanation``."""

from gfi.methods.base import Explainer, Explanation, NoSettings, RunOptions, as_targets
from gfi.methods.center import Center
from gfi.methods.gfi import GFIConfig, GuidedFeatureInversion, GuidedFeatureInversionStage1
from gfi.methods.grad_cam import GradCAM
from gfi.methods.gradient import Gradient
from gfi.methods.registry import METHODS, get_method, method_class
from gfi.methods.spec import MethodSpec, resolve

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
    "MethodSpec",
    "NoSettings",
    "RunOptions",
    "as_targets",
    "get_method",
    "method_class",
    "resolve",
]
