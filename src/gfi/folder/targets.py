"""The inputs of a folder job: image paths (each file once) and the targets to explain per image,
checked before any work and resolved once the model has scored the image.

Target specs (per image from ``--targets`` or a mapping): ``top1``, ``topK``, a class index or a
class name (each resolves to a class index, the method's own reading of the class), or one score
of the model's output, named by its kind: ``logit:C``, ``softmax:C``, ``logsoftmax:C``,
``sigmoid:C`` (C an index or a name) and ``output:I[,J...]`` (the output's entry at that index:
a regression output, one unit of a non-classifier); on a segmentation model (``clf.task``)
``mask:FILE:C`` (:class:`gfi.targets.SegmentationTarget` over a mask image's non-zero pixels), on a
detection model ``box:X0,Y0,X1,Y1:C`` (:class:`gfi.targets.DetectionTarget`; the box in the image's
own pixels, scaled to the model's input per image). Each resolves to a :mod:`gfi.targets` object;
a target the model's output cannot score is refused before any work, naming what it takes."""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch

from gfi.data.samples import safe_stem
from gfi.errors import UsageError
from gfi.targets import Logit, LogSoftmax, OutputIndex, Sigmoid, Softmax, Target

Item = int | Target  # a resolved target: a class index, or a target object

log = logging.getLogger(__name__)

_TOPK = re.compile(r"top(\d+)")


def unique_inputs(paths: list[Path]) -> list[Path]:
    """``paths`` with repeats of the same file removed (the same file is one input); two different
    files with the same output name are refused, and so are two whose output names differ only in
    case (``Cat.png`` and ``cat.png``): on a case-insensitive file system (macOS, Windows, a
    mounted share) their outputs would be one file, the second run's replacing the first's."""
    seen: dict[Path, Path] = {}
    for p in paths:
        seen.setdefault(p.resolve(), p)
    out = list(seen.values())
    stems: dict[str, tuple[str, Path]] = {}
    for p in out:
        s = safe_stem(p)
        if s.casefold() in stems:
            other, q = stems[s.casefold()]
            same = f"the output name {s!r}" if other == s else f"output names {other!r} and {s!r} (equal but for case)"
            raise UsageError(f"two inputs share {same}: {q} and {p}; rename one or run them apart")
        stems[s.casefold()] = (s, p)
    return out


def match_csv_to_inputs(per_image: dict[str, list[str]], paths: list[Path]) -> dict[Path, list[str]]:
    """The CSV's classes by input path (a CSV name may be the path, the file name or the stem;
    several names of one file are merged)."""
    by_name: dict[str, Path] = {}
    for p in paths:
        for name in (str(p), p.name, p.stem, str(p.resolve())):
            by_name.setdefault(name, p)
    unknown = [k for k in per_image if k not in by_name]
    if unknown:
        raise UsageError(f"--targets names images that are not among the inputs: {', '.join(unknown[:5])}")
    out: dict[Path, list[str]] = defaultdict(list)
    for name, classes in per_image.items():
        out[by_name[name]].extend(classes)
    return dict(out)


MASK, BOX = "mask", "box"  # the kinds of a segmentation and a detection target
KINDS: dict[str, type[Target]] = {"logit": Logit, "softmax": Softmax, "logsoftmax": LogSoftmax, "sigmoid": Sigmoid}
#: the target kinds each task's model takes in a folder job (what its output can score)
TAKES = {"classification": ("class", *KINDS, "output"), "segmentation": (MASK, "output"), "detection": (BOX,)}
EXAMPLE = {"segmentation": "--target mask:MASK.png:CLASS (the pixels to explain: a mask image, non-zero inside)",
           "detection": "--target box:X0,Y0,X1,Y1:CLASS (the detection's box, in the image's pixels)"}


def _kind(spec: str) -> tuple[str, str] | None:
    """(kind, rest) of ``KIND:REST`` when KIND is a known kind (a class name with a colon in it is a
    name), else None."""
    head, sep, rest = str(spec).partition(":")
    key = head.strip().lower()
    return (key, rest.strip()) if sep and key in (*KINDS, "output", MASK, BOX) else None


