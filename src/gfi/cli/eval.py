"""``gfi eval EXPERIMENT``: the paper's experiments (and later checks) over a dataset folder.

    gfi eval localization --data imagenet-val --method gfi   # writes into gfi-eval/localization
    gfi eval localization --data imagenet-val --method gfi --out runs/loc-gfi
    gfi eval pointing --data VOCdevkit --method gradcam --weights voc_head.pt --multilabel --out runs/pt
    gfi eval saliency --data sod --out runs/sod            # method gfi-stage1
    gfi eval voc-head --data VOCdevkit --split trainval --out runs/voc-head

The protocols are in docs/EVALUATION.md, the files written in :mod:`gfi.evaluation.loop`. Each
experiment's own options are flags made from its ``options_class``; the method's settings are
the flags of :func:`gfi.cli.common.add_method_arguments` (a setting whose name an experiment
option already has, e.g. ``seed``, is reached with ``--set KEY=VALUE``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from gfi.cli import common
from gfi.cli.commands import COMMAND_HELP

#: the folder ``gfi eval EXPERIMENT`` writes into without --out: DEFAULT_OUT/EXPERIMENT
DEFAULT_OUT = Path("gfi-eval")

#: ``gfi eval --help``'s description: the docstring's words as plain text (help shows no markup)
DESCRIPTION = """\
gfi eval EXPERIMENT: the paper's experiments (and later checks) over a dataset folder.

    gfi eval localization --data imagenet-val --method gfi   # writes into gfi-eval/localization
    gfi eval localization --data imagenet-val --method gfi --out runs/loc-gfi
    gfi eval pointing --data VOCdevkit --method gradcam --weights voc_head.pt --multilabel --out runs/pt
    gfi eval saliency --data sod --out runs/sod            # method gfi-stage1
    gfi eval voc-head --data VOCdevkit --split trainval --out runs/voc-head

The protocols are in docs/EVALUATION.md. Each experiment has its own options (gfi eval
EXPERIMENT --help); the method's settings are the options gfi explain has (a setting whose name
an experiment option already has, e.g. seed, is reached with --set KEY=VALUE).
"""


def _data_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data and output")
    g.add_argument("--data", type=Path, required=True, help="dataset folder (ImageNet val, VOCdevkit, or images/ + "
                                                            "masks/)")
    g.add_argument("--dataset", choices=["auto", "imagenet", "voc", "sod"], default="auto",
                   help="dataset kind (default: from the folder's layout)")
    g.add_argument("--split", default="test", help="VOC split, ImageSets/Main/<split>.txt (default: test)")
    g.add_argument("--range", metavar="START:STOP",
                   help="only images START..STOP-1 of the sorted order, e.g. 150:300 (the reporting half)")
    g.add_argument("--limit", type=int, default=0, help="only the first N images (after --range; 0: all)")
    g.add_argument("--out", type=Path, help=f"output folder (default: {DEFAULT_OUT}/EXPERIMENT); the same "
                                            "options on the same folder resume a run")
    g.add_argument("--maps", type=Path, help="folder of cached maps to read and fill (default: OUT/maps)")
    g.add_argument("--overwrite", action="store_true", help="discard the lines and maps of an earlier run in OUT "
                                                            "(the files gfi wrote there; no other file)")
    common.add_log_arguments(g, verbose=False)


def _option_flags(p: argparse.ArgumentParser, options_class, title: str) -> set[str]:
    """One flag per field of an experiment's options; returns the field names."""
    from gfi.settings import describe

    g = p.add_argument_group(title)
    names = set()
    for info in describe(options_class):
        common.add_setting_option(g, info, "exp__" + info.name)
        names.add(info.name)
    return names


def _experiment_parser(esub, exp, argv: Sequence[str]) -> None:
    p = esub.add_parser(exp.name, help=exp.help, description=exp.help)
    _data_arguments(p)
    common.add_model_arguments(p, presets_only=False, model_help="model preset; a comma list runs each into "
                                                                 "OUT/<model>/ (default: efficientnet_lite0)")
    taken = _option_flags(p, exp.options_class, f"{exp.name} options")
    m = p.add_argument_group("method")
    m.add_argument("--method", default=exp.default_method,
                   help=f"explanation method (`gfi methods`; default: {exp.default_method})")
    speed = common.add_method_arguments(p, common.methods_in_argv(argv, default=exp.default_method), group=m,
                                        skip=taken)
    common.add_device_arguments(p, speed)
    speed.add_argument("--batch-size", type=int, default=8, help="images per forward (default: 8)")
    speed.add_argument("--no-prefetch", dest="prefetch", action="store_false",
                       help="read each batch's images only when it is its turn (default: the next batch is decoded "
                            "in a background thread while the current one is explained)")
    p.set_defaults(handler=run, experiment_name=exp.name)


