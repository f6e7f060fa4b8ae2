"""The grid pointing game (Rao, Boehle, Schiele, CVPR 2022; Boehle et al., B-cos, CVPR 2022): is a
method's map for one class on the object of that class, and not on the others?

From an ILSVRC-layout folder, the images the model classifies correctly with probability at least
``--min-prob`` on their own are grouped by class; each grid takes four distinct classes (``dogs``:
four distinct dog breeds, ImageNet 151-268) and one unused image of each, seeded. A cell is the
whole image resized to the model's input size S (as :meth:`Classifier.prepare` does, quantised to
8 bits); the 2x2 grid, 2S x 2S, is written as a PNG to ``OUT/grids/`` (once the run holds the
folder's lock, through its list of the files gfi wrote: a file of the user's at a grid's name is
refused, never replaced) and is the model's input
as it is: the run's model is a copy of the classifier whose input size is doubled (a fully
convolutional model with global pooling, as every preset is, takes it). All four classes of a grid
are explained in one call (GFI: one stage 1, four stage-2 targets). What four targets explained
together mean is GFI's ``joint`` setting, recorded in the summary: ``independent`` by default (each
map as if its class were explained alone: the same information every other method has),
``--joint separate`` (the four classes are different objects: the masks' overlap term and the
contrastive start, the setting of the tables made before ``joint`` existed) or ``--joint contrastive``.

Per class: ``mass``, the share of the map's (positive) mass inside that class's cell (chance 0.25),
and ``hit``, whether its maximum is in the cell (tied maxima count by the share of them inside the
cell, so a map with four tied central maxima scores 0.25, not 1 for the first cell). A map with no
mass scores the cell's area share (0.25) on both and is marked ``empty``. Summary: the means over
all (grid, class) targets with 95% intervals over grids (the four targets of a grid share an
image, so the grid is the unit), and the same over targets for comparison.

The grids chosen are kept in ``OUT/grids.json`` with what they were made from; a rerun with the
same options reads it and does not classify the folder again.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gfi.data import grids as grid_data
from gfi.data.grids import CELLS, GridDataset, cell_boxes, class_filter
from gfi.data.samples import DataError, Sample
from gfi.evaluation.experiment import EvalError, EvalRun, Experiment
from gfi.settings import Settings, setting

log = logging.getLogger("gfi")

GRIDS_JSON = "grids.json"
GRID_DIR = "grids"


@dataclass(frozen=True)
class GridOptions(Settings):
    """Options of ``gfi eval grid``."""

    classes: str = setting("any", "classes of the cells: any, dogs (four distinct dog breeds, ImageNet 151-268), "
                                  "or a comma list of synsets (nXXXXXXXX) or class indices")
    grids: int = setting(50, "grids to build (fewer when the confident images run out)", low=1)
    min_prob: float = setting(0.6, "an image enters a grid when the model gives its label at least this "
                                   "probability (and its top-1) on its own", low=0.0, high=1.0)
    seed: int = setting(0, "seed of the grids' classes, images and cell order")
    images: str = setting("", "START:STOP of the folder's sorted images to build grids from, e.g. 0:150 (the "
                              "tuning half of the dev data) or 150:300 (the reporting half); empty: all")
    reuse: int = setting(1, "each image may be in up to this many grids (other partners, other cells), for "
                            "more grids from few images; the grids then share images, so intervals over "
                            "grids are narrower than independent grids would give", low=1)
    contrastive: float | None = setting(None, "give every method the grid's other three classes: class c's "
                                              "target is y_c - this value x the mean of the others' logits "
                                              "(gfi.targets.Contrastive); none: each class alone", low=0)


def cell_scores(saliency: Tensor, rtol: float = 1e-6) -> tuple[list[float], list[float], bool]:
    """(mass share, hit) of each cell of a (H, W) map, and whether the map is empty (no positive
    mass: both are the cells' area shares). Ties of the maximum (within ``rtol``) split the hit."""
    m = saliency.detach().float().clamp(min=0)
    h, w = m.shape[-2:]
    boxes = cell_boxes(h, w)
    area = [float((y1 - y0) * (x1 - x0)) / (h * w) for y0, y1, x0, x1 in boxes]
    total = float(m.sum())
    if not math.isfinite(total):
        raise ValueError(f"the map holds non-finite values ({total})")
    if total <= 0:
        return area, area, True
    top = m >= float(m.max()) * (1 - rtol)
    n_top = float(top.sum())
    mass = [float(m[y0:y1, x0:x1].sum()) / total for y0, y1, x0, x1 in boxes]
    hits = [float(top[y0:y1, x0:x1].sum()) / n_top for y0, y1, x0, x1 in boxes]
    return mass, hits, False


def doubled(clf: Any) -> Any:
    """A copy of ``clf`` sharing its model, whose input size is twice its own per side (its l0/l1
    resolved first, at its own size)."""
    inv, ch = clf.inversion_layer, clf.channel_layer
    big = clf.with_layers(inv, ch)
    big.input_size = (2 * clf.input_size[0], 2 * clf.input_size[1])
    return big


def build_grids(run: EvalRun, opts: GridOptions, clf: Any, device: torch.device) -> tuple[dict, dict[str, Any]]:
    """The contents of ``grids.json`` (the grids and what they were made from) and each grid's pixels
    by key (:func:`gfi.data.grids.build_grids` with the run's options), written later by
    :meth:`Grid.write_inputs`."""
    grids, n, pixels = grid_data.build_grids(run.data, clf, device, classes=opts.classes, images=opts.images,
                                             grids=opts.grids, min_prob=opts.min_prob, seed=opts.seed,
                                             reuse=opts.reuse, batch_size=run.batch_size)
    return {"made_from": made_from(run, opts, tuple(clf.input_size)), "n_candidates": n, "grids": grids}, pixels


def made_from(run: EvalRun, opts: GridOptions, size: tuple[int, ...]) -> dict:
    """What decides the grids (a ``grids.json`` made from other values is rebuilt)."""
    return {"data": str(Path(run.data).resolve()), "model": run.model, "weights": str(run.weights),
            "cell_size": list(size), "classes": opts.classes, "grids": opts.grids, "min_prob": opts.min_prob,
            "seed": opts.seed, "images": opts.images, **({"reuse": opts.reuse} if opts.reuse != 1 else {})}


def ci95(values: Sequence[float]) -> float | None:
    """1.96 standard errors of the mean (None for fewer than two values)."""
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    return 1.96 * math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


class Grid(Experiment):
    name = "grid"
    help = "grid pointing game: 2x2 grids of four classes, map mass and maximum in each class's cell"
    datasets = ("imagenet",)
    default_method = "gfi"
    options_class = GridOptions
    headline_keys = ("mass_share", "pointing")

    def record_options(self, opts: GridOptions) -> dict:
        return {"grid": opts.to_dict()}

    def headline(self, summary: dict) -> str:
        joint, beta = summary.get("joint"), summary.get("contrastive")
        return (super().headline(summary) + (f" joint={joint}" if joint else "")
                + (f" contrastive={beta:g}" if beta is not None else ""))

    def setup(self, run: EvalRun, opts: GridOptions, classifier: Any = None,
              info: dict | None = None) -> tuple[GridDataset, Any, dict | None]:
        from gfi.data.imagenet import read_synsets
        from gfi.models.device import choose_device
        from gfi.persist import check_folder

        if run.dataset not in ("auto", "imagenet"):
            raise EvalError(f"grid builds its grids from an ImageNet folder, not --dataset {run.dataset}")
        if not Path(run.data).is_dir():
            raise DataError(f"{run.data}: no such folder")
        synsets = read_synsets(Path(run.data) / "LOC_synset_mapping.txt")
        class_filter(opts.classes, synsets)  # a bad --classes: one line before any work
        if classifier is None:
            from gfi.models.loading import load_classifier

            classifier, info = load_classifier(run)
        check_folder(run.out)
        stored_file = run.out / GRIDS_JSON
        want = made_from(run, opts, tuple(classifier.input_size))
        stored, pixels = None, {}
        if stored_file.is_file() and not run.overwrite:  # whose it is: checked in write_inputs, under the lock
            try:
                stored = json.loads(stored_file.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                stored = None
        if not isinstance(stored, dict) or stored.get("made_from") != want:
            stored, pixels = build_grids(run, opts, classifier, choose_device(run.device))
        dataset = GridDataset(run.out / GRID_DIR, stored["grids"], synsets)
        dataset.pending = (stored, pixels)
        return dataset, doubled(classifier), info

    def write_inputs(self, run: EvalRun, dataset: GridDataset, manifest: Any) -> None:
        """``grids.json`` and the grid PNGs built by :meth:`setup` (none when a rerun read them): each
        written through ``manifest``, so a file of the user's at one of their names is refused. Grids
        read from an earlier run must be files gfi wrote."""
        from PIL import Image

        stored, pixels = dataset.pending
        if not pixels:
            manifest.check_free([run.out / GRIDS_JSON, *dataset.paths])
            missing = [p for p in dataset.paths if not p.is_file()]
            if not missing:
                return
            raise DataError(f"{missing[0]}: grid image is missing (rerun with --overwrite to rebuild the grids)")
        manifest.check_free([run.out / GRIDS_JSON, *dataset.paths])  # before the first is written
        dataset.folder.mkdir(parents=True, exist_ok=True)
        for path, key in zip(dataset.paths, dataset.keys, strict=True):
            manifest.write(path, lambda tmp, px=pixels[key]: Image.fromarray(px).save(tmp, format="PNG"))
        manifest.write_text(run.out / GRIDS_JSON, json.dumps(stored, indent=1))

    def targets(self, sample: Sample, opts: GridOptions) -> list[int]:
        return list(sample.classes)

    def target_key(self, opts: GridOptions) -> dict | None:
        if opts.contrastive is None:
            return None
        return {"contrastive": opts.contrastive, "others": "the other classes of the grid"}

    def method_targets(self, opts: GridOptions, classes: list[int]) -> list[Any] | None:
        """With ``contrastive``: each class against the grid's other three,
        :class:`gfi.targets.Contrastive` (``y_c - beta * mean`` of their logits)."""
        if opts.contrastive is None:
            return None
        from gfi.targets import Contrastive

        return [Contrastive(c, [o for o in classes if o != c], beta=opts.contrastive) for c in classes]

    def score(self, ctx: Any, sample: Sample, image: Tensor, maps: dict[int, Tensor], j: int, extra: Any) -> dict:
        targets = []
        for k, c in enumerate(sample.classes):
            mass, hits, empty = cell_scores(maps[c])
            targets.append({"class": c, "cell": k, "mass": round(mass[k], 6), "hit": round(hits[k], 6),
                            "empty": empty, "mass_by_cell": [round(v, 6) for v in mass]})
        probs = getattr(sample, "probs", [])
        return {"sources": getattr(sample, "sources", []), "probs": probs, "targets": targets}

    def summarize(self, records: list[dict], run: EvalRun, opts: GridOptions) -> dict:
        points = [t for r in records for t in r["targets"]]
        per_grid_mass = [sum(t["mass"] for t in r["targets"]) / len(r["targets"]) for r in records]
        per_grid_hit = [sum(t["hit"] for t in r["targets"]) / len(r["targets"]) for r in records]
        mass = [t["mass"] for t in points]
        hit = [t["hit"] for t in points]
        return {
            "joint": joint_mode(run),
            "contrastive": opts.contrastive,
            "information": ("each class alone" if opts.contrastive is None else
                            f"each class against the grid's other three: y_c - {opts.contrastive:g} x their mean "
                            "logit (targets.Contrastive)"),
            "mass_share": sum(mass) / len(mass),
            "mass_share_ci95": ci95(per_grid_mass),
            "pointing": sum(hit) / len(hit),
            "pointing_ci95": ci95(per_grid_hit),
            "ci95_note": "1.96 standard errors over grids (the four targets of a grid share an image); "
                         "*_ci95_targets: over targets",
            "mass_share_ci95_targets": ci95(mass),
            "pointing_ci95_targets": ci95(hit),
            "chance": 1 / CELLS,
            "n_grids": len(records),
            "n_targets": len(points),
            "n_empty": sum(1 for t in points if t["empty"]),
            "grids_requested": opts.grids,
            "classes": opts.classes,
            "images": opts.images,
            "min_prob": opts.min_prob,
            "seed": opts.seed,
            "reuse": opts.reuse,
            "n_source_images": len({name for r in records for name in r.get("sources", [])}),
        }


def joint_mode(run: EvalRun) -> str | None:
    """What several targets of one image meant to the run's method (GFI's ``joint``; None for a
    method without the setting, whose maps do not depend on the other targets)."""
    from gfi.evaluation.loop import method_config

    config, _ = method_config(run)
    return getattr(config, "joint", None)


def paired(a: Sequence[dict], b: Sequence[dict]) -> dict:
    """Paired differences ``a - b`` of two runs' lines (same grids): mass share and pointing per
    (grid, class), intervals over grids."""
    def by_target(recs: Sequence[dict]) -> dict[tuple[str, int], dict]:
        return {(r["key"], t["class"]): t for r in recs if "error" not in r for t in r["targets"]}

    ta, tb = by_target(a), by_target(b)
    common = sorted(set(ta) & set(tb))
    out: dict[str, Any] = {"n_targets": len(common), "n_grids": len({k for k, _ in common})}
    for key in ("mass", "hit"):
        diffs: dict[str, list[float]] = {}
        for g, c in common:
            diffs.setdefault(g, []).append(ta[(g, c)][key] - tb[(g, c)][key])
        per_grid = [sum(v) / len(v) for v in diffs.values()]
        flat = [d for v in diffs.values() for d in v]
        name = "mass_share" if key == "mass" else "pointing"
        out[name] = {"a": sum(ta[k][key] for k in common) / len(common) if common else None,
                     "b": sum(tb[k][key] for k in common) / len(common) if common else None,
                     "difference": sum(flat) / len(flat) if flat else None, "ci95": ci95(per_grid)}
    return out
