"""Command line: ``gfi explain``, ``gfi models``, ``gfi methods``, ``gfi layers``.

Argument parsing and orchestration only; the maths lives in :mod:`gfi.methods`.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import math
import re
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from gfi.data.samples import safe_stem as _safe_stem  # the output name explain and eval share

log = logging.getLogger("gfi")
ASSETS = Path(__file__).parent / "assets"
DEMO_IMAGE = ASSETS / "dog_cat.jpg"


class UsageError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""


# --------------------------------------------------------------------------------------------
def _gfi_options(parser: argparse.ArgumentParser) -> None:
    """One ``--field`` per :class:`GFIConfig` field, so every knob is exposed."""
    from gfi.methods.gfi import GFIConfig

    group = parser.add_argument_group("GFI settings (override the preset; see docs/METHOD.md)")
    doc = GFIConfig.__doc__ or ""
    for f in dataclasses.fields(GFIConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        # the field's entry in the docstring, also where it shares one ("lr1, lr2: ...")
        m = re.search(rf"^\s+(?:\w+, )?{f.name}(?:, \w+)?: (.+?)(?=^\s+\w+(?:, \w+)?: |\Z)", doc, re.M | re.S)
        help_text = " ".join(m.group(1).split()).replace("%", "%%") if m else ""
        if isinstance(default, bool):
            group.add_argument(flag, type=_parse_bool, default=None, metavar="true|false", help=help_text)
        else:
            group.add_argument(flag, type=type(default), default=None, help=help_text)


def _parse_bool(v: str) -> bool:
    if v.lower() in ("1", "true", "yes", "on"):
        return True
    if v.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {v!r}")


def build_parser() -> argparse.ArgumentParser:
    from gfi.models.presets import DEFAULT_MODEL, PRESETS

    parser = argparse.ArgumentParser(prog="gfi", description="Explain CNN predictions with Guided Feature Inversion.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)

    ex = sub.add_parser("explain", help="explain images; writes overlays, .npy maps, results.json and report.html",
                        description="Explain the predictions for IMAGE... (files or folders). Each image's record is "
                                    "saved as soon as it is done: rerunning the same command on the same --out "
                                    "resumes an interrupted run (see docs/RELIABILITY.md).")
    ex.add_argument("images", nargs="*",
                    help=f"image files or folders (default: the bundled photo {DEMO_IMAGE.name})")
    ex.add_argument("--model", default=DEFAULT_MODEL, choices=list(PRESETS),
                    help="model preset (default: %(default)s)")
    ex.add_argument("--weights", default="default",
                    help="'default' (the preset's ImageNet weights, offline where available), 'random', or a local "
                         "checkpoint file, loaded with torch.load(weights_only=True)")
    ex.add_argument("--unsafe-allow-pickle", action="store_true",
                    help="DANGEROUS: load a checkpoint that is a full pickle. Unpickling runs arbitrary code from the "
                         "file; use only for files you trust")
    ex.add_argument("--download", action="store_true",
                    help="let torchvision download missing weights (needs network)")
    ex.add_argument("--method", default="gfi", help="explanation method (see `gfi methods`; default: %(default)s)")
    ex.add_argument("--preset", default="default", choices=["default", "paper"],
                    help="GFI settings: the tuned default or exactly the paper's (default: %(default)s)")
    ex.add_argument("--target", action="append", default=None,
                    help="class to explain: top1 (default), topK (e.g. top5), an index or a class name; "
                         "repeatable")
    ex.add_argument("--targets", type=Path,
                    help="CSV of `image,class` lines: a class per image (repeat a line for more)")
    ex.add_argument("--inversion-layer", help="l0: module name (':input' for a module's input)")
    ex.add_argument("--channel-layer", help="l1: module name (':input' for a module's input)")
    ex.add_argument("--multilabel", action="store_true",
                    help="the model is multi-label: f_c is the sigmoid of the logit")
    ex.add_argument("--out", type=Path, default=Path("gfi-out"), help="output folder (default: %(default)s)")
    ex.add_argument("--save-npy", action="store_true",
                    help="also save maps as float32 .npy in [0,1] at the image's size")
    ex.add_argument("--overwrite", action="store_true",
                    help="start afresh in --out: delete the previous run's outputs there, replace existing files "
                         "(without it, the same arguments resume the run in --out and other arguments are refused)")
    ex.add_argument("--max-side", type=int, default=4096,
                    help="images with a longer side are reduced to this many pixels when read; maps and overlays "
                         "are at the reduced size (default: %(default)s)")
    ex.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="(default: %(default)s)")
    ex.add_argument("--batch-size", type=int, default=4, help="images per batch (default: %(default)s)")
    ex.add_argument("--cmap", default="jet", help="matplotlib colour map, e.g. cividis (colour-blind safe)")
    ex.add_argument("--colorbar", action="store_true", help="draw a colour bar on overlays")
    ex.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    ex.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")
    ex.add_argument("--verbose", action="store_true", help="debug logging")
    _gfi_options(ex)

    sub.add_parser("models", help="list model presets and whether their weights are available offline")
    sub.add_parser("methods", help="list explanation methods")
    ly = sub.add_parser("layers", help="list a model's layers with output shapes (for --inversion/--channel-layer)")
    ly.add_argument("model", choices=list(PRESETS))
    from gfi import cli_compare
    from gfi.evaluation import command as eval_command

    cli_compare.add_parser(sub)
    eval_command.add_parser(sub)
    return parser


def _version() -> str:
    from gfi import __version__

    return f"gfi {__version__} (torch {torch.__version__})"


# --------------------------------------------------------------------------------------------
def cmd_models(_args) -> int:
    from gfi.models.presets import DEFAULT_MODEL, PRESETS

    for name, preset in PRESETS.items():
        path = preset.weights_available()
        status = f"weights available offline ({path})" if path else "weights not available offline (--weights FILE)"
        mark = " [default]" if name == DEFAULT_MODEL else ""
        print(f"{name}{mark}: {preset.description}; l0={preset.inversion_layer} l1={preset.channel_layer}; {status}")
    return 0


def cmd_methods(_args) -> int:
    from gfi.methods.registry import METHODS

    for name, cls in METHODS.items():
        print(f"{name:22s} {cls.summary}")
    return 0


def cmd_layers(args) -> int:
    from gfi.models.layers import trace_shapes
    from gfi.models.presets import load_model

    clf, _ = load_model(args.model, weights="random")
    x = clf.normalize(torch.full((1, 3, *clf.input_size), 0.5))
    for name, shape in trace_shapes(clf.model, x):
        print(f"{name:40s} {tuple(shape[1:])}")
    return 0


# --------------------------------------------------------------------------------------------
def _device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda, but CUDA is not available here (no GPU or a CPU-only torch); use --device cpu")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)



def _read_targets_csv(path: Path) -> dict[str, list[str]]:
    if not path.is_file():
        raise UsageError(f"--targets {path}: no such file")
    out: dict[str, list[str]] = defaultdict(list)
    with open(path, newline="") as fh:
        for n, row in enumerate(csv.reader(fh), 1):
            if not row or row[0].startswith("#") or (n == 1 and row[0].strip().lower() == "image"):
                continue
            if len(row) < 2:
                raise UsageError(f"--targets {path}, line {n}: expected `image,class`, got {','.join(row)!r}")
            out[row[0].strip()].append(",".join(row[1:]).strip())
    return out


def _check_target_specs(specs: list[str], clf) -> None:
    """Class names and indices are checked before anything is written (topK needs the scores)."""
    for spec in specs:
        m = re.fullmatch(r"top(\d+)", spec.strip().lower())
        if m and int(m.group(1)) < 1:
            raise UsageError(f"--target {spec}: K must be >= 1")
        if not m:
            try:
                clf.class_index(spec)
            except ValueError as exc:
                raise UsageError(str(exc)) from exc


def _resolve_targets(specs: list[str], clf, probs: torch.Tensor) -> list[int]:
    out: list[int] = []
    for spec in specs:
        m = re.fullmatch(r"top(\d+)", spec.strip().lower())
        if m:
            k = int(m.group(1))
            if k < 1:
                raise UsageError(f"--target {spec}: K must be >= 1")
            out.extend(int(i) for i in probs.topk(min(k, probs.numel())).indices)
        else:
            try:
                out.append(clf.class_index(spec))
            except ValueError as exc:
                raise UsageError(str(exc)) from exc
    return list(dict.fromkeys(out))


def _explain_arguments(args, paths, per_image, info, clf, config, is_gfi) -> dict:
    """Everything that decides the outputs of ``gfi explain`` (a run resumes only when it is equal)."""
    return {
        "inputs": [str(p.resolve()) for p in paths], "model": info, "method": args.method,
        "config": config.to_dict() if is_gfi else None,
        "inversion_layer": str(clf.inversion_layer), "channel_layer": str(clf.channel_layer),
        "multilabel": args.multilabel, "target": args.target, "targets": per_image or None,
        "save_npy": args.save_npy, "cmap": args.cmap, "colorbar": args.colorbar, "max_side": args.max_side,
    }


def _check_explain_options(args, is_gfi: bool) -> dict:
    """Conflicts and ranges of ``gfi explain``'s options; returns the GFI overrides."""
    from gfi.methods.gfi import GFIConfig
    from gfi.methods.registry import METHODS

    if args.quiet and args.verbose:
        raise UsageError("--quiet and --verbose conflict; give one of them")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.max_side < 32:
        raise UsageError(f"--max-side must be >= 32 pixels, got {args.max_side}")
    if args.target and args.targets:
        raise UsageError("--target and --targets conflict: give classes on the command line or in the CSV, not both")
    if args.method not in METHODS:
        raise UsageError(f"unknown method {args.method!r}; valid methods: {', '.join(METHODS)}")
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(GFIConfig)
                 if getattr(args, f.name) is not None}
    if not is_gfi and (overrides or args.preset != "default"):
        given = ["--" + k.replace("_", "-") for k in overrides] + (["--preset"] if args.preset != "default" else [])
        raise UsageError(f"{', '.join(given)} set GFI options, which --method {args.method} does not use; "
                         "drop them or use --method gfi / gfi-stage1")
    return overrides