def _output_index(spec: str, rest: str) -> tuple[int, ...]:
    try:
        idx = tuple(int(v) for v in rest.split(","))
    except ValueError:
        idx = ()
    if not idx or any(i < 0 for i in idx):
        raise UsageError(f"--target {spec}: output: takes the output's index, one or more integers >= 0 "
                         "separated by commas (e.g. output:3 or output:0,2)")
    return idx


def _class_of(spec: str, name: str, clf) -> int:
    try:
        return clf.class_index(name)
    except ValueError as exc:
        raise UsageError(f"--target {spec}: {exc}") from exc


def check_task(spec: str, clf) -> None:
    """Refuse a target the model's output cannot score (``clf.task``), naming what it takes."""
    task = getattr(clf, "task", "classification")
    kind = (_kind(spec) or ("class", ""))[0]
    if kind in TAKES[task]:
        return
    if task == "classification":
        need = "segmentation" if kind == MASK else "detection"
        raise UsageError(f"--target {spec}: a {kind} target reads a {need} model's output, and {clf.name} is a "
                         f"classifier; give a {need} model (e.g. --model torchvision:"
                         f"{'lraspp_mobilenet_v3_large' if kind == MASK else 'fasterrcnn_mobilenet_v3_large_fpn'}), "
                         "or a class")
    raise UsageError(f"--target {spec}: {clf.name} is a {task} model, whose output has no one score per class "
                     f"for that; give {EXAMPLE[task]}")


def _mask(spec: str, path: str) -> torch.Tensor:
    """The (H, W) bool mask of a mask image (non-zero pixels are in it), one line for each problem."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from gfi.data.images import not_regular

    p = Path(path)
    special = not_regular(p)
    if special:
        raise UsageError(f"--target {spec}: {path} is {special}, not a mask image")
    try:
        with Image.open(p) as im:
            m = torch.from_numpy(np.array(im.convert("L"))) > 0
    except FileNotFoundError:
        raise UsageError(f"--target {spec}: no mask image {path}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise UsageError(f"--target {spec}: {path} is not an image Pillow can read ({exc})") from exc
    if not bool(m.any()):
        raise UsageError(f"--target {spec}: the mask {path} is empty (every pixel 0); the pixels to explain are "
                         "the non-zero ones")
    return m


def _box(spec: str, rest: str) -> tuple[tuple[float, ...], str]:
    coords, _, label = rest.rpartition(":")
    try:
        box = tuple(float(v) for v in coords.split(","))
    except ValueError:
        box = ()
    import math

    if len(box) != 4 or not all(math.isfinite(v) for v in box) or not (box[2] > box[0] and box[3] > box[1]) \
            or not label.strip():
        raise UsageError(f"--target {spec}: box: takes X0,Y0,X1,Y1:CLASS, the box in the image's pixels with "
                         "X1 > X0 and Y1 > Y0, and its class (an index or a name), e.g. box:40,10,200,180:dog")
    return box, label.strip()


def _resolve_kind(spec: str, clf, image_size: tuple[int, int] | None = None) -> Target:
    """The target object of a ``KIND:...`` spec. ``image_size`` (H, W): the image's own size, which a
    box's pixels are given in (None: only checked)."""
    from gfi.targets import DetectionTarget, SegmentationTarget

    check_task(spec, clf)
    kind, rest = _kind(spec)
    if kind == "output":
        return OutputIndex(_output_index(spec, rest))
    if kind == MASK:
        path, _, label = rest.rpartition(":")
        if not path or not label.strip():
            raise UsageError(f"--target {spec}: mask: takes FILE:CLASS, a mask image (non-zero inside) and the class "
                             "(an index or a name), e.g. mask:road.png:15")
        return SegmentationTarget(_class_of(spec, label.strip(), clf), _mask(spec, path))
    if kind == BOX:
        box, label = _box(spec, rest)
        if image_size is not None:  # the image's pixels -> the model's input pixels (the whole image resized)
            (h, w), (ih, iw) = image_size, clf.input_size
            box = (box[0] * iw / w, box[1] * ih / h, box[2] * iw / w, box[3] * ih / h)
        return DetectionTarget(box, _class_of(spec, label, clf))
    if not rest:
        raise UsageError(f"--target {spec}: {kind}: needs a class, an index or a name (e.g. {kind}:243)")
    return KINDS[kind](_class_of(spec, rest, clf))


