"""What every command shares: the model, device, logging and output arguments, and ONE way to
set a method's settings.

A method's settings are the fields of its settings dataclass (``Method.settings_class``) and of
:class:`gfi.methods.base.RunOptions`; :func:`add_method_arguments` makes one typed option per field
from the field's metadata (type, ``Literal`` choices, default, the paper's value, one line of
help), and ``--set KEY=VALUE`` reaches the same fields through the same parser. ``explain``,
``compare`` and ``eval`` all use it. Which method's fields are shown depends on ``--method`` (or
``--methods``), read from the command line before the parser is built (:func:`methods_in_argv`).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from gfi.errors import SettingsError, UsageError
from gfi.models.device import DEVICE_CHOICES, choose_device  # noqa: F401 - the commands get the device rule here
from gfi.viz.report import format_prob  # noqa: F401 - the commands' number format

log = logging.getLogger("gfi")
ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEMO_IMAGE = ASSETS / "dog_cat.jpg"
DEFAULT_METHOD = "gfi"
SET_DEST = "set"
#: run-option fields whose flag would clash with a command's own option
RUN_FLAG_NAMES = {"batch_size": "forward-batch"}
_PREFIX = "setting__"


# -- shared arguments -----------------------------------------------------------------------------
def model_name(value: str) -> str:
    """The ``--model`` argument type: a preset, or a model source (``timm:NAME``,
    ``torchvision:NAME[:WEIGHTS]``, ``hf:PATH``) checked by its syntax (by name when the model is built)."""
    from gfi.models.presets import PRESETS
    from gfi.models.sources import SOURCE_SYNTAX, ModelSpecError, is_source, parse_spec

    if value in PRESETS:
        return value
    if is_source(value):
        try:
            parse_spec(value)
        except ModelSpecError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value
    raise argparse.ArgumentTypeError(
        f"invalid choice: {value!r} (choose from {', '.join(map(repr, PRESETS))}; or a model source: "
        f"{SOURCE_SYNTAX}, e.g. timm:resnet18, torchvision:resnet50:IMAGENET1K_V2, hf:./my-model; `gfi models` "
        "lists them)")


def add_model_arguments(p: argparse.ArgumentParser, *, layers: bool = True, presets_only: bool = True,
                        model_help: str | None = None) -> None:
    """--model, --weights, --unsafe-allow-pickle, --download (and the layer options). With
    ``presets_only`` --model takes one preset or one model source (``timm:NAME``,
    ``torchvision:NAME[:WEIGHTS]``), checked by syntax here and by name when the model is built."""
    from gfi.models.presets import DEFAULT_MODEL, PRESETS
    from gfi.models.sources import SOURCE_SYNTAX

    g = p.add_argument_group("model")
    g.add_argument("--model", default=DEFAULT_MODEL, type=model_name if presets_only else None,
                   metavar="MODEL" if presets_only else None,
                   help=model_help or f"a model preset ({', '.join(PRESETS)}) or a model source, {SOURCE_SYNTAX} "
                                      f"(`gfi models`; default: {DEFAULT_MODEL})")
    g.add_argument("--weights", default="default",
                   help="'default' (the preset's ImageNet weights, offline where available; a source's from the "
                        "local timm / torch hub cache), 'random', or a local checkpoint file (a state dict), loaded "
                        "with torch.load(weights_only=True)")
    g.add_argument("--unsafe-allow-pickle", action="store_true",
                   help="DANGEROUS: load a checkpoint that is a full pickle. Unpickling runs arbitrary code from the "
                        "file; use only for files you trust")
    g.add_argument("--download", action="store_true",
                   help="let torchvision (or timm, from the Hugging Face hub) download missing weights (network)")
    if layers:
        g.add_argument("--inversion-layer", help="l0, the layer Eq. 8 inverts: a module name (`gfi layers MODEL`), "
                                                 "NAME:input for a module's input")
        g.add_argument("--channel-layer", help="l1, the layer whose channels Eq. 6 combines (module name, "
                                               "NAME:input)")
        g.add_argument("--multilabel", action="store_true", help="multi-label model: f_c is the sigmoid of the logit")


def add_device_arguments(p: argparse.ArgumentParser, g=None):
    """--device and --threads (in group ``g``, else a new "speed" group); returns the group."""
    g = g or p.add_argument_group("speed (how fast, not what the map is)")
    g.add_argument("--device", default="auto", choices=list(DEVICE_CHOICES),
                   help="where to run: auto = the GPU when there is one, else the CPU (default: auto)")
    g.add_argument("--threads", type=int, default=0,
                   help="CPU threads for torch (0: one per core, less the cores other processes kept busy while gfi "
                        "started, on Linux; OMP_NUM_THREADS if you set it). gfi's threads wait passively "
                        "(OMP_WAIT_POLICY=PASSIVE unless you set it), so the default holds up on a busy machine; "
                        "--threads 1 where several gfi processes share the cores (default: 0)")
    return g


def add_log_arguments(p: argparse.ArgumentParser, *, verbose: bool = True) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")
    if verbose:
        p.add_argument("--verbose", action="store_true", help="debug logging")


def apply_threads(threads: int) -> None:
    """``--threads``: 0 is one thread per free core (:func:`gfi.threads.use_threads`); more than the
    cores this process may use is refused
    (it never helps, and tens of thousands make OpenMP fail to create threads and crash)."""
    from gfi.models.device import available_cpus

    if threads < 0:
        raise UsageError(f"--threads must be >= 0, got {threads}")
    cpus = available_cpus()
    if threads > cpus:
        raise UsageError(f"--threads {threads}: gfi may use {cpus} CPU core(s) here; give at most {cpus} "
                         "(or 0 for torch's default)")
    from gfi.threads import use_threads

    use_threads(threads)


def load_classifier(args: argparse.Namespace, device: torch.device | None = None):
    """The model of ``--model/--weights`` (a checkpoint of ``gfi eval voc-head`` too) with the layer
    options applied, on ``device``."""
    from gfi.models.loading import load_checkpointed

    clf, info = load_checkpointed(args.model, args.weights, allow_pickle=args.unsafe_allow_pickle,
                                  download=args.download, inversion_layer=getattr(args, "inversion_layer", None),
                                  channel_layer=getattr(args, "channel_layer", None),
                                  multilabel=getattr(args, "multilabel", False))
    if device is not None:
        clf.to(device)
    return clf, info


def split_list(spec: str | None) -> list[str]:
    return [s.strip() for s in (spec or "").split(",") if s.strip()]


# -- method settings --------------------------------------------------------------------------------
def option_value(argv: Sequence[str], option: str) -> str | None:
    """The value of ``option`` (``--opt V`` or ``--opt=V``; the last one wins) in an unparsed command line."""
    value = None
    for i, a in enumerate(argv):
        if a == option and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith(option + "="):
            value = a.split("=", 1)[1]
    return value


def methods_in_argv(argv: Sequence[str], option: str = "--method",
                    default: str | Sequence[str] = DEFAULT_METHOD) -> list[str]:
    """The method name(s) an option names on the command line, read before parsing (the parser's
    settings options depend on them); ``all`` is every method; unknown names are left to the parser."""
    from gfi.methods.registry import METHODS

    value = option_value(argv, option)
    fallback = [default] if isinstance(default, str) else list(default)
    names = list(METHODS) if value == "all" else split_list(value) if value else fallback
    return [n for n in names if n in METHODS] or fallback


def _flag(info, run_option: bool) -> str:
    name = RUN_FLAG_NAMES.get(info.name, info.name) if run_option else info.name
    return "--" + name.replace("_", "-")


def _shown(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


def _help(info) -> str:
    text = info.help.rstrip(".")
    parts = [f"default: {_shown(info.default)}"]
    if info.has_paper and info.paper != info.default:
        parts.append(f"paper: {_shown(info.paper)}")
    return f"{text} ({'; '.join(parts)})".replace("%", "%%")


def _metavar(info) -> str | None:
    if info.choices is not None:
        return "{" + ",".join(map(str, info.choices)) + "}"
    if info.kind is bool:
        return "{true,false}"
    if info.kind is tuple:
        return "A,B,..."
    return {int: "N", float: "X", str: "TEXT"}.get(info.kind)


def add_setting_option(group, info, dest: str, *, flag: str | None = None, visible: bool = True) -> None:
    """One typed command-line option for a settings field (``info`` from :func:`gfi.settings.describe`):
    its value arrives as a string under ``dest`` (None when not given), parsed later by the field's type."""
    group.add_argument(flag or "--" + info.name.replace("_", "-"), dest=dest, default=None, metavar=_metavar(info),
                       help=_help(info) if visible else argparse.SUPPRESS)


