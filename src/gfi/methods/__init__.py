"""Explanation methods behind one interface, ``explain(images, targets) -> Explanation``."""

from gfi.methods.base import (
    Explainer,
    Explanation,
    InversionExplanation,
    MaskExplanation,
    NoSettings,
    RunOptions,
    as_targets,
)
from gfi.methods.center import Center
from gfi.methods.gfi import GFIConfig, GFIExplanation, GuidedFeatureInversion, GuidedFeatureInversionStage1
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
    "GFIExplanation",
    "GradCAM",
    "Gradient",
    "GuidedFeatureInversion",
    "GuidedFeatureInversionStage1",
    "InversionExplanation",
    "MaskExplanation",
    "MethodSpec",
    "NoSettings",
    "RunOptions",
    "as_targets",
    "get_method",
    "method_class",
    "resolve",
]
