"""The inputs of ``gfi explain``: image paths (each file once), the classes to explain per image
(``--target`` specs and the ``--targets`` CSV), resolved to class indices at the edge."""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path

import torch

from gfi.data.samples import safe_stem
from gfi.errors import UsageError

_TOPK = re.compile(r"top(\d+)")


def unique_inputs(paths: list[Path]) -> list[Path]:
    """``paths`` with repeats of the same file removed (the same file is one input); two different
    files with the same output name are refused."""
    seen: dict[Path, Path] = {}
    for p in paths:
        seen.setdefault(p.resolve(), p)
    out = list(seen.values())
    stems: dict[str, Path] = {}
    for p in out:
        s = safe_stem(p)
        if s in stems:
            raise UsageError(f"two inputs share the output name {s!r}: {stems[s]} and {p}; "
                             "rename one or run them apart")
        stems[s] = p
    return out


def read_targets_csv(path: Path) -> dict[str, list[str]]:
    """``image,class`` lines (UTF-8, a spreadsheet's byte-order mark allowed, an optional header
    row ``image,class``, ``#`` comments); every error names the line."""
    if not path.is_file():
        raise UsageError(f"--targets {path}: no such file")
    out: dict[str, list[str]] = defaultdict(list)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError as exc:
        raise UsageError(f"--targets {path}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                         "save the CSV as UTF-8") from exc
    for n, row in enumerate(rows, 1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if n == 1 and cells[0].lower() == "image":
            continue
        if len(cells) < 2:
            raise UsageError(f"--targets {path}, line {n}: expected `image,class`, got {','.join(row)!r}")
        if not cells[0]:
            raise UsageError(f"--targets {path}, line {n}: no image")
        cls = ",".join(cells[1:]).strip().strip(",").strip()
        if not cls:
            raise UsageError(f"--targets {path}, line {n}: no class for {cells[0]}")
        out[cells[0]].append(cls)
    return dict(out)


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


def check_target_specs(specs: list[str], clf) -> None:
    """Class names and indices are checked before anything is written (topK needs the scores)."""
    for spec in specs:
        m = _TOPK.fullmatch(spec.strip().lower())
        if m and int(m.group(1)) < 1:
            raise UsageError(f"--target {spec}: K must be >= 1")
        if not m:
            try:
                clf.class_index(spec)
            except ValueError as exc:
                raise UsageError(str(exc)) from exc


def resolve_targets(specs: list[str], clf, probs: torch.Tensor) -> list[int]:
    """Class indices of ``specs`` for one image (``probs``: its scores), each class once."""
    out: list[int] = []
    for spec in specs:
        m = _TOPK.fullmatch(spec.strip().lower())
        if m:
            out.extend(int(i) for i in probs.topk(min(int(m.group(1)), probs.numel())).indices)
        else:
            try:
                out.append(clf.class_index(spec))
            except ValueError as exc:
                raise UsageError(str(exc)) from exc
    return list(dict.fromkeys(out))