def settings_label(cls) -> str:
    """What a method's settings are called in messages: its settings class without the suffix
    (``GFIConfig`` -> GFI, ``RISESettings`` -> RISE)."""
    name = cls.settings_class.__name__
    for suffix in ("Config", "Settings"):
        name = name.removesuffix(suffix)
    return name or cls.name


def add_method_arguments(p: argparse.ArgumentParser, methods: Sequence[str], *, presets: bool = True,
                         group=None, skip: set[str] | frozenset[str] = frozenset()) -> argparse._ArgumentGroup:
    """``--preset``, one typed option per setting of ``methods`` and of the run options, and ``--set``.

    Each setting appears once: a field that several of ``methods`` have (e.g. ``seed``) is one
    option that sets it for each of them. The settings of the other methods are accepted too but
    not shown, so that giving one to a method that has no such setting is an error that says so
    (:func:`refuse_unused`), not argparse's "unrecognized arguments". ``--preset`` and ``--set`` go
    in ``group`` (default: a new "method" group); returns the speed group of the run options."""
    from gfi.methods.base import RunOptions
    from gfi.methods.registry import METHODS, method_class
    from gfi.settings import describe

    classes = [method_class(m) for m in methods]
    others = [c for c in METHODS.values() if c not in classes]
    shown = sorted({pr for c in classes for pr in c.presets}, key=lambda s: (s != "default", s))
    every = sorted({pr for c in METHODS.values() for pr in c.preset_names()}, key=lambda s: (s != "default", s))
    top = group or p.add_argument_group("method")
    if presets and every:
        top.add_argument("--preset", default=None, choices=every,
                         help=preset_help(classes) if shown else argparse.SUPPRESS)
    seen: set[str] = set(skip)  # names a command's own options already have: reached with --set
    for cls in [*classes, *others]:
        infos = [i for i in describe(cls.settings_class) if i.name not in seen]
        if not infos:
            continue
        visible = cls in classes
        group = p.add_argument_group(f"{cls.name} settings (docs/METHOD.md, docs/BASELINES.md)") if visible else p
        for info in infos:
            seen.add(info.name)
            add_setting_option(group, info, _PREFIX + info.name, flag=_flag(info, False), visible=visible)
    speed = p.add_argument_group("speed (how fast, not what the map is)")
    for info in describe(RunOptions):
        if info.name not in skip:
            add_setting_option(speed, info, _PREFIX + info.name, flag=_flag(info, True))
    top.add_argument("--set", dest=SET_DEST, action="append", default=[], metavar="KEY=VALUE",
                   help=f"any setting of {', '.join(c.name for c in classes)} by its field name (the same as its "
                        "option); repeatable")
    return speed


