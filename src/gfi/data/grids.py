"""The inputs of the grid pointing game (``gfi eval grid``, :mod:`gfi.evaluation.grid`): 2x2 grids
of four images of four distinct classes, each image one cell, chosen among the images a model
classifies correctly and confidently on their own, and the dataset the evaluation loop reads them
from. A cell is the whole image resized to the model's input size S (as
:meth:`~gfi.models.classifier.Classifier.prepare` does) and quantised to 8 bits, as the grid's PNG
stores it; a grid is 2S x 2S. Nothing here writes a file: the experiment writes the grids under its
folder's lock."""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gfi.data.samples import DataError, Sample

log = logging.getLogger("gfi")

DOG_CLASSES = range(151, 269)  # ImageNet's dog breeds (torchvision's class order)
CELLS = 4

__all__ = ["CELLS", "DOG_CLASSES", "GridDataset", "GridSample", "build_grids", "cell_boxes", "cell_image",
           "choose_grids", "class_filter", "span"]


@dataclass
class GridSample(Sample):
    """A grid: ``classes`` in cell order (top left, top right, bottom left, bottom right), the
    cells as ``boxes``, and the source images with the probability the model gave each alone."""

    sources: list[str] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)


def cell_boxes(height: int, width: int) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) of the four cells of a ``height`` x ``width`` grid, in cell order."""
    h2, w2 = height // 2, width // 2
    return [(0, h2, 0, w2), (0, h2, w2, width), (h2, height, 0, w2), (h2, height, w2, width)]


def class_filter(spec: str, synsets: Sequence[str]) -> set[int] | None:
    """The classes allowed in cells: None (``any``), the dog breeds, or a comma list."""
    spec = spec.strip()
    if spec in ("", "any"):
        return None
    if spec == "dogs":
        return set(DOG_CLASSES) & set(range(len(synsets)))
    index = {s: i for i, s in enumerate(synsets)}
    out = set()
    for part in (p.strip() for p in spec.split(",")):
        if part.isdigit() and int(part) < len(synsets):
            out.add(int(part))
        elif part in index:
            out.add(index[part])
        else:
            raise DataError(f"--classes: {part!r} is neither a synset of LOC_synset_mapping.txt nor a class index "
                            f"0..{len(synsets) - 1}; use any, dogs or a comma list")
    if len(out) < CELLS:
        raise DataError(f"--classes names {len(out)} classes; a grid needs {CELLS} distinct ones")
    return out


def choose_grids(candidates: Sequence[dict], n: int, seed: int, reuse: int = 1) -> list[list[dict]]:
    """Up to ``n`` grids of four candidates (dicts with ``name`` and ``label``) of four distinct
    labels; classes uniformly among those with images left, an image uniformly within its class, the
    cell order random; deterministic for a seed.

    In ``reuse`` rounds: each round uses every candidate at most once (so an image is in at most
    ``reuse`` grids), and a later round skips a set of four images an earlier grid holds. The first
    round is the whole answer for ``reuse=1``, and the start of it for any ``reuse``."""
    rng = random.Random(seed)
    ordered = sorted(candidates, key=lambda d: d["name"])
    grids: list[list[dict]] = []
    seen: set[frozenset[str]] = set()
    for _ in range(reuse):
        pools: dict[int, list[dict]] = {}
        for c in ordered:
            pools.setdefault(int(c["label"]), []).append(c)
        misses = 0
        while len(grids) < n and misses < 20:
            left = sorted(k for k, v in pools.items() if v)
            if len(left) < CELLS:
                break
            grid = [pools[k].pop(rng.randrange(len(pools[k]))) for k in rng.sample(left, CELLS)]
            names = frozenset(c["name"] for c in grid)
            if names in seen:  # the same four images as an earlier grid (another round): not a new grid
                misses += 1
                continue
            seen.add(names)
            grids.append(grid)
    return grids


def span(text: str, n: int) -> range:
    """``START:STOP`` of ``n`` items (Python slice semantics); empty: all."""
    if not text.strip():
        return range(n)
    try:
        start, _, stop = text.partition(":")
        return range(n)[int(start) if start else None:int(stop) if stop else None]
    except ValueError as exc:
        raise DataError(f"--images {text!r}: expected START:STOP, e.g. 0:150") from exc


def cell_image(clf: Any, image: Tensor) -> Tensor:
    """The image as a cell: resized to the model's input size (:meth:`Classifier.prepare`),
    quantised to 8 bits as the grid's PNG stores it; (3, S, S) in [0, 1]."""
    x = clf.prepare(image.unsqueeze(0))[0]
    return (x * 255).round() / 255


