"""gfi: Guided Feature Inversion (Du, Liu, Song, Hu, KDD 2018) for CNN image classifiers.

The library reports through the standard :mod:`logging` module (loggers ``gfi.*``) and never
prints; configure ``logging.getLogger("gfi")`` to see its warnings.
"""

import logging

from gfi.data import load_image
from gfi.methods import (
    Explainer,
    Explanation,
    GFIConfig,
    GuidedFeatureInversion,
    GuidedFeatureInversionStage1,
    RunOptions,
    get_method,
)
from gfi.models import Classifier, load_model

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "Classifier",
    "Explainer",
    "Explanation",
    "GFIConfig",
    "GuidedFeatureInversion",
    "GuidedFeatureInversionStage1",
    "RunOptions",
    "__version__",
    "get_method",
    "load_image",
    "load_model",
]
