"""gfi: Guided Feature Inversion (Du, Liu, Song, Hu, KDD 2018) for CNN image classifiers.

The library reports through the standard :mod:`logging` module (loggers ``gfi.*``) and never
prints; configure ``logging.getLogger("gfi")`` to see its warnings.

``import gfi`` is light: the names below are loaded on first use (PEP 562), so a script, or the
command line's ``gfi --help``, pays for torch and the methods only when it uses them.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gfi.data import load_image
    from gfi.folder import explain_folder
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
    from gfi.viz.overlay import save_overlay

#: public name -> the module that defines it (imported on first access)
_LAZY = {
    "load_image": "gfi.data",
    "explain_folder": "gfi.folder",
    "Explainer": "gfi.methods",
    "Explanation": "gfi.methods",
    "GFIConfig": "gfi.methods",
    "GuidedFeatureInversion": "gfi.methods",
    "GuidedFeatureInversionStage1": "gfi.methods",
    "RunOptions": "gfi.methods",
    "get_method": "gfi.methods",
    "Classifier": "gfi.models",
    "load_model": "gfi.models",
    "save_overlay": "gfi.viz.overlay",
}


def __getattr__(name: str) -> Any:
    """The public names of :data:`_LAZY`, and gfi's subpackages (``gfi.targets``, ``gfi.frontends``),
    imported when first read."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if not name.startswith("_"):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _version() -> str:
    """The installed distribution's version (pyproject.toml is the one source)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gfi-explain")
    except PackageNotFoundError:  # a source tree on sys.path, not installed
        return "0+unknown"


__version__ = _version()

logging.getLogger(__name__).addHandler(logging.NullHandler())


def _load_model(name: str) -> Classifier:
    from gfi.models import load_model

    return load_model(name)[0]


def explain(image, method: str = "gfi", target=None, *, model: str | Classifier = "efficientnet_lite0",
            config=None, progress=None, **settings) -> Explanation:
    """One call: explain ``image`` (a path, or a (C, H, W) tensor in [0, 1]) with ``method`` for
    ``target`` (None: the top-1 class; an index, a class name, a :mod:`gfi.targets` target, or a list
    of them), on ``model`` (a preset name or a :class:`Classifier`). The maps come back at the image's
    own size.

    ``progress``: None or False (silent), True (a bar of the method's steps on a terminal, plain
    lines in a log, on stderr, with the estimated cost), or a callable taking a
    :class:`gfi.progress.Progress`. A folder of images: :func:`explain_folder`.

    >>> e = gfi.explain("photo.jpg", target="tabby cat", progress=True)  # doctest: +SKIP
    >>> gfi.save_overlay("tabby.png", gfi.load_image("photo.jpg"), e.maps[0, 0])  # doctest: +SKIP
    """
    from torch import Tensor

    from gfi.data import load_image
    from gfi.methods.spec import resolve
    from gfi.models import Classifier
    from gfi.progress import tracker

    spec = resolve(method, config, settings)  # a bad method or setting: refused before the model loads
    clf = model if isinstance(model, Classifier) else _load_model(model)
    img = image if isinstance(image, Tensor) else load_image(image, channels=clf.channels)
    names = target if isinstance(target, list | tuple) else [target]
    targets = None if target is None else [[t if callable(t) else clf.class_index(t) for t in names]]
    explainer = spec.explainer(clf)
    steps = tracker(progress, explainer.name)
    steps.start(1)
    try:
        steps.begin_call(1)
        with steps.hooked(explainer):
            e = explainer.explain(clf.prepare(img).to(clf.device), targets)
        steps.end_call()
        steps.advance(1)
    finally:
        steps.end()
    return e.resize_to(tuple(img.shape[-2:]))

__all__ = [
    "Classifier",
    "Explainer",
    "Explanation",
    "GFIConfig",
    "GuidedFeatureInversion",
    "GuidedFeatureInversionStage1",
    "RunOptions",
    "__version__",
    "explain",
    "explain_folder",
    "get_method",
    "load_image",
    "load_model",
    "save_overlay",
]