def preset_help(classes: Sequence[type]) -> str:
    """``--preset``'s help: every preset the methods ``classes`` list, each with what it is (read from
    the settings class: ``default`` its fields' defaults, ``paper`` their ``paper=`` values, another
    the fields its ``PRESET_CHANGES`` entry changes), so a preset added to a class appears here."""
    owners = [c for c in classes if c.presets]
    said: dict[str, str] = {}
    for cls in owners:
        changes = getattr(cls.settings_class, "PRESET_CHANGES", {})
        for name in cls.preset_names():
            if name == "default":
                said.setdefault(name, "default (the method's own settings)")
            elif name == "paper":
                said.setdefault(name, "paper (exactly the paper's)")
            elif name in changes:
                diff = ", ".join(f"{k}={v}" for k, v in changes[name].items())
                said.setdefault(name, f"{name} (the default with {diff})")
            else:
                said.setdefault(name, name)
    order = sorted(said, key=lambda n: (n != "default", n))
    return (f"settings preset of {', '.join(c.name for c in owners)}: {'; '.join(said[n] for n in order)} "
            "(default: default)")


def given_settings(args: argparse.Namespace) -> dict[str, str]:
    """The settings given on the command line (typed options and ``--set``), as strings by field name."""
    out = {k[len(_PREFIX):]: v for k, v in vars(args).items() if k.startswith(_PREFIX) and v is not None}
    for kv in getattr(args, SET_DEST, None) or []:
        if "=" not in kv:
            raise UsageError(f"--set {kv!r}: expected KEY=VALUE, e.g. --set iters2=40")
        k, v = kv.split("=", 1)
        out[k.strip().replace("-", "_")] = v.strip()
    return out


