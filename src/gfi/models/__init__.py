"""Classifiers, presets, model sources, layers, token reshapes and weights."""

from gfi.models.classifier import Classifier, NotAConvNetError, auto_layers
from gfi.models.layers import LayerNotFoundError, LayerRef, capture, frozen, layer_gradients, model_lock
from gfi.models.presets import DEFAULT_MODEL, PRESETS, imagenet_class_names, load_model
from gfi.models.sources import SOURCES, load_source
from gfi.models.tokens import TokenGrid, nhwc_to_nchw
from gfi.models.weights import WeightsError

__all__ = [
    "DEFAULT_MODEL",
    "PRESETS",
    "SOURCES",
    "Classifier",
    "LayerNotFoundError",
    "LayerRef",
    "NotAConvNetError",
    "TokenGrid",
    "WeightsError",
    "auto_layers",
    "capture",
    "frozen",
    "imagenet_class_names",
    "layer_gradients",
    "load_model",
    "load_source",
    "model_lock",
    "nhwc_to_nchw",
]
