"""Command line: ``gfi explain``, ``gfi models``, ``gfi methods``, ``gfi layers``.

Argument parsing and orchestration only; the maths lives in :mod:`gfi.methods`.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

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
        m = re.search(rf"^\s+{f.name}(?:, \w+)?: (.+?)(?=^\s+\w+(?:, \w+)?: |\Z)", doc, re.M | re.S)
        help_text = " ".join(m.group(1).split()) if m else ""
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

    ex = sub.add_parser("explain", help="explain images; writes overlays, .npy maps and results.json",
                        description="Explain the predictions for IMAGE... (files or folders).")
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
    ex.add_argument("--overwrite", action="store_true", help="replace existing outputs")
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

    cli_compare.add_parser(sub)
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


def _safe_stem(path: Path) -> str:
    """A file-name stem that cannot leave the output folder."""
    stem = re.sub(r"[^\w.\-]+", "_", path.stem).lstrip(".") or "image"
    return stem[:120]


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


def cmd_explain(args) -> int:
    from gfi.data.images import ImageLoadError, find_images, load_image
    from gfi.methods.gfi import GFIConfig
    from gfi.methods.registry import METHODS, get_method
    from gfi.models.presets import load_model

    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.target and args.targets:
        raise UsageError("--target and --targets conflict: give classes on the command line or in the CSV, not both")
    if args.method not in METHODS:
        raise UsageError(f"unknown method {args.method!r}; valid methods: {', '.join(METHODS)}")
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

    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(GFIConfig)
                 if getattr(args, f.name) is not None}
    config = GFIConfig.preset(args.preset, **overrides)
    weights = args.weights
    clf, info = load_model(args.model, weights=weights, allow_pickle=args.unsafe_allow_pickle, download=args.download)
    if args.inversion_layer or args.channel_layer:
        clf = clf.with_layers(args.inversion_layer, args.channel_layer)
    clf.multilabel = args.multilabel
    clf.to(device)
    is_gfi = args.method.startswith("gfi")
    explainer = get_method(args.method, clf, config=config) if is_gfi else get_method(args.method, clf)

    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    if results_path.exists() and not args.overwrite:
        raise UsageError(f"{results_path} exists; choose another --out or pass --overwrite")

    from tqdm import tqdm

    records, failures = [], []
    t_start = time.time()
    bar = tqdm(total=len(paths), unit="img", disable=args.quiet or len(paths) < 2, file=sys.stderr)
    for i0 in range(0, len(paths), args.batch_size):
        chunk = paths[i0:i0 + args.batch_size]
        images, ok = [], []
        for p in chunk:
            try:
                images.append(load_image(p))
                ok.append(p)
            except ImageLoadError as exc:
                log.warning("skipped: %s", exc)
                failures.append({"image": str(p), "error": str(exc)})
        if not ok:
            bar.update(len(chunk))
            continue
        x = clf.prepare(images).to(device)
        with torch.no_grad():
            probs = clf.scores(clf(x).float())
        targets = []
        for p, pr in zip(ok, probs, strict=True):
            specs = per_image.get(str(p)) or per_image.get(p.name) or per_image.get(p.stem) or args.target or ["top1"]
            targets.append(_resolve_targets(specs, clf, pr))
        # images with the same number of targets share one call (stage 1 once per image)
        groups: dict[int, list[int]] = defaultdict(list)
        for j, t in enumerate(targets):
            groups[len(t)].append(j)
        for idx in groups.values():
            t0 = time.time()
            e = explainer.explain(x[idx], [targets[j] for j in idx])
            seconds = (time.time() - t0) / len(idx)
            for row, j in enumerate(idx):
                records.append(_write_outputs(args, clf, ok[j], images[j], e, row, probs[j], seconds))
        bar.update(len(chunk))
    bar.close()

    summary = {
        "gfi_version": _version(), "torch": torch.__version__, "model": info, "method": args.method,
        "preset": args.preset if args.method.startswith("gfi") else None,
        "config": config.to_dict() if args.method.startswith("gfi") else None,
        "inversion_layer": str(clf.inversion_layer), "channel_layer": str(clf.channel_layer),
        "device": str(device), "seed": config.seed, "seconds_total": round(time.time() - t_start, 3),
        "images": records, "failures": failures,
    }
    tmp = results_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(results_path)
    if not records:
        raise UsageError(f"no image could be explained ({len(failures)} failed); see {results_path}")
    if not args.quiet:
        for r in records:
            for t in r["targets"]:
                print(f"{r['image']}: {t['class_name']} ({t['class']}) p={t['prob']:.3f} -> {t['overlay']}")
    return 0


def _write_outputs(args, clf, path, image, e, row, probs, seconds) -> dict:
    """Overlays and .npy maps of one image at its own size; returns its results.json record."""
    import numpy as np

    from gfi.viz.overlay import save_explanation_figure as save_figure
    from gfi.viz.overlay import to_original_size as resize

    stem = _safe_stem(path)
    size = tuple(image.shape[-2:])
    stage1 = resize(e.stage1_map[row], size).cpu() if e.stage1_map is not None else None
    maps = resize(e.maps[row], size).cpu()
    rec = {"image": str(path), "size": list(size), "seconds_per_image": round(seconds, 3),
           "top5": [{"class": int(i), "class_name": clf.class_name(int(i)), "prob": round(float(probs[i]), 5)}
                    for i in probs.topk(min(5, probs.numel())).indices],
           "targets": []}
    if stage1 is not None:
        rec["stage1_collapsed"] = bool(e.stage1_collapsed[row])
        if args.save_npy:
            rec["stage1_npy"] = _save(args, f"{stem}_stage1.npy",
                                      lambda p: np.save(p, stage1.numpy().astype(np.float32)))
    for k in range(e.targets.shape[1]):
        c = int(e.targets[row, k])
        name = clf.class_name(c)
        prob = float(e.probs[row, k])
        t = {"class": c, "class_name": name, "prob": prob}
        if e.prob_kept is not None:
            t.update(prob_kept=float(e.prob_kept[row, k]), prob_removed=float(e.prob_removed[row, k]))
        if e.collapsed is not None:
            t["collapsed"] = bool(e.collapsed[row, k])
            if t["collapsed"]:
                log.warning("%s, class %s: the map collapsed (all weights zero); it is written as zeros", path, name)
        title = f"{name[:40]} ({c}) p={prob:.3f}"
        t["overlay"] = _save(args, f"{stem}_{c}.png",
                             lambda p, m=maps[k], title=title: save_figure(p, image, stage1, m, title,
                                                                          cmap=args.cmap, colorbar=args.colorbar))
        if args.save_npy:
            t["npy"] = _save(args, f"{stem}_{c}.npy", lambda p, m=maps[k]: np.save(p, m.numpy().astype(np.float32)))
        rec["targets"].append(t)
    return rec


def _save(args, name: str, write) -> str:
    """Write ``name`` inside --out atomically (temporary file, then rename); refuse to overwrite."""
    dest = (args.out / name).resolve()
    if args.out.resolve() not in dest.parents:
        raise UsageError(f"output name {name!r} would leave {args.out}")
    if dest.exists() and not args.overwrite:
        raise UsageError(f"{dest} exists; choose another --out or pass --overwrite")
    tmp = dest.with_name(dest.stem + ".tmp" + dest.suffix)
    write(tmp)
    tmp.replace(dest)
    return str(dest)


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

    commands = {"explain": cmd_explain, "models": cmd_models, "methods": cmd_methods, "layers": cmd_layers,
                "compare": cli_compare.run}
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
