"""Typed settings: dataclass fields that carry their own help, range and paper value.

Every settings class of gfi (a method's settings, the run options, an experiment's options) is a
frozen dataclass deriving from :class:`Settings` whose fields are made with :func:`setting`. From
the fields alone:

* :meth:`Settings.__post_init__` validates every value: the type, ``Literal`` choices, finiteness
  of every number (NaN and inf are refused), the range given in the field's metadata;
* :func:`describe` lists them for the command line (``gfi.cli.common`` makes one typed option per
  field, with its default and choices, and ``--set KEY=VALUE`` reads through the same rules);
* :meth:`Settings.with_overrides` applies overrides given as values or as strings, with an error
  that names an unknown key and lists the valid ones.

This module knows nothing of methods, models or the CLI.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, TypeVar, get_args, get_origin

from gfi.errors import SettingsError

S = TypeVar("S", bound="Settings")

class _Unset:
    def __repr__(self) -> str:
        return "(not given)"


_MISSING: Any = _Unset()  # "the paper gives no value" (dataclasses.MISSING would mean "no default")


def setting(default: Any, help: str, *, paper: Any = _MISSING, low: float | None = None,
            high: float | None = None, low_open: bool = False, odd: bool = False,
            stage: int | None = None, group: str = "method") -> Any:
    """A settings field.

    Args:
        default: the default value (a tuple for sequence fields).
        help: one line for ``--help`` (plain text; the reasoning belongs in docs/METHOD.md).
        paper: the paper's value, shown in ``--help`` (left out: the paper gives none).
        low, high: the allowed range (inclusive); ``low_open`` makes ``low`` exclusive.
        odd: the value must be a positive odd integer (blur kernels).
        stage: for GFI, the stage that reads the field (1 or 2; None: both).
        group: where ``--help`` lists it (``"method"`` or ``"speed"``).
    """
    meta = {"help": help, "low": low, "high": high, "low_open": low_open, "odd": odd, "stage": stage,
            "group": group}
    if paper is not _MISSING:
        meta["paper"] = paper
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class SettingInfo:
    """What the command line and the docs need to know of one field."""

    name: str
    kind: type  # bool, int, float, str or tuple
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    optional: bool = False  # None is allowed
    item: type | None = None  # element type of a tuple field
    paper: Any = _MISSING
    stage: int | None = None
    group: str = "method"
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    odd: bool = False

    @property
    def has_paper(self) -> bool:
        return self.paper is not _MISSING


def _resolve(tp: Any) -> tuple[type, tuple | None, bool, type | None]:
    """(kind, choices, optional, item) of an annotation."""
    optional = False
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        optional = len(args) < len(get_args(tp))
        if len(args) == 1:
            tp = args[0]
        else:  # e.g. float | tuple[float, ...]: the sequence form, items of the scalar
            seq = [a for a in args if get_origin(a) is tuple]
            if not seq:
                raise TypeError(f"unsupported settings annotation {tp!r}")
            tp = seq[0]
        origin = get_origin(tp)
    if origin is Literal:
        choices = get_args(tp)
        return type(choices[0]), choices, optional, None
    if origin is tuple:
        return tuple, None, optional, get_args(tp)[0]
    if tp in (bool, int, float, str):
        return tp, None, optional, None
    raise TypeError(f"unsupported settings annotation {tp!r}")


@cache
def describe(cls: type[Settings]) -> tuple[SettingInfo, ...]:
    """Every field of ``cls`` with its type, choices, default and metadata, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        kind, choices, optional, item = _resolve(hints[f.name])
        m = f.metadata
        out.append(SettingInfo(
            name=f.name, kind=kind, default=f.default, help=m.get("help", ""), choices=choices, optional=optional,
            item=item, paper=m.get("paper", _MISSING), stage=m.get("stage"), group=m.get("group", "method"),
            low=m.get("low"), high=m.get("high"), low_open=m.get("low_open", False), odd=m.get("odd", False)))
    return tuple(out)


