"""Method names (as used by ``gfi explain --method``) to classes."""

from __future__ import annotations

from gfi.methods.base import Explainer
from gfi.methods.cam import GradCAM
from gfi.methods.center import Center
from gfi.methods.gfi import GuidedFeatureInversion, GuidedFeatureInversionStage1
from gfi.methods.gradient import Gradient
from gfi.methods.meaningful_perturbation import MeaningfulPerturbation
from gfi.models.classifier import Classifier

METHODS: dict[str, type[Explainer]] = {
    cls.name: cls
    for cls in (GuidedFeatureInversion, GuidedFeatureInversionStage1, GradCAM, Gradient, Center,
                MeaningfulPerturbation)
}


def get_method(name: str, classifier: Classifier, **options) -> Explainer:
    """An explainer by name; ``options`` go to its constructor."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    return METHODS[name](classifier, **options)