class GridDataset:
    """The grids of a run as the loop's dataset: one :class:`GridSample` per grid PNG."""

    kind = "imagenet"

    def __init__(self, folder: Path, grids: list[dict], class_names: list[str]) -> None:
        self.folder = folder
        self.grids = grids
        self.class_names = class_names
        self.paths = [folder / f"{g['key']}.png" for g in grids]
        self.pending: tuple[dict, dict[str, Any]] = ({"grids": grids}, {})  # (grids.json, pixels by key) to write

    def __len__(self) -> int:
        return len(self.grids)

    @property
    def keys(self) -> list[str]:
        return [g["key"] for g in self.grids]

    def __getitem__(self, i: int) -> GridSample:
        g = self.grids[i]
        path = self.paths[i]
        if not path.is_file():
            raise DataError(f"{path}: grid image is missing (rerun with --overwrite to rebuild the grids)")
        return GridSample(path, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), classes=list(g["classes"]),
                          index=i, sources=list(g["sources"]), probs=list(g["probs"]))


def build_grids(root: str | Path, clf: Any, device: torch.device, *, classes: str = "any", images: str = "",
                grids: int = 50, min_prob: float = 0.6, seed: int = 0, reuse: int = 1,
                batch_size: int = 16) -> tuple[list[dict], int, dict[str, Any]]:
    """Classify the images of the ILSVRC-layout folder ``root`` alone (``images``: START:STOP of
    its sorted files; ``classes``: :func:`class_filter`) and choose ``grids`` grids of four
    (:func:`choose_grids`) among those the model gets right with probability at least ``min_prob``.
    Returns (the grids: key, source file names, classes, probabilities; how many images qualified;
    each grid's pixels, uint8 2S x 2S x 3, by key), nothing written."""
    from gfi.data.imagenet import ImageNetVal
    from gfi.data.images import ImageLoadError, load_image

    data = ImageNetVal(root)
    allowed = class_filter(classes, data.synsets)
    size = tuple(clf.input_size)
    candidates, cells = [], {}
    clf.to(device)
    pending: list[tuple[Any, Tensor]] = []

    def classify() -> None:
        """One forward for the pending cells (a batch of ``batch_size``)."""
        with torch.no_grad():
            scores = clf.scores(clf(torch.stack([c for _, c in pending]).to(device))).float().cpu()
        for (s, cell), p in zip(pending, scores, strict=True):
            prob = float(p[s.label])
            if int(p.argmax()) == s.label and prob >= min_prob:
                candidates.append({"name": s.path.name, "label": s.label, "prob": round(prob, 6)})
                cells[s.path.name] = cell
        pending.clear()

    for i in span(images, len(data)):
        try:
            s = data[i]
            if allowed is not None and s.label not in allowed:
                continue
            img = load_image(s.path)
        except (DataError, ImageLoadError) as exc:
            log.warning("grid: skipped %s", exc)
            continue
        pending.append((s, cell_image(clf, img)))
        if len(pending) >= batch_size:
            classify()
    if pending:
        classify()
    chosen = choose_grids(candidates, grids, seed, reuse)
    if not chosen:
        n_cls = len({c["label"] for c in candidates})
        raise DataError(f"no grid can be built from {root}: {len(candidates)} images of {n_cls} classes are "
                        f"classified correctly with p >= {min_prob} (a grid needs {CELLS} classes); lower "
                        "--min-prob or widen --classes / --images")
    if len(chosen) < grids:
        log.warning("grid: %d grids of the %d asked for (the confident images of distinct classes ran out)",
                    len(chosen), grids)
    root = str(Path(root).resolve())
    out, pixels_of = [], {}
    for n, cellset in enumerate(chosen):
        names = [c["name"] for c in cellset]
        digest = hashlib.sha1("|".join([root, f"{size[0]}x{size[1]}", *names]).encode()).hexdigest()[:10]
        key = f"grid{n:04d}_{digest}"
        top = torch.cat([cells[names[0]], cells[names[1]]], dim=2)
        bottom = torch.cat([cells[names[2]], cells[names[3]]], dim=2)
        pixels_of[key] = (torch.cat([top, bottom], dim=1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        out.append({"key": key, "sources": names, "classes": [c["label"] for c in cellset],
                    "probs": [c["prob"] for c in cellset]})
    return out, len(candidates), pixels_of
