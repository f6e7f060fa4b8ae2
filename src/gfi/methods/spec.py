"""A method with the settings and run options it will run with, resolved once:
``resolve(method, config, overrides, options=...) -> MethodSpec``.

Every caller that starts from a method's name (``gfi.explain``, the command line's ``explain``,
``compare`` and ``eval``, the front ends of :mod:`gfi.frontends`) resolves it here, before any
model is loaded, so that an unknown method, preset or setting, or a bad value, is a one-line error
at once. The split of the overrides into the method's settings (what decides a map) and the run
options (how fast it is computed) is :meth:`gfi.methods.base.Explainer.resolve`, the one place it
is written; the constructor ``Method(classifier, config, options=..., **overrides)`` uses it too.

Presets are named one way: ``"default"`` (the fields' defaults) and the names the method's class
lists in ``presets`` (``"paper"``: the ``paper=`` value of every field; others, e.g. GFI's
``"fast"``, from its settings class's ``PRESET_CHANGES``); :meth:`Explainer.preset_names` lists them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gfi.errors import UsageError
from gfi.methods.base import Explainer, RunOptions
from gfi.methods.registry import method_class
from gfi.models.classifier import Classifier
from gfi.settings import Settings

__all__ = ["MethodSpec", "resolve"]


@dataclass(frozen=True)
class MethodSpec:
    """A method's class with its settings (``config``: what decides its maps) and run options
    (``options``: how fast they are computed), checked without a model."""

    cls: type[Explainer]
    config: Settings
    options: RunOptions

    @property
    def name(self) -> str:
        """The method's registry name."""
        return self.cls.name

    def explainer(self, classifier: Classifier) -> Explainer:
        """The method on ``classifier`` with these settings and run options."""
        return self.cls(classifier, self.config, options=self.options)


def resolve(method: str | type[Explainer], config: Settings | str | None = None,
            overrides: Mapping[str, Any] | None = None, *,
            options: RunOptions | Mapping[str, Any] | None = None) -> MethodSpec:
    """``method`` (a registry name or an :class:`Explainer` subclass) with its settings and run options.

    Args:
        config: a preset name (one of ``cls.preset_names()``; None: ``"default"``) or a settings
            object of the method's ``settings_class``.
        overrides: settings of the method or run options by field name, each routed to its own (a key
            that is both goes to the method); strings are parsed by the field's type, as the command
            line gives them.
        options: the run options to start from: a :class:`RunOptions`, its fields by name, or None.

    An unknown method, preset or key, or a bad value, is a one-line
    :class:`~gfi.errors.UsageError` / :class:`~gfi.errors.SettingsError` naming the valid ones.
    """
    if isinstance(method, str):
        cls = method_class(method)
    elif isinstance(method, type) and issubclass(method, Explainer):
        cls = method
    else:
        raise UsageError(f"method must be a method's name (`gfi methods`) or an Explainer subclass, got "
                         f"{type(method).__name__}")
    if isinstance(options, Mapping):
        options = RunOptions().with_overrides(options)
    settings, run = cls.resolve(config, options, dict(overrides or {}))
    return MethodSpec(cls, settings, run)
