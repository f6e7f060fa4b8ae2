"""Explanation methods behind one interface, ``explain(images, targets) -> Explanation``."""

from gfi.methods.base import Explainer, Explanation, as_targets
from gfi.methods.gfi import GFIConfig, GuidedFeatureInversion, GuidedFeatureInversionStage1

__all__ = [
    "Explainer",
    "Explanation",
    "GFIConfig",
    "GuidedFeatureInversion",
    "GuidedFeatureInversionStage1",
    "as_targets",
]