def refuse_unused(methods: Sequence[str], given: dict[str, Any]) -> None:
    """A :class:`UsageError` naming the settings in ``given`` that none of ``methods`` has (nor the
    run options): nothing the user gives is silently ignored."""
    from gfi.methods.base import RunOptions
    from gfi.methods.registry import METHODS, method_class

    own = {n for m in methods for n in method_class(m).settings_class.names()}
    unknown = [k for k in given if k not in own and k not in RunOptions.names()]
    if not unknown:
        return
    flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
    which = f"--method {methods[0]} does" if len(methods) == 1 else f"--methods {', '.join(methods)} do"
    owners = [c for c in METHODS.values() if set(unknown) & set(c.settings_class.names())]
    if owners:
        raise UsageError(f"{flags} set {settings_label(owners[0])} options, which {which} not use; drop them or "
                         f"use --method {' / '.join(c.name for c in owners)}")
    raise UsageError(f"{flags}: not a setting of {which.rsplit(' ', 1)[0]} ({'its' if len(methods) == 1 else 'their'} "
                     "settings: "
                     f"{', '.join(sorted(own)) or 'none'}; run options: {', '.join(RunOptions.names())})")


def check_preset(method: str, preset: str | None) -> None:
    """``--preset NAME`` is refused for a method that has no such preset, naming the methods that have it."""
    from gfi.methods.registry import METHODS, method_class

    if preset is None or preset in method_class(method).preset_names():
        return
    owners = [c for c in METHODS.values() if preset in c.preset_names()]
    raise UsageError(f"--preset set {settings_label(owners[0])} options, which --method {method} does not use; "
                     "drop it or use "
                     f"--method {' / '.join(c.name for c in owners)}")


def resolve_settings(method: str, *, preset: str | None, given: dict[str, Any],
                     base: dict[str, Any] | None = None, strict: bool = True):
    """``method`` with ``preset``, the settings ``base`` (e.g. a method's cheaper ones) and then
    ``given`` (the command line's), resolved by the library (:func:`gfi.methods.spec.resolve`)
    without a model, as a :class:`~gfi.methods.spec.MethodSpec`. The command line's errors: a
    preset or (``strict``) a setting the method lacks names the flag and the methods that have it;
    a bad value is a one-line :class:`UsageError` naming the setting. Not ``strict`` (``gfi
    compare``, whose settings are checked against all its methods by :func:`refuse_unused`): the
    keys that are neither this method's settings nor run options are not this method's."""
    from gfi.methods.base import RunOptions
    from gfi.methods.registry import method_class
    from gfi.methods.spec import resolve

    cls = method_class(method)
    check_preset(method, preset)
    given = {**(base or {}), **given}
    if strict:
        refuse_unused([method], given)
    else:
        known = {*cls.settings_class.names(), *RunOptions.names()}
        given = {k: v for k, v in given.items() if k in known}
    try:
        return resolve(cls, preset, given)
    except SettingsError as exc:
        raise UsageError(str(exc)) from exc


def make_explainer(method: str, clf, *, preset: str | None, given: dict[str, Any],
                   base: dict[str, Any] | None = None, strict: bool = True):
    """The explainer ``method`` on ``clf`` with the settings of :func:`resolve_settings`."""
    return resolve_settings(method, preset=preset, given=given, base=base, strict=strict).explainer(clf)
