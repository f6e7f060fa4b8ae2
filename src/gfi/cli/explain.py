"""``gfi explain IMAGE...``: the command line of the folder job (:func:`gfi.explain_folder`,
:mod:`gfi.folder`): its arguments, and what the terminal shows (progress, a line per map, the
end). The job writes overlays, ``.npy``, ``results.json`` and ``report.html``; an interrupted run
resumes with the same command (:mod:`gfi.runs`)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from gfi.cli import common
from gfi.cli.commands import COMMAND_HELP
from gfi.data.names import printable
from gfi.errors import UsageError

log = logging.getLogger("gfi")


def add_parser(sub, argv: Sequence[str]) -> argparse.ArgumentParser:
    ex = sub.add_parser("explain", help=COMMAND_HELP["explain"],
                        description="Explain the predictions for IMAGE... (files or folders). Each image's record is "
                                    "saved as soon as it is done: rerunning the same command on the same --out "
                                    "resumes an interrupted run (see docs/RELIABILITY.md). The settings shown are "
                                    "those of --method (gfi unless given): `gfi explain --method NAME --help`.")
    g = ex.add_argument_group("input")
    g.add_argument("images", nargs="*", help=f"image files or folders (default: the bundled photo "
                                             f"{common.DEMO_IMAGE.name})")
    g.add_argument("--target", action="append", default=None,
                   help="what to explain: top1 (default), topK (e.g. top5), a class index or name (the method's "
                        "reading of the class), or one score: logit:C, softmax:C, logsoftmax:C, sigmoid:C (C an "
                        "index or a name), output:I[,J] (an entry of the output); for a segmentation model "
                        "mask:FILE:CLASS (the class's logits summed over a mask image's non-zero pixels), for a "
                        "detection model box:X0,Y0,X1,Y1:CLASS (the detection matching that box, in the image's "
                        "pixels); repeatable")
    g.add_argument("--contrastive", type=float, default=None, metavar="BETA",
                   help="explain each image's classes each against the others: y_c - BETA x the mean of the other "
                        "targets' logits (why c rather than them; any method; needs two classes or more, e.g. "
                        "--target top2)")
    g.add_argument("--targets", type=Path,
                   help="CSV of `image,class` lines: a class per image (repeat a line for more)")
    g.add_argument("--max-side", type=int, default=4096,
                   help="images with a longer side are reduced to this many pixels when read (default: 4096)")
    common.add_model_arguments(ex)
    o = ex.add_argument_group("output")
    o.add_argument("--out", type=Path, default=Path("gfi-out"), help="output folder (default: gfi-out)")
    o.add_argument("--save-npy", action="store_true",
                   help="also save maps as float32 .npy in [0,1] at the image's size")
    o.add_argument("--overwrite", action="store_true",
                   help="start afresh in --out: delete the files gfi wrote there (as its list of them proves; a file "
                        "gfi did not write is never replaced or deleted); without it the same arguments resume the "
                        "run and other arguments are refused")
    o.add_argument("--cmap", default="jet", help="matplotlib colour map, e.g. cividis (colour-blind safe)")
    o.add_argument("--colorbar", action="store_true", help="draw a colour bar on overlays")
    common.add_log_arguments(o)
    m = ex.add_argument_group("method")
    m.add_argument("--method", default=common.DEFAULT_METHOD,
                   help="explanation method (`gfi methods`; default: gfi)")
    speed = common.add_method_arguments(ex, common.methods_in_argv(argv), group=m)
    common.add_device_arguments(ex, speed)
    speed.add_argument("--batch-size", type=int, default=4, help="images per batch (default: 4)")
    speed.add_argument("--no-prefetch", dest="prefetch", action="store_false",
                       help="read each batch's images only when it is its turn (default: the next batch is decoded "
                            "in a background thread while the current one is explained)")
    ex.set_defaults(handler=run)
    return ex


def run(args: argparse.Namespace) -> int:
    from gfi.folder.job import FolderJob, Interrupted, folder_lock
    from gfi.folder.outputs import OutputSettings, method_tag

    _check_options(args)
    paths, per_image = _inputs(args)
    with folder_lock(args.out) as lock:  # one writer per output folder: a second run is refused
        try:
            explainer, info = _explainer(args)
        except KeyboardInterrupt:  # model loading; nothing is written before the job exists
            print("gfi: interrupted before any image was explained", file=sys.stderr)
            return 130
        outputs = OutputSettings(save_npy=args.save_npy, cmap=args.cmap, colorbar=args.colorbar,
                                 max_side=args.max_side, method_tag=method_tag(explainer.name))
        job = FolderJob.open(paths, args.out, explainer, info, lock, target=args.target, per_image=per_image,
                             outputs=outputs, overwrite=args.overwrite, batch_size=args.batch_size,
                             prefetch=args.prefetch, preset=getattr(args, "preset", None),
                             again="run the same command again", redo="pass --overwrite to redo them",
                             contrastive=args.contrastive)
        with job, _sigterm_as_interrupt():
            if job.todo():
                _announce_cost(explainer)
            try:
                result = job.execute(_progress(args, explainer.name))
            except Interrupted as exc:
                print(f"gfi: interrupted: {exc.done} of {exc.total} images are done and saved in "
                      f"{printable(args.out)}; run the same command again to finish", file=sys.stderr)
                return 130
    if not result.images:
        first = result.failures[0]["error"] if result.failures else ""
        raise UsageError(f"no image could be explained ({len(result.failures)} failed; first: {first}); "
                         f"see {result.results}")
    return 0


def _check_options(args: argparse.Namespace) -> None:
    from gfi.folder import check_output_options
    from gfi.methods.registry import method_class

    if args.quiet and args.verbose:
        raise UsageError("--quiet and --verbose conflict; give one of them")
    if args.target and args.targets:
        raise UsageError("--target and --targets conflict: give classes on the command line or in the CSV, not both")
    method_class(args.method)  # an unknown method (or a plug-in that failed to load): one line with the reason
    # an unknown --cmap: refused before the model loads, not at the first overlay
    check_output_options(batch_size=args.batch_size, max_side=args.max_side, cmap=args.cmap)


def _inputs(args: argparse.Namespace) -> tuple[list[Path], dict[Path, list[str]]]:
    from gfi.cli.targets import read_targets_csv
    from gfi.folder import folder_inputs
    from gfi.folder.targets import match_csv_to_inputs

    paths = folder_inputs(args.images or [common.DEMO_IMAGE])
    per_image = match_csv_to_inputs(read_targets_csv(args.targets), paths) if args.targets else {}
    return paths, per_image


def _explainer(args: argparse.Namespace):
    """The settings checked (a setting the method lacks, a bad value: refused before the model
    loads), then the model and the explainer; returns (explainer, the model's info)."""
    spec = common.resolve_settings(args.method, preset=getattr(args, "preset", None), given=common.given_settings(args))
    common.apply_threads(args.threads)
    clf, info = common.load_classifier(args, common.choose_device(args.device))
    return spec.explainer(clf), info


def target_line(t: dict) -> str:
    """A map's target as the terminal shows it: ``tabby, tabby cat (281) p=0.43`` for a class,
    ``tabby, tabby cat (281), logit:281 = 6.2`` or ``output:3 = -0.64`` for a target's own score."""
    shown = f"{t['class_name']} ({t['class']})" if t.get("class") is not None else ""
    if not t.get("target"):
        return f"{shown} p={common.format_prob(t['prob'])}"
    return f"{shown + ', ' if shown else ''}{t.get('spec') or t['target']} = {common.format_prob(t['prob'])}"


def _progress(args: argparse.Namespace, method: str):
    """What the terminal shows as the job goes (nothing with --quiet): the progress of
    :class:`gfi.progress.ConsoleReporter` on stderr (bars on a terminal, plain lines in a log),
    and on stdout a line per map as its image finishes."""
    from gfi.progress import ConsoleReporter, Tracker

    if args.quiet:
        return None
    console = ConsoleReporter()

    def report(p) -> None:
        console(p)
        if p.event == "image" and p.record and p.record.get("status") == "ok":
            for t in p.record["targets"]:
                console.echo(printable(f"{p.record['image']}: {target_line(t)} -> {args.out / t['overlay']}"),
                             sys.stdout)

    return Tracker(report, method=method)


def _announce_cost(explainer) -> None:
    """Before a slow method starts: its settings that cost the most, and its documented cheaper ones."""
    def costs_more(now, cheap) -> bool:
        if isinstance(now, tuple):
            return len(now) > len(cheap) or (len(now) == len(cheap) and now > cheap)
        return isinstance(now, int | float) and now > cheap

    cheaper = {k: v for k, v in explainer.cheaper.items() if costs_more(getattr(explainer.config, k, v), v)}
    if cheaper:
        now = ", ".join(f"{k}={getattr(explainer.config, k)}" for k in cheaper)
        flags = " ".join(f"--{k.replace('_', '-')} {','.join(map(str, v)) if isinstance(v, tuple) else v}"
                         for k, v in cheaper.items())
        log.info("%s runs with %s per image (its published setting; each image shows its progress); %s is its "
                 "documented cheaper setting", explainer.name, now, flags)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM is treated like Ctrl-C while the job runs (the summary is saved, then it stops)."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
