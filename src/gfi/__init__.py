"""gfi: Guided Feature Inversion (Du, Liu, Song, Hu, KDD 2018) for CNN image classifiers.

The library reports through the standard :mod:`logging` module (loggers ``gfi.*``) and never
prints; configure ``logging.getLogger("gfi")`` to see its warnings.
"""

import logging

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


def _version() -> str:
    """The installed distribution's version (pyproject.toml is the one source)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gfi-explain")
    except PackageNotFoundError:  # a source tree on sys.path, not installed
        return "0+unknown"


__version__ = _version()

logging.getLogger(__name__).addHandler(logging.NullHandler())


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

    from gfi.methods.spec import resolve
    from gfi.progress import tracker

    spec = resolve(method, config, settings)  # a bad method or setting: refused before the model loads
    clf = model if isinstance(model, Classifier) else load_model(model)[0]
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