def _topk(spec: str) -> int | None:
    m = _TOPK.fullmatch(spec.strip().lower())
    return int(m.group(1)) if m else None


def _too_many(spec: str, k: int, n: int) -> UsageError:
    return UsageError(f"--target {spec}: asks for the top {k} classes, but the model has {n}; the most is "
                      f"top{n} (or give the classes you mean)")


def check_target_specs(specs: list[str], clf) -> None:
    """Class names and indices are checked before anything is written (topK needs the scores);
    a topK beyond the model's number of classes is refused, naming the most there is."""
    n = clf.num_classes
    for spec in specs:
        check_task(spec, clf)
        if _kind(spec) is not None:
            _resolve_kind(spec, clf)
            continue
        k = _topk(spec)
        if k is not None and k < 1:
            raise UsageError(f"--target {spec}: K must be >= 1")
        if k is not None and n is not None and k > n:
            raise _too_many(spec, k, n)
        if k is None:
            try:
                c = clf.class_index(spec)
            except ValueError as exc:
                raise UsageError(str(exc)) from exc
            said_as_word(spec, c, clf)


def said_as_word(spec: str, c: int, clf) -> None:
    """Say (once per check, at info level) when a name was read as the one class whose name holds it
    as a word (``--target greyhound`` is 171, "Italian greyhound"), not as a class's name or synonym."""
    key = " ".join(str(spec).strip().lower().split())
    if key.lstrip("-").isdigit() or clf.class_names is None:
        return
    name = clf.class_name(c)
    if key != name.lower() and key not in (s.strip() for s in name.lower().split(",")):
        log.info("target %r: read as class %d, %s (the one class whose name holds that word)", spec, c, name)


def target_count(specs: Sequence[str], num_classes: int | None) -> int:
    """The most classes ``specs`` can name for one image (topK counts K; each name or index 1; never
    more than the model's classes)."""
    k = sum((_topk(s) if _kind(s) is None else None) or 1 for s in specs)
    return min(k, num_classes) if num_classes is not None else k


def check_target_memory(clf, per_image: Iterable[Sequence[str]], *, batch: int, max_side: int,
                        available: int | None = None) -> None:
    """Refuse, before anything is written, more targets per image than memory holds: each target
    costs its image-target rows in the model (``batch`` images explained together; see
    :func:`gfi.models.memory.target_cap`) and its map at the image's own size (up to ``max_side``
    pixels a side, float32). ``per_image``: the target specs of each image. The message names the
    cap and the options that lift it."""
    from gfi.models.memory import target_cap

    k = max((target_count(s, clf.num_classes) for s in per_image), default=1)
    if k <= 1:
        return
    cap = target_cap(clf, batch, tuple(clf.input_size), extra_per_target=4 * max_side * max_side,
                     available=available)
    if cap is not None and k > cap.most:
        fix = (f"ask for at most {cap.most} (e.g. --target top{cap.most})" if cap.most else "no target fits")
        raise UsageError(cap.refusal(k, f"{batch} image(s) a batch at up to {max_side} px a side",
                                     f"{fix}, or lower --batch-size or --max-side"))


def resolve_targets(specs: list[str], clf, probs: torch.Tensor | None,
                    image_size: tuple[int, int] | None = None) -> list[Item]:
    """The targets of ``specs`` for one image (``probs``: its scores; ``image_size``: its own (H, W),
    for boxes): class indices, and target objects for ``KIND:...`` specs, each remembering its spec
    (``spec``); each once. A topK beyond the number of scores is refused (a model without class
    names is checked here)."""
    out: list[Item] = []
    for spec in specs:
        if _kind(spec) is not None:
            t = _resolve_kind(spec, clf, image_size)
            t.spec = str(spec).strip()
            out.append(t)
            continue
        k = _topk(spec)
        if k is not None:
            if k > probs.numel():
                raise _too_many(spec, k, probs.numel())
            out.extend(int(i) for i in probs.topk(k).indices)
        else:
            try:
                out.append(clf.class_index(spec))
            except ValueError as exc:
                raise UsageError(str(exc)) from exc
    return list(dict.fromkeys(out))  # targets compare by what they score


