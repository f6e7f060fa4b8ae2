"""``gfi compare``: one figure comparing methods, classes or architectures on one image.

* ``gfi compare IMAGE [--methods a,b,...|all]``: the paper's Figure 2 (input, one column per method).
* ``gfi compare IMAGE --classes A,B``: Figure 3 (input, GFI's stage-1 inversion map, one class map per class).
* ``gfi compare IMAGE --models m1,m2,...``: Figure 5 (input, one column per architecture).

Slow methods run with their documented cheaper setting unless ``--settings published``
(the figure's footnote says which). A method that cannot run on the model gets a panel saying why.
"""

from __future__ import annotations

import argparse
import logging
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from gfi.cli import common
from gfi.cli.commands import COMMAND_HELP
from gfi.errors import NotApplicable, UsageError

log = logging.getLogger("gfi")

#: ``gfi compare --help``'s description: the docstring's words as plain text (help shows no markup)
DESCRIPTION = """\
gfi compare: one figure comparing methods, classes or architectures on one image.

  gfi compare IMAGE [--methods a,b,...|all]  the paper's Figure 2 (input, one column per method)
  gfi compare IMAGE --classes A,B            Figure 3 (input, GFI's stage-1 inversion map, one
                                             class map per class)
  gfi compare IMAGE --models m1,m2,...       Figure 5 (input, one column per architecture)

Slow methods run with their documented cheaper setting unless --settings published (the
figure's footnote says which). A method that cannot run on the model gets a panel saying why.
"""

FIGURE2_METHODS = ("gradient", "guided-backprop", "smoothgrad", "integrated-gradients", "mask", "gradcam", "gfi")
FIGURE5_MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
PAPER_MODELS = ("vgg19", "resnet18", "alexnet")


