"""``gfi compare``: one figure comparing methods, classes or architectures on one image.

* ``gfi compare IMAGE [--methods a,b,...|all]``: the paper's Figure 2 (input, one column per method).
* ``gfi compare IMAGE --classes A,B``: Figure 3 (input, GFI's stage-1 inversion map, one class map per class).
* ``gfi compare IMAGE --models m1,m2,...``: Figure 5 (input, one column per architecture).

Slow methods run with their documented cheaper setting unless ``--settings published``
(the figure's footnote says which).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch

log = logging.getLogger("gfi")

FIGURE2_METHODS = ("gradient", "guided-backprop", "smoothgrad", "integrated-gradients", "mask", "gradcam", "gfi")
FIGURE5_MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
PAPER_MODELS = ("vgg19", "resnet18", "alexnet")


def add_parser(sub) -> argparse.ArgumentParser:
    from gfi.models.presets import DEFAULT_MODEL, PRESETS

    p = sub.add_parser("compare", help="one figure comparing methods (Fig. 2), classes (Fig. 3) or models (Fig. 5)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", nargs="?", type=Path, help="image file (default: the bundled photo dog_cat.jpg)")
    p.add_argument("--methods", help=f"comma-separated methods or 'all' (default: the paper's Figure 2 set "
                                     f"{','.join(FIGURE2_METHODS)}; with --models: gfi)")
    p.add_argument("--target", default="top1", help="class to explain: top1 (default), an index or a class name")
    p.add_argument("--classes", help="Figure 3: two (or more) classes A,B explained by GFI with its stage-1 map")
    p.add_argument("--models", help=f"Figure 5: comma-separated model presets, e.g. {','.join(FIGURE5_MODELS)} or "
                                    f"the paper's {','.join(PAPER_MODELS)} (needs their weights)")
    p.add_argument("--model", default=DEFAULT_MODEL, choices=list(PRESETS), help="model (default: %(default)s)")
    p.add_argument("--weights", default="default", help="'default', 'random' or a checkpoint file (see gfi explain)")
    p.add_argument("--settings", default="fast", choices=["fast", "published"],
                   help="slow methods (mask, extremal, rise, smoothgrad, integrated-gradients): their documented "
                        "cheaper setting (default) or the published one")
    p.add_argument("--preset", default="default", choices=["default", "paper"], help="GFI settings")
    p.add_argument("--out", type=Path, default=Path("compare.png"), help="output PNG (default: %(default)s)")
    p.add_argument("--cmap", default="jet", help="matplotlib colour map, e.g. cividis (colour-blind safe)")
    p.add_argument("--colorbar", action="store_true", help="draw a colour bar")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    return p


def _split(spec: str) -> list[str]:
    return [s.strip() for s in spec.split(",") if s.strip()]


def _methods(spec: str | None, default: tuple[str, ...]) -> list[str]:
    from gfi.methods.registry import METHODS

    names = list(METHODS) if spec == "all" else (_split(spec) if spec else list(default))
    unknown = [n for n in names if n not in METHODS]
    if unknown or not names:
        raise ValueError(f"unknown method(s) {', '.join(unknown) or '(none given)'}; valid: {', '.join(METHODS)}, all")
    return names


def build_method(name: str, clf, settings: str, preset: str):
    """The explainer ``name`` with its cheaper options when ``settings == 'fast'``; returns (explainer, options)."""
    from gfi.methods.registry import fast_options, get_method

    opts = fast_options(name) if settings == "fast" else {}
    extra = {"config": preset} if name in ("gfi", "gfi-stage1", "pixel-mask") else {}
    return get_method(name, clf, **opts, **extra), opts


def _target(clf, spec: str, x: torch.Tensor) -> int:
    if spec == "top1":
        with torch.no_grad():
            return int(clf(x).argmax(-1)[0])
    return clf.class_index(spec)


def _label(clf, index: int, prob: float) -> str:
    shown = f"{100 * prob:.1f}%" if prob >= 0.001 else f"p={prob:.0e}"
    return f"{clf.class_name(index).split(',')[0]} {shown}"


def run(args) -> int:
    from gfi.cli import DEMO_IMAGE, _device
    from gfi.data.images import load_image
    from gfi.models.presets import load_model
    from gfi.viz.compare import Panel, draw_row

    if args.classes and args.models:
        raise ValueError("--classes (Figure 3) and --models (Figure 5) draw different figures; give one of them")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = _device(args.device)
    path = args.image or DEMO_IMAGE
    image = load_image(path)
    panels: list[Panel] = []
    notes: list[str] = []

    if args.models:
        names = _split(args.models)
        methods = _methods(args.methods, ("gfi",))
        if len(methods) != 1:
            raise ValueError("with --models give one method (--methods NAME): one column per model")
        for model_name in names:
            clf, _ = load_model(model_name, weights=args.weights)
            clf.to(device)
            x = clf.prepare(image).to(device)
            explainer, opts = build_method(methods[0], clf, args.settings, args.preset)
            start = time.perf_counter()
            e = explainer.explain(x, _target(clf, args.target, x))
            log.info("%s on %s: %.1f s", methods[0], model_name, time.perf_counter() - start)
            panels.append(Panel(f"{model_name}\n{_label(clf, int(e.targets[0, 0]), float(e.probs[0, 0]))}",
                                e.maps[0, 0]))
        notes.append(f"method: {methods[0]}" + (f" ({_fmt(opts)})" if opts else ""))
    else:
        clf, _ = load_model(args.model, weights=args.weights)
        clf.to(device)
        x = clf.prepare(image).to(device)
        notes.append(f"model: {args.model}")
        if args.classes:
            explainer, _ = build_method("gfi", clf, args.settings, args.preset)
            targets = [clf.class_index(c) for c in _split(args.classes)]
            e = explainer.explain(x, [targets])
            panels.append(Panel("stage 1: inversion map", e.stage1_map[0]))
            for k, t in enumerate(targets):
                panels.append(Panel(f"gfi: \"{_label(clf, t, float(e.probs[0, k]))}\"", e.maps[0, k]))
        else:
            names = _methods(args.methods, FIGURE2_METHODS)
            target = _target(clf, args.target, x)
            cheap = []
            for name in names:
                explainer, opts = build_method(name, clf, args.settings, args.preset)
                if opts:
                    cheap.append(f"{name} {_fmt(opts)}")
                start = time.perf_counter()
                try:
                    e = explainer.explain(x, target)
                except ValueError as exc:
                    if args.methods != "all":
                        raise
                    log.warning("%s cannot run on %s: %s", name, args.model, exc)
                    panels.append(Panel(name, text="not applicable to\nthis model:\n" + _short(str(exc))))
                    continue
                log.info("%s: %.1f s", name, time.perf_counter() - start)
                panels.append(Panel(f"{name}\n{_label(clf, target, float(e.probs[0, 0]))}", e.maps[0, 0]))
            if cheap:
                notes.append("cheaper settings: " + "; ".join(cheap))
    out = draw_row(args.out, image, panels, cmap=args.cmap, colorbar=args.colorbar, note="  |  ".join(notes))
    print(out)
    return 0


def _fmt(opts: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in opts.items())


def _short(text: str, width: int = 28, lines: int = 4) -> str:
    import textwrap

    text = text.split(". ")[0].removeprefix("lrp: ").removeprefix("cam: ")
    return "\n".join(textwrap.wrap(text, width)[:lines])
