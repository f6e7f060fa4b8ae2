"""``gfi eval EXPERIMENT``: the paper's experiments (and two later checks) over a dataset folder.

    gfi eval localization --data imagenet-val --method gfi --out runs/loc-gfi
    gfi eval pointing --data VOCdevkit --method gradcam --weights voc_head.pt --multilabel --out runs/pt
    gfi eval saliency --data sod --out runs/sod            # method gfi-stage1
    gfi eval voc-head --data VOCdevkit --split trainval --out runs/voc-head

See docs/EVALUATION.md for the protocols and :mod:`gfi.evaluation.loop` for the files written.

Transitional: the argparse definitions until ``gfi.cli.eval`` builds the :class:`EvalRun` and the
experiment's options itself. Each experiment's options are flags made from its ``options_class``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gfi.evaluation.experiment import EvalError, EvalRun
from gfi.evaluation.loop import run_models
from gfi.evaluation.registry import EXPERIMENTS, VOC_HEAD
from gfi.settings import Settings, describe


def _common(p: argparse.ArgumentParser, default_method: str) -> None:
    from gfi.models.presets import DEFAULT_MODEL

    p.add_argument("--data", type=Path, required=True,
                   help="dataset folder (ImageNet val, VOCdevkit, or images/ + masks/)")
    p.add_argument("--dataset", choices=["auto", "imagenet", "voc", "sod"], default="auto",
                   help="dataset kind (default: from the folder's layout)")
    p.add_argument("--split", default="test", help="VOC split, ImageSets/Main/<split>.txt (default: %(default)s)")
    p.add_argument("--method", default=default_method, help="explanation method (`gfi methods`; default: %(default)s)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="model preset; a comma list runs each into OUT/<model>/ (default: %(default)s)")
    p.add_argument("--weights", default="default", help="'default', 'random' or a checkpoint (e.g. from voc-head)")
    p.add_argument("--unsafe-allow-pickle", action="store_true", help="DANGEROUS: load a full-pickle checkpoint")
    p.add_argument("--download", action="store_true", help="let torchvision download missing weights")
    p.add_argument("--multilabel", action="store_true", help="sigmoid scores (the fine-tuned VOC model)")
    p.add_argument("--preset", default="default", choices=["default", "paper"], help="settings preset of the method")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of the method or a run option, by its field name; repeatable")
    p.add_argument("--inversion-layer", help="l0 (module name, ':input' for its input)")
    p.add_argument("--channel-layer", help="l1 (module name, ':input' for its input); Table 2's ablation")
    p.add_argument("--range", metavar="START:STOP",
                   help="only images START..STOP-1 of the sorted order, e.g. 150:300 (the reporting half)")
    p.add_argument("--limit", type=int, default=0, help="only the first N images (after --range; 0: all)")
    p.add_argument("--out", type=Path, required=True, help="output folder (resumes a run with the same options)")
    p.add_argument("--maps", type=Path, help="folder of cached maps to read and fill (default: OUT/maps)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward (default: %(default)s)")
    _device_and_log(p)


def _device_and_log(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    p.add_argument("--overwrite", action="store_true", help="discard the lines and maps of an earlier run in OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _option_flags(p: argparse.ArgumentParser, options_class: type[Settings]) -> None:
    """One flag per field of ``options_class`` (given values are strings, parsed by the field's type)."""
    for info in describe(options_class):
        default = ",".join(map(str, info.default)) if isinstance(info.default, tuple) else info.default
        p.add_argument("--" + info.name.replace("_", "-"), dest=info.name, default=None,
                       choices=list(info.choices) if info.choices else None,
                       help=f"{info.help} (default: {default})".replace("%", "%%"))


def add_parser(sub) -> argparse.ArgumentParser:
    ev = sub.add_parser("eval", help="run an evaluation (localization, pointing, saliency, ...) over a dataset",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    esub = ev.add_subparsers(dest="experiment", required=True)
    for exp in EXPERIMENTS.values():
        p = esub.add_parser(exp.name, help=exp.help, description=exp.help)
        _common(p, exp.default_method)
        _option_flags(p, exp.options_class)
    from gfi.models.presets import DEFAULT_MODEL

    vh = esub.add_parser(VOC_HEAD.name, help=VOC_HEAD.help)
    vh.add_argument("--data", type=Path, required=True, help="VOCdevkit folder")
    vh.add_argument("--model", default=DEFAULT_MODEL)
    vh.add_argument("--weights", default="default", help="backbone weights (default: the preset's ImageNet ones)")
    vh.add_argument("--out", type=Path, required=True)
    _device_and_log(vh)
    _option_flags(vh, VOC_HEAD.options_class)
    return ev


def _given(args: argparse.Namespace, options_class: type[Settings]) -> dict[str, str]:
    return {n: v for n in options_class.names() if (v := getattr(args, n, None)) is not None}


def _overrides(pairs: list[str]) -> dict[str, str]:
    out = {}
    for kv in pairs or []:
        if "=" not in kv:
            raise EvalError(f"--set {kv!r}: expected KEY=VALUE, e.g. --set iters2=40")
        k, v = kv.split("=", 1)
        out[k.strip().replace("-", "_")] = v.strip()
    return out


def eval_run(args: argparse.Namespace) -> EvalRun:
    """The :class:`EvalRun` of parsed ``gfi eval`` arguments."""
    if args.experiment == VOC_HEAD.name:
        return EvalRun(data=args.data, out=args.out, model=args.model, weights=args.weights, device=args.device,
                       threads=args.threads, overwrite=args.overwrite, quiet=args.quiet)
    return EvalRun(
        data=args.data, out=args.out, method=args.method, dataset=args.dataset, split=args.split, model=args.model,
        weights=args.weights, allow_pickle=args.unsafe_allow_pickle, download=args.download,
        multilabel=args.multilabel, preset=args.preset, overrides=_overrides(args.set),
        inversion_layer=args.inversion_layer, channel_layer=args.channel_layer, range=args.range, limit=args.limit,
        maps=args.maps, batch_size=args.batch_size, device=args.device, threads=args.threads,
        overwrite=args.overwrite, quiet=args.quiet)


def run(args: argparse.Namespace, *, classifier=None, info=None) -> int:
    """Entry point of ``gfi eval``; ``classifier`` lets tests and scripts pass their own model."""
    if args.experiment == VOC_HEAD.name:
        s = VOC_HEAD.run(eval_run(args), VOC_HEAD.options(_given(args, VOC_HEAD.options_class)))
        print(VOC_HEAD.headline(s))
        return 0
    exp = EXPERIMENTS[args.experiment]
    run_models(exp, eval_run(args), exp.options(_given(args, exp.options_class)), classifier=classifier, info=info,
               report=print)
    return 0