def parse_bool(text: str) -> bool:
    v = text.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def parse_value(info: SettingInfo, text: str) -> Any:
    """A command-line string as the field's type (``none`` for an optional field, ``a,b`` for a
    tuple). Raises ValueError with the reason."""
    if info.optional and text.strip().lower() in ("none", "null", ""):
        return None
    if info.kind is tuple:
        return tuple(_scalar(info.item or float, part) for part in text.split(",") if part.strip())
    return _scalar(info.kind, text)


def _scalar(kind: type, text: str) -> Any:
    if kind is bool:
        return parse_bool(text)
    if kind is int:
        try:
            return int(text)
        except ValueError:
            f = float(text)  # "1e3" for an int setting
            if not f.is_integer():
                raise ValueError(f"expected an integer, got {text!r}") from None
            return int(f)
    if kind is float:
        return float(text)
    return text.strip()


def check_value(cls_name: str, info: SettingInfo, value: Any) -> None:
    """Raise :class:`SettingsError` naming the setting when ``value`` does not fit ``info``."""
    where = f"{cls_name}.{info.name}"
    if value is None:
        if info.optional:
            return
        raise SettingsError(f"{where} may not be None")
    values = value if info.kind is tuple else (value,)
    if info.kind is tuple and not isinstance(value, tuple):
        raise SettingsError(f"{where} must be a tuple, got {type(value).__name__}")
    if info.kind is tuple and not value:
        raise SettingsError(f"{where} needs at least one value")
    kind = info.item if info.kind is tuple else info.kind
    for v in values:
        if kind is bool and not isinstance(v, bool):
            raise SettingsError(f"{where} must be true or false, got {v!r}")
        if kind in (int, float) and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise SettingsError(f"{where} must be a number, got {v!r}")
        if kind is int and not float(v).is_integer():
            raise SettingsError(f"{where} must be an integer, got {v!r}")
        if kind in (int, float):
            if not math.isfinite(v):
                raise SettingsError(f"{where} must be a finite number, got {v}")
            if info.low is not None and (v <= info.low if info.low_open else v < info.low):
                raise SettingsError(f"{where} must be {'>' if info.low_open else '>='} {info.low}, got {v}")
            if info.high is not None and v > info.high:
                raise SettingsError(f"{where} must be <= {info.high}, got {v}")
            if info.odd and (v < 1 or int(v) % 2 == 0):
                raise SettingsError(f"{where} must be a positive odd integer, got {v}")
        if kind is str and not isinstance(v, str):
            raise SettingsError(f"{where} must be a string, got {v!r}")
        if info.choices is not None and v not in info.choices:
            raise SettingsError(f"{where} must be one of {', '.join(map(str, info.choices))}; got {v!r}")


@dataclass(frozen=True)
class Settings:
    """Base of gfi's settings dataclasses: validated on construction, overridable by name."""

    def __post_init__(self) -> None:
        for info in describe(type(self)):
            value = getattr(self, info.name)
            if info.kind is tuple and isinstance(value, (list, int, float)) and not isinstance(value, bool):
                value = tuple(value) if isinstance(value, list) else (value,)
                object.__setattr__(self, info.name, value)
            elif info.kind is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, info.name, float(value))
                value = float(value)
            check_value(type(self).__name__, info, value)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(i.name for i in describe(cls))

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def with_overrides(self: S, overrides: Mapping[str, Any] | None = None, **more: Any) -> S:
        """A copy with ``overrides``; string values are parsed as the field's type."""
        given = {**(overrides or {}), **more}
        if not given:
            return self
        infos = {i.name: i for i in describe(type(self))}
        unknown = [k for k in given if k not in infos]
        if unknown:
            raise SettingsError(f"{type(self).__name__} has no setting {', '.join(map(repr, unknown))}; "
                                f"its settings: {', '.join(infos) or '(none)'}")
        values = {}
        for k, v in given.items():
            if isinstance(v, str) and infos[k].kind is not str:
                try:
                    v = parse_value(infos[k], v)
                except ValueError as exc:
                    raise SettingsError(f"{type(self).__name__}.{k}: {exc}") from exc
            values[k] = v
        return dataclasses.replace(self, **values)