def cmd_explain(args) -> int:
    try:
        return _explain(args)
    except KeyboardInterrupt:  # before the loop (model loading); the loop saves its own work
        print("gfi: interrupted before any image was explained", file=sys.stderr)
        return 130


def _explain(args) -> int:
    from gfi.data.images import ImageLoadError, find_images
    from gfi.methods.gfi import GFIConfig
    from gfi.methods.registry import get_method
    from gfi.models.presets import load_model
    from gfi.runs import RunFolder

    is_gfi = args.method.startswith("gfi")
    overrides = _check_explain_options(args, is_gfi)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = _device(args.device)
    try:
        paths = find_images(args.images) if args.images else [DEMO_IMAGE]
    except ImageLoadError as exc:
        raise UsageError(str(exc)) from exc
    stems: dict[str, Path] = {}
    for p in paths:
        s = _safe_stem(p)
        if s in stems:
            raise UsageError(f"two inputs share the output name {s!r}: {stems[s]} and {p}; "
                             "rename one or run them apart")
        stems[s] = p
    per_image = _read_targets_csv(args.targets) if args.targets else {}
    if per_image:
        known = {str(p) for p in paths} | {p.name for p in paths} | {p.stem for p in paths}
        unknown = [k for k in per_image if k not in known]
        if unknown:
            raise UsageError(f"--targets names images that are not among the inputs: {', '.join(unknown[:5])}")

    config = GFIConfig.preset(args.preset, **overrides)
    clf, info = load_model(args.model, weights=args.weights, allow_pickle=args.unsafe_allow_pickle,
                           download=args.download)
    if args.inversion_layer or args.channel_layer:
        clf = clf.with_layers(args.inversion_layer, args.channel_layer)
    clf.multilabel = args.multilabel
    clf.to(device)
    explainer = get_method(args.method, clf, config=config) if is_gfi else get_method(args.method, clf)
    _check_target_specs([*(args.target or []), *(c for v in per_image.values() for c in v)], clf)
    run = RunFolder(args.out, _explain_arguments(args, paths, per_image, info, clf, config, is_gfi),
                    overwrite=args.overwrite)
    log.debug("model %s (weights %s), method %s, l0=%s, l1=%s, device %s; %d input(s); output in %s",
              info.get("model"), info.get("weights"), args.method, clf.inversion_layer, clf.channel_layer, device,
              len(paths), args.out)
    keys = [_safe_stem(p) for p in paths]
    done = run.finished()
    todo = [p for p, k in zip(paths, keys, strict=True) if k not in done]
    if run.resuming:
        log.info("resuming the run in %s: %d of %d images are done, %d to go", args.out,
                 len(paths) - len(todo), len(paths), len(todo))

    def summary(complete: bool, seconds: float) -> dict:
        recs = run.records(keys)
        return {
            "gfi_version": _version(), "torch": torch.__version__, "model": info, "method": args.method,
            "preset": args.preset if is_gfi else None, "config": config.to_dict() if is_gfi else None,
            "inversion_layer": str(clf.inversion_layer), "channel_layer": str(clf.channel_layer),
            "device": str(device), "seed": config.seed, "seconds_total": round(seconds, 3),
            "complete": complete, "images": [r for r in recs if r["status"] == "ok"],
            "failures": [{"image": r["image"], "error": r["error"]} for r in recs if r["status"] == "failed"],
        }

    t_start = time.time()
    explained: list[dict] = []
    previous = _sigterm_as_interrupt()
    try:
        explained = _explain_loop(args, clf, explainer, run, todo, per_image, device, len(paths) - len(todo),
                                  len(paths), lambda: run.write_results(summary(False, time.time() - t_start)))
    except KeyboardInterrupt:
        final = summary(False, time.time() - t_start)
        _finish(run, final)
        print(f"gfi: interrupted: {len(final['images'])} of {len(paths)} images are done and saved in {args.out}; "
              "run the same command again to finish", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    final = summary(True, time.time() - t_start)
    results_path = _finish(run, final)
    if not final["images"]:
        first = final["failures"][0]["error"] if final["failures"] else ""
        raise UsageError(f"no image could be explained ({len(final['failures'])} failed; first: {first}); "
                         f"see {results_path}")
    if not todo:
        log.warning("nothing to do: all %d images are already explained in %s (pass --overwrite to redo them)",
                    len(paths), args.out)
    if final["failures"]:
        log.warning("%d image(s) not explained, listed under `failures` in %s", len(final["failures"]), results_path)
    if not args.quiet:
        for r in explained:
            for t in r["targets"]:
                print(f"{r['image']}: {t['class_name']} ({t['class']}) p={_fmt(t['prob'])} -> "
                      f"{args.out / t['overlay']}")
    return 0


def _sigterm_as_interrupt():
    """Treat SIGTERM like Ctrl-C (save the summary, then stop); returns the previous handler."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        return None


def _fmt(v) -> str:
    return "nan" if v is None else f"{v:.3f}"


def _finish(run, summary: dict) -> Path:
    """results.json, then report.html (both atomically)."""
    from gfi.runs import REPORT
    from gfi.viz.report import write_report

    path = run.write_results(summary)
    write_report(run.out / REPORT, summary, run.out, title=f"gfi explain: {run.out.name}")
    return path


def _explain_loop(args, clf, explainer, run, todo, per_image, device, n_done, n_total, checkpoint) -> list[dict]:
    """Explain ``todo`` batch by batch; each image's record is stored as soon as it is finished, and
    ``checkpoint()`` rewrites the summary every 10 s."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from gfi.data.images import ImageLoadError, load_image
    from gfi.runs import OutputFolderError

    explained = []
    last_summary = time.time()
    bar = tqdm(total=n_total, initial=n_done, unit="img", disable=args.quiet or n_total < 2, file=sys.stderr,
               dynamic_ncols=True)
    with logging_redirect_tqdm(loggers=[log]):
        for i0 in range(0, len(todo), args.batch_size):
            chunk = todo[i0:i0 + args.batch_size]
            images, ok = [], []
            for p in chunk:
                try:
                    images.append(load_image(p, max_side=args.max_side))
                    ok.append(p)
                except ImageLoadError as exc:
                    _fail(run, p, str(exc))
            if ok:
                x = clf.prepare(images).to(device)
                with torch.no_grad():
                    logits = clf(x).float()
                finite = torch.isfinite(logits).all(1).tolist()
                probs = clf.scores(logits)
                keep = [j for j, f in enumerate(finite) if f]
                for j, f in enumerate(finite):
                    if not f:
                        _fail(run, ok[j], f"{ok[j]}: the model's output for this image contains NaN or inf, so "
                                          "there is nothing to explain; check the weights (--weights)")
                targets = {j: _resolve_targets(_specs(args, per_image, ok[j]), clf, probs[j]) for j in keep}
                # images with the same number of targets share one call (stage 1 once per image)
                groups: dict[int, list[int]] = defaultdict(list)
                for j in keep:
                    groups[len(targets[j])].append(j)
                for idx in groups.values():
                    t0 = time.time()
                    e = explainer.explain(x[idx], [targets[j] for j in idx]).cpu()
                    seconds = (time.time() - t0) / len(idx)
                    for row, j in enumerate(idx):
                        run.start(_safe_stem(ok[j]), str(ok[j]))
                        try:
                            rec = _write_outputs(args, run, clf, ok[j], images[j], e, row, probs[j], seconds)
                        except OutputFolderError as exc:  # e.g. a file of the user's in the way
                            _fail(run, ok[j], str(exc))
                            continue
                        run.add(_safe_stem(ok[j]), rec)
                        explained.append(rec)
                        log.debug("%s: explained in %.2f s, record saved", ok[j], seconds)
                    del e
                del x, logits, probs, images
            bar.update(len(chunk))
            if time.time() - last_summary > 10:  # a readable summary along the way, not only at the end
                checkpoint()
                last_summary = time.time()
    bar.close()
    return explained


def _specs(args, per_image: dict, p: Path) -> list[str]:
    return per_image.get(str(p)) or per_image.get(p.name) or per_image.get(p.stem) or args.target or ["top1"]


def _fail(run, path: Path, error: str) -> None:
    log.warning("skipped: %s", error)
    run.add(_safe_stem(path), {"image": str(path), "status": "failed", "error": error})


def _finite(v: float, what: str, where: str) -> float | None:
    if math.isfinite(v):
        return v
    log.warning("%s: %s is %s; it is written as null", where, what, v)
    return None


def _write_outputs(args, run, clf, path, image, e, row, probs, seconds) -> dict:
    """Overlays, .npy maps and report thumbnails of one image at its own size; returns its record."""
    import numpy as np

    from gfi.viz.overlay import save_explanation_figure as save_figure
    from gfi.viz.overlay import to_original_size as resize
    from gfi.viz.report import thumbnail

    stem = _safe_stem(path)

    def save(name, write):
        return run.save(name, write, key=stem)

    classes = [int(c) for c in e.targets[row]]
    names = [f"thumbs/{stem}.jpg"] + [f"thumbs/{stem}_{c}.jpg" for c in classes] + [f"{stem}_{c}.png" for c in classes]
    if e.stage1_map is not None:
        names += [f"thumbs/{stem}_stage1.jpg"] + ([f"{stem}_stage1.npy"] if args.save_npy else [])
    if args.save_npy:
        names += [f"{stem}_{c}.npy" for c in classes]
    run.check_free(names, key=stem)

    size = tuple(image.shape[-2:])
    stage1 = resize(e.stage1_map[row], size) if e.stage1_map is not None else None
    maps = resize(e.maps[row], size)
    rec = {"image": str(path), "status": "ok", "size": list(size), "seconds_per_image": round(seconds, 3),
           "top5": [{"class": int(i), "class_name": clf.class_name(int(i)), "prob": round(float(probs[i]), 5)}
                    for i in probs.topk(min(5, probs.numel())).indices],
           "targets": []}
    if max(size) >= args.max_side:  # reduced on reading (--max-side): say from what
        from gfi.data.images import image_size

        rec["original_size"] = list(image_size(path))
    rec["thumb_input"] = save(f"thumbs/{stem}.jpg", lambda p: p.write_bytes(thumbnail(image)))
    if stage1 is not None:
        rec["stage1_collapsed"] = bool(e.stage1_collapsed[row])
        rec["thumb_stage1"] = save(f"thumbs/{stem}_stage1.jpg",
                                       lambda p: p.write_bytes(thumbnail(image, stage1, cmap=args.cmap)))
        if args.save_npy:
            rec["stage1_npy"] = save(f"{stem}_stage1.npy", lambda p: np.save(p, stage1.numpy().astype(np.float32)))
    for k in range(e.targets.shape[1]):
        c = int(e.targets[row, k])
        name = clf.class_name(c)
        where = f"{path}, class {name}"
        prob = _finite(float(e.probs[row, k]), "the score", where)
        t = {"class": c, "class_name": name, "prob": prob}
        if e.prob_kept is not None:
            t.update(prob_kept=_finite(float(e.prob_kept[row, k]), "the score of the kept image", where),
                     prob_removed=_finite(float(e.prob_removed[row, k]), "the score of the removed image", where))
        if any(t.get(f) is None for f in ("prob", "prob_kept", "prob_removed") if f in t):
            t["nonfinite"] = True
        m = maps[k]
        if not torch.isfinite(m).all():  # never written as NaN: zeros, flagged
            log.warning("%s: the map has NaN or inf; it is written as zeros and flagged", where)
            m = torch.zeros_like(m)
            t["nonfinite"] = True
        if e.collapsed is not None:
            t["collapsed"] = bool(e.collapsed[row, k])
            if t["collapsed"]:
                log.warning("%s: the map collapsed (all weights zero); it is written as zeros", where)
        title = f"{name[:40]} ({c}) p={_fmt(prob)}"
        t["overlay"] = save(f"{stem}_{c}.png", lambda p, m=m, title=title: save_figure(
            p, image, stage1, m, title, cmap=args.cmap, colorbar=args.colorbar))
        t["thumb"] = save(f"thumbs/{stem}_{c}.jpg",
                              lambda p, m=m: p.write_bytes(thumbnail(image, m, cmap=args.cmap)))
        if args.save_npy:
            t["npy"] = save(f"{stem}_{c}.npy", lambda p, m=m: np.save(p, m.numpy().astype(np.float32)))
        rec["targets"].append(t)
    return rec


# --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING
    if getattr(args, "verbose", False):
        level = logging.DEBUG
    elif not getattr(args, "quiet", False):
        level = logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("gfi: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
    from gfi import cli_compare
    from gfi.evaluation import command as eval_command

    commands = {"explain": cmd_explain, "models": cmd_models, "methods": cmd_methods, "layers": cmd_layers,
                "compare": cli_compare.run, "eval": eval_command.run}
    from gfi.data.images import ImageLoadError
    from gfi.models import LayerNotFoundError, NotAConvNetError, WeightsError

    try:
        return commands[args.command](args)
    except (UsageError, ImageLoadError, LayerNotFoundError, NotAConvNetError, WeightsError) as exc:
        print(f"gfi: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # bad option values reported by the library (ranges, names)
        print(f"gfi: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