def add_parser(sub, argv: Sequence[str]) -> argparse.ArgumentParser:
    p = sub.add_parser("compare", help=COMMAND_HELP["compare"],
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", nargs="?", type=Path, help="image file (default: the bundled photo dog_cat.jpg)")
    p.add_argument("--methods", help=f"comma-separated methods or 'all' (default: the paper's Figure 2 set "
                                     f"{','.join(FIGURE2_METHODS)}; with --models: gfi)")
    p.add_argument("--target", default="top1", help="class to explain: top1 (default), an index or a class name")
    p.add_argument("--classes", help="Figure 3: two (or more) classes A,B explained by GFI with its stage-1 map")
    p.add_argument("--models", help=f"Figure 5: comma-separated model presets, e.g. {','.join(FIGURE5_MODELS)} or "
                                    f"the paper's {','.join(PAPER_MODELS)} (needs their weights)")
    common.add_model_arguments(p, layers=False)
    p.add_argument("--settings", default="fast", choices=["fast", "published"],
                   help="slow methods (mask, extremal, rise, smoothgrad, integrated-gradients): their documented "
                        "cheaper setting (default) or the published one")
    p.add_argument("--out", type=Path, default=Path("compare.png"),
                   help="output PNG (default: compare.png); an existing file is kept unless --overwrite")
    p.add_argument("--overwrite", action="store_true", help="replace the file at --out")
    p.add_argument("--cmap", default="jet", help="matplotlib colour map, e.g. cividis (colour-blind safe)")
    p.add_argument("--colorbar", action="store_true", help="draw a colour bar")
    speed = common.add_method_arguments(p, common.methods_in_argv(argv, "--methods", FIGURE2_METHODS))
    common.add_device_arguments(p, speed)
    p.set_defaults(handler=run)
    return p


def _methods(spec: str | None, default: tuple[str, ...]) -> list[str]:
    from gfi.methods.registry import METHODS

    names = list(METHODS) if spec == "all" else (common.split_list(spec) if spec else list(default))
    unknown = [n for n in names if n not in METHODS]
    if unknown or not names:
        raise UsageError(f"unknown method(s) {', '.join(unknown) or '(none given)'}; valid: {', '.join(METHODS)}, all")
    return names


class Figure:
    """The panels of one figure and how each method is built for it."""

    def __init__(self, args: argparse.Namespace, image: torch.Tensor) -> None:
        from gfi.viz.compare import Panel

        self.Panel = Panel
        self.args, self.image = args, image
        self.panels: list = []
        self.notes: list[str] = []
        self.given = common.given_settings(args)
        self.device = common.choose_device(args.device)

    def explainer(self, name: str, clf):
        """``name`` with its cheaper settings under ``--settings fast``, then the command line's;
        returns (explainer, the cheaper settings used)."""
        from gfi.methods.registry import method_class

        cls = method_class(name)
        cheap = dict(cls.cheaper) if self.args.settings == "fast" else {}
        cheap = {k: v for k, v in cheap.items() if k not in self.given}
        preset = getattr(self.args, "preset", None)
        e = common.make_explainer(name, clf, preset=preset if cls.presets else None, given=self.given,
                                  base=cheap, strict=False)
        return e, cheap

    def model(self, name: str):
        a = argparse.Namespace(**{**vars(self.args), "model": name})
        clf, _ = common.load_classifier(a, self.device)
        if clf.task != "classification":
            from gfi.folder.targets import EXAMPLE

            raise UsageError(f"gfi compare draws the class maps of a classifier, and {name} is a {clf.task} model; "
                             f"explain it with gfi explain {EXAMPLE[clf.task].split(' (')[0]}")
        image = self.image
        if clf.channels != image.shape[0]:  # e.g. a grey model: the file read again with its channel count
            from gfi.data.images import load_image

            image = load_image(self.args.image or common.DEMO_IMAGE, channels=clf.channels)
        return clf, clf.prepare(image).to(self.device)


def _target(clf, spec: str, x: torch.Tensor) -> int:
    if spec == "top1":
        with torch.no_grad():
            return int(clf(x).argmax(-1)[0])
    try:
        return clf.class_index(spec)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _label(clf, index: int, prob: float) -> str:
    shown = f"{100 * prob:.1f}%" if prob >= 0.001 else f"p={prob:.0e}"
    return f"{clf.class_name(index).split(',')[0]} {shown}"


def run(args: argparse.Namespace) -> int:
    from gfi.data.images import load_image
    from gfi.viz.compare import draw_row

    if args.classes and args.models:
        raise UsageError("--classes (Figure 3) and --models (Figure 5) draw different figures; give one of them")
    if args.out.suffix.lower() != ".png":
        raise UsageError(f"--out {args.out}: gfi compare writes a PNG; give a name ending in .png")
    from gfi.persist import check_out_file

    check_out_file(args.out, args.overwrite)  # before the minutes of work, not after
    common.apply_threads(args.threads)
    fig = Figure(args, load_image(args.image or common.DEMO_IMAGE))
    if args.models:
        _figure5(fig)
    elif args.classes:
        _figure3(fig)
    else:
        _figure2(fig)
    out = draw_row(args.out, fig.image, fig.panels, cmap=args.cmap, colorbar=args.colorbar,
                   note="  |  ".join(fig.notes), replace=args.overwrite)
    from gfi.data.names import printable

    print(printable(out))
    return 0


def _figure5(fig: Figure) -> None:
    """One column per architecture."""
    methods = _methods(fig.args.methods, ("gfi",))
    common.refuse_unused(methods, fig.given)
    if len(methods) != 1:
        raise UsageError("with --models give one method (--methods NAME): one column per model")
    opts: dict = {}
    for model_name in common.split_list(fig.args.models):
        clf, x = fig.model(model_name)
        explainer, opts = fig.explainer(methods[0], clf)
        start = time.perf_counter()
        e = explainer.explain(x, _target(clf, fig.args.target, x))
        log.info("%s on %s: %.1f s", methods[0], model_name, time.perf_counter() - start)
        fig.panels.append(fig.Panel(f"{model_name}\n{_label(clf, int(e.targets[0, 0]), float(e.probs[0, 0]))}",
                                    e.maps[0, 0]))
    fig.notes.append(f"method: {methods[0]}" + (f" ({_fmt(opts)})" if opts else ""))


def _figure3(fig: Figure) -> None:
    """GFI's stage-1 map, then one class map per class (one stage 1 for all)."""
    common.refuse_unused(["gfi"], fig.given)
    clf, x = fig.model(fig.args.model)
    fig.notes.append(f"model: {fig.args.model}")
    explainer, _ = fig.explainer("gfi", clf)
    try:
        targets = [clf.class_index(c) for c in common.split_list(fig.args.classes)]
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    e = explainer.explain(x, [targets])
    fig.panels.append(fig.Panel("stage 1: inversion map", e.stage1_map[0]))
    for k, t in enumerate(targets):
        fig.panels.append(fig.Panel(f"gfi: \"{_label(clf, t, float(e.probs[0, k]))}\"", e.maps[0, k]))


def _figure2(fig: Figure) -> None:
    """One column per method; a method that cannot run on the model gets a panel saying why."""
    names = _methods(fig.args.methods, FIGURE2_METHODS)
    common.refuse_unused(names, fig.given)  # before the model loads
    clf, x = fig.model(fig.args.model)
    fig.notes.append(f"model: {fig.args.model}")
    target = _target(clf, fig.args.target, x)
    cheap = []
    for name in names:
        explainer, opts = fig.explainer(name, clf)
        if opts:
            cheap.append(f"{name} {_fmt(opts)}")
        start = time.perf_counter()
        try:
            e = explainer.explain(x, target)
        except NotApplicable as exc:
            if fig.args.methods != "all":
                raise
            log.warning("%s cannot run on %s: %s", name, fig.args.model, exc)
            fig.panels.append(fig.Panel(name, text="not applicable to\nthis model:\n" + _short(str(exc))))
            continue
        log.info("%s: %.1f s", name, time.perf_counter() - start)
        fig.panels.append(fig.Panel(f"{name}\n{_label(clf, target, float(e.probs[0, 0]))}", e.maps[0, 0]))
    if cheap:
        fig.notes.append("cheaper settings: " + "; ".join(cheap))


def _fmt(opts: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in opts.items())


def _short(text: str, width: int = 28, lines: int = 4) -> str:
    text = text.split(". ")[0].removeprefix("lrp: ").removeprefix("cam: ")
    return "\n".join(textwrap.wrap(text, width)[:lines])
