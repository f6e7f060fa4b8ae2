"""Method names (as ``gfi explain --method`` takes them) to classes.

gfi's own methods are the :data:`BUILTIN` tuple: adding one is one line here. A method from
another package is found through an entry point of the group ``gfi.methods``, one line in that
package's ``pyproject.toml``::

    [project.entry-points."gfi.methods"]
    my-method = "my_package.my_method:MyMethod"

loaded when the registry is first read; :func:`register` adds a class in-process (a notebook, a
test). Either way the method is in ``gfi methods`` (and its ``--table``), ``gfi explain --method``,
``gfi compare --methods``, ``gfi eval --method``, :func:`gfi.methods.resolve` and the front ends.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from importlib.metadata import entry_points
from typing import Any

from gfi.errors import UsageError
from gfi.methods.base import Explainer, RunOptions
from gfi.methods.cam import CAM
from gfi.methods.center import Center
from gfi.methods.extremal import ExtremalPerturbation
from gfi.methods.gfi import GuidedFeatureInversion, GuidedFeatureInversionStage1
from gfi.methods.grad_cam import GradCAM
from gfi.methods.gradient import Gradient
from gfi.methods.guided_backprop import GuidedBackprop
from gfi.methods.integrated_gradients import IntegratedGradients
from gfi.methods.lrp import LRP
from gfi.methods.meaningful_perturbation import MeaningfulPerturbation
from gfi.methods.pixel_mask import PixelMask
from gfi.methods.rise import RISE
from gfi.methods.smoothgrad import SmoothGrad
from gfi.models.classifier import Classifier
from gfi.settings import Settings

log = logging.getLogger("gfi")

#: gfi's own methods, in the order ``gfi methods`` lists them
BUILTIN: tuple[type[Explainer], ...] = (
    GuidedFeatureInversion, GuidedFeatureInversionStage1, GradCAM, Gradient, Center, MeaningfulPerturbation,
    GuidedBackprop, SmoothGrad, IntegratedGradients, LRP, CAM, PixelMask, RISE, ExtremalPerturbation)
#: the entry-point group through which other packages register methods
ENTRY_POINT_GROUP = "gfi.methods"
#: a method's name: lower case, digits and dashes (it is a command-line value and part of file names)
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]*")
#: names that mean something else where methods are named (``gfi compare --methods all``)
RESERVED = frozenset({"all"})


class MethodRegistry(Mapping[str, type[Explainer]]):
    """The methods by name: gfi's own, then those of the ``gfi.methods`` entry points (loaded on
    first use), then those given to :meth:`register`."""

    def __init__(self, builtin: tuple[type[Explainer], ...]) -> None:
        self._methods: dict[str, type[Explainer]] = {}
        self._builtin = frozenset(builtin)
        for cls in builtin:
            self.register(cls)
        self._plugins_loaded = False
        #: entry points of the group that could not be loaded: name -> why (``gfi methods`` says so,
        #: and naming one is an error that says why)
        self.failed: dict[str, str] = {}

    def register(self, cls: type[Explainer]) -> type[Explainer]:
        """Add ``cls`` under ``cls.name`` (registering the same class again does nothing); returns
        ``cls``, so it works as a class decorator. A one-line :class:`~gfi.errors.UsageError` when
        it is not a complete method (:func:`check_method`) or its name is another class's."""
        check_method(cls)
        if self._methods.get(cls.name, cls) is not cls:
            other = self._methods[cls.name]
            raise UsageError(f"method name {cls.name!r} of {_where(cls)} is taken by {_where(other)}; "
                             "give the new method another name")
        self._methods[cls.name] = cls
        return cls

    def unregister(self, name: str) -> None:
        """Remove a method added by :meth:`register` or an entry point (gfi's own stay)."""
        cls = self._methods.get(name)
        if cls is None:
            raise UsageError(f"unknown method {name!r}; valid methods: {', '.join(self)}")
        if cls in self._builtin:
            raise UsageError(f"{name!r} is one of gfi's own methods, which cannot be removed")
        del self._methods[name]

    def _load_plugins(self) -> None:
        """Register the classes of the ``gfi.methods`` entry points, once. One that cannot be
        loaded or is no method is left out with a warning naming it and why; the others load."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                cls = ep.load()
                if getattr(cls, "name", None) != ep.name:
                    raise UsageError(f"the entry point is named {ep.name!r} but its class's name is "
                                     f"{getattr(cls, 'name', None)!r}; name the entry point as the method")
                self.register(cls)
            except Exception as exc:  # a broken plugin must not take the others down: say so, go on
                self.failed[ep.name] = f"{ep.value}: {type(exc).__name__}: {exc}"
                log.warning("method plugin %s (entry point group %s) is left out: %s", ep.name, ENTRY_POINT_GROUP,
                            self.failed[ep.name])

    def __getitem__(self, name: str) -> type[Explainer]:
        self._load_plugins()
        return self._methods[name]

    def __iter__(self) -> Iterator[str]:
        self._load_plugins()
        return iter(list(self._methods))

    def __len__(self) -> int:
        self._load_plugins()
        return len(self._methods)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._methods


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def check_method(cls: Any) -> None:
    """A one-line :class:`~gfi.errors.UsageError` unless ``cls`` is a complete method: an
    :class:`Explainer` subclass with ``_explain``, a ``name`` of lower case, digits and dashes, a
    ``summary``, a :class:`~gfi.settings.Settings` ``settings_class`` whose fields are not run
    options, and ``test_settings`` that are its settings."""
    if not (isinstance(cls, type) and issubclass(cls, Explainer)):
        raise UsageError(f"a method must be a subclass of gfi.methods.base.Explainer, got {cls!r}")
    where = _where(cls)
    if not isinstance(cls.name, str) or not NAME_PATTERN.fullmatch(cls.name) or cls.name in RESERVED:
        raise UsageError(f"{where}: name must be lower case letters, digits and dashes (not {', '.join(RESERVED)}), "
                         f"got {cls.name!r}")
    if inspect.isabstract(cls):
        raise UsageError(f"{where} ({cls.name}) does not implement _explain(self, images, targets)")
    if not cls.summary:
        raise UsageError(f"{where} ({cls.name}) has no summary: one line for `gfi methods`")
    if not (isinstance(cls.settings_class, type) and issubclass(cls.settings_class, Settings)):
        raise UsageError(f"{where} ({cls.name}): settings_class must be a gfi.settings.Settings dataclass")
    clash = set(cls.settings_class.names()) & set(RunOptions.names())
    if clash:
        raise UsageError(f"{where} ({cls.name}): settings {', '.join(sorted(clash))} are run options; rename them")
    unknown = set(cls.test_settings) - set(cls.settings_class.names()) - set(RunOptions.names())
    if unknown:
        raise UsageError(f"{where} ({cls.name}): test_settings name {', '.join(sorted(unknown))}, which are not "
                         "its settings")


METHODS: MethodRegistry = MethodRegistry(BUILTIN)
register = METHODS.register
unregister = METHODS.unregister


def method_class(name: str) -> type[Explainer]:
    """The class of method ``name``; a :class:`~gfi.errors.UsageError` listing the valid names otherwise."""
    if name not in METHODS:
        if name in METHODS.failed:
            raise UsageError(f"method {name!r} is a plugin that could not be loaded ({METHODS.failed[name]}); "
                             "fix or uninstall the package that provides it")
        raise UsageError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    return METHODS[name]


def get_method(name: str, classifier: Classifier, config: Settings | str | None = None, *,
               options: RunOptions | None = None, **overrides: Any) -> Explainer:
    """An explainer by name: ``METHODS[name](classifier, config, options=options, **overrides)``."""
    return method_class(name)(classifier, config, options=options, **overrides)


def support_table(methods: Iterable[type[Explainer]] | None = None) -> str:
    """What each method supports, as a Markdown table generated from its class attributes
    (``supports_cnn``, ``supports_tokens``, ``supports_multilabel``, ``shares_across_targets``,
    ``any_device``): ``methods`` (default: every registered one, plugins included). docs/METHOD.md
    holds the table of gfi's own (:data:`BUILTIN`) and a test keeps the two equal
    (``python scripts/support_table.py`` rewrites it)."""
    def yes(flag: bool) -> str:
        return "yes" if flag else "no"

    rows = ["| method | CNN | token model (ViT, DeiT, Swin) | multi-label | K targets of one image share | "
            "any device (CPU, GPU) |", "|---|---|---|---|---|---|"]
    rows += [f"| `{cls.name}` | {cls.supports_cnn} | {yes(cls.supports_tokens)} | {yes(cls.supports_multilabel)} | "
             f"{cls.shares_across_targets} | {yes(cls.any_device)} |"
             for cls in (METHODS.values() if methods is None else methods)]
    return "\n".join(rows)