def target_key(item: Item) -> str:
    """The part of an output's name that says its target: the class index (``STEM_243.png``), or
    the target's description with every run of other characters than letters, digits and ``.``
    made one ``-`` (``logit:243`` -> ``logit-243``, ``output:0,2`` -> ``output-0.2``): never a
    ``_``, so the stem stays what comes before the first one (see :func:`gfi.folder.outputs.input_thumb`)."""
    if isinstance(item, int):
        return str(item)
    text = getattr(item, "spec", None) or item.describe()  # a box as the user gave it, not as resized
    if text.lower().startswith(f"{MASK}:"):  # mask:FILE:C -> mask-STEM-C-DIGEST (two files of one stem differ)
        path, _, label = text[5:].rpartition(":")
        text = f"{MASK}:{Path(path).stem}:{label}:{item.describe().split(':')[1]}"
    return re.sub(r"[^A-Za-z0-9.]+", "-", text.replace(",", ".")).strip("-")[:80] or "target"


def check_contrastive(beta: float, per_image: Iterable[Sequence[str]], clf) -> None:
    """``--contrastive BETA`` checked before any work: beta a finite number >= 0, and every image
    asked for two classes or more, all of them classes (not ``KIND:...`` scores)."""
    import math

    if isinstance(beta, bool) or not isinstance(beta, int | float) or not math.isfinite(beta) or beta < 0:
        raise UsageError(f"--contrastive must be a finite number >= 0 (beta, e.g. 0.5), got {beta!r}")
    for specs in per_image:
        kinds = [s for s in specs if _kind(s) is not None]
        if kinds:
            raise UsageError(f"--contrastive contrasts classes; --target {kinds[0]} is a score of its own "
                             "(give classes: top2, indices or names)")
        if target_count(specs, clf.num_classes) < 2:
            raise UsageError(f"--contrastive needs two classes or more per image to contrast; --target "
                             f"{' '.join(specs)} gives one (e.g. --target top2, or two --target)")


def contrastive(items: list[Item], beta: float, where: str) -> list[Target]:
    """One image's classes, each against the others: :meth:`gfi.targets.Contrastive.among` with
    ``beta`` (y_c - beta x the mean of the others' logits). Needs two classes or more, all of them
    classes (a ``KIND:...`` target is its own score, not a class to contrast)."""
    from gfi.targets import Contrastive

    kinds = [t.describe() for t in items if not isinstance(t, int)]
    if kinds:
        raise UsageError(f"--contrastive contrasts classes; {where}: {', '.join(kinds)} is a score of its own "
                         "(give classes: top2, indices or names)")
    if len(items) < 2:
        raise UsageError(f"--contrastive needs two classes or more per image to contrast; {where} has "
                         f"{len(items)} (e.g. --target top2, or two --target)")
    return Contrastive.among(items, beta)


def spec_list(value: str | int | Iterable[str | int]) -> list[str]:
    """Target specs as strings: one spec (``"top5"``, ``"tabby cat"``, ``281``) or several."""
    if isinstance(value, str | int):
        return [str(value)]
    return [str(v) for v in value]


def target_specs(targets, paths: list[Path]) -> tuple[list[str] | None, dict[Path, list[str]]]:
    """(the specs of every image, the specs per image) of :func:`gfi.explain_folder`'s ``targets``:
    None (each image's top-1 class), a spec or a list of specs for every image, or a mapping from
    an image (its path, file name or stem) to its spec(s)."""
    if targets is None:
        return None, {}
    if isinstance(targets, Mapping):
        return None, match_csv_to_inputs({str(k): spec_list(v) for k, v in targets.items()}, paths)
    specs = spec_list(targets)
    if not specs:
        raise UsageError("targets is empty; give None for each image's top-1 class, or the classes to explain")
    return specs, {}