def add_parser(sub, argv: Sequence[str]) -> argparse.ArgumentParser:
    from gfi.evaluation.registry import EXPERIMENTS, VOC_HEAD

    ev = sub.add_parser("eval", help=COMMAND_HELP["eval"],
                        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    esub = ev.add_subparsers(dest="experiment", required=True)
    for exp in EXPERIMENTS.values():
        _experiment_parser(esub, exp, argv)
    vh = esub.add_parser(VOC_HEAD.name, help=VOC_HEAD.help, description=VOC_HEAD.help)
    vh.add_argument("--data", type=Path, required=True, help="VOCdevkit folder")
    vh.add_argument("--out", type=Path, help=f"output folder (default: {DEFAULT_OUT}/{VOC_HEAD.name})")
    vh.add_argument("--overwrite", action="store_true", help="discard an earlier run in OUT")
    common.add_log_arguments(vh, verbose=False)
    common.add_model_arguments(vh, layers=False)
    _option_flags(vh, VOC_HEAD.options_class, "voc-head options")
    common.add_device_arguments(vh)
    vh.set_defaults(handler=run, experiment_name=VOC_HEAD.name)
    return ev


def _experiment_options(args: argparse.Namespace) -> dict[str, str]:
    return {k[len("exp__"):]: v for k, v in vars(args).items() if k.startswith("exp__") and v is not None}


def eval_run(args: argparse.Namespace):
    """The :class:`gfi.evaluation.EvalRun` of parsed ``gfi eval`` arguments."""
    from gfi.evaluation import EvalRun
    from gfi.evaluation.registry import VOC_HEAD

    out = args.out if args.out is not None else DEFAULT_OUT / args.experiment
    shared = dict(data=args.data, out=out, model=args.model, weights=args.weights,
                  allow_pickle=args.unsafe_allow_pickle, download=args.download, device=args.device,
                  threads=args.threads, overwrite=args.overwrite, quiet=args.quiet)
    if args.experiment == VOC_HEAD.name:
        return EvalRun(**shared)
    given = common.given_settings(args)
    common.resolve_settings(args.method, preset=args.preset, given=given)  # a bad setting: one line, at once
    return EvalRun(**shared, method=args.method, dataset=args.dataset, split=args.split, multilabel=args.multilabel,
                   preset=args.preset, overrides=given, inversion_layer=args.inversion_layer,
                   channel_layer=args.channel_layer, range=args.range, limit=args.limit, maps=args.maps,
                   batch_size=args.batch_size, prefetch=args.prefetch)


def _voc_head(run, opts) -> dict:
    """``gfi eval voc-head`` under the folder's lock, every write through its manifest: a file of
    the user's at ``voc_head.pt`` or ``summary.json`` is refused before any work, never replaced."""
    from gfi.evaluation.registry import VOC_HEAD
    from gfi.persist import FolderLock, Manifest, check_folder

    check_folder(run.out)
    run.out.mkdir(parents=True, exist_ok=True)
    with FolderLock(run.out):
        manifest = Manifest(run.out)
        manifest.check_free([run.out / "voc_head.pt", run.out / "summary.json"])
        try:
            with manifest.active():
                return VOC_HEAD.run(run, opts)
        finally:
            manifest.close()


def run(args: argparse.Namespace, *, classifier=None, info=None) -> int:
    """Entry point of ``gfi eval``; ``classifier`` lets scripts pass their own model."""
    from gfi.evaluation import EXPERIMENTS, VOC_HEAD, run_models

    if args.experiment == VOC_HEAD.name:
        s = _voc_head(eval_run(args), VOC_HEAD.options(_experiment_options(args)))
        print(VOC_HEAD.headline(s))
        return 0
    exp = EXPERIMENTS[args.experiment]
    run_models(exp, eval_run(args), exp.options(_experiment_options(args)), classifier=classifier, info=info,
               report=print)
    return 0
