"""What a folder job (``gfi explain``, :func:`gfi.explain_folder`) writes for one image: overlays,
``.npy`` maps and report thumbnails at the image's own size, and the image's record for
``results.json``."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from gfi.data.samples import safe_stem
from gfi.viz.report import format_prob

log = logging.getLogger(__name__)

#: the method whose overlays carry no method tag in their names
DEFAULT_METHOD = "gfi"


@dataclass(frozen=True)
class OutputSettings:
    """The options that shape the files (they are part of the run's arguments)."""

    save_npy: bool = False
    cmap: str = "jet"
    colorbar: bool = False
    max_side: int = 4096
    method_tag: str = ""  # in overlay names: "" for the default method (gfi), else the method's name


def method_tag(method: str) -> str:
    """The tag in the overlay names of ``method``'s maps: none for the default method, else its name."""
    return "" if method == DEFAULT_METHOD else method


def overlay_name(stem: str, cls: int | str, tag: str = "") -> str:
    """``STEM_CLASS.png`` for the default method, ``STEM_METHOD_CLASS.png`` for another (so the
    overlays of two methods never share a name). ``.npy`` maps keep ``STEM_CLASS.npy``, the map
    store's name. ``cls``: the target's key (:func:`gfi.folder.targets.target_key`: a class index,
    or e.g. ``logit-243``)."""
    return f"{stem}_{tag}_{cls}.png" if tag else f"{stem}_{cls}.png"


def input_thumb(stem: str) -> str:
    """The report's thumbnail of the input: ``thumbs/STEM_input.jpg``. Every output name of an image
    is its stem, then (overlays of a method other than gfi) the run's ``_TAG``, then ``_X`` and a
    suffix, where ``X`` is a target's key (a class index, or e.g. ``logit-243``), ``input`` or
    ``stage1``: none has a ``_`` and the tag is
    the same for every image, so the stem is what comes before them, and images with different
    stems never share an output name (``a.png`` with class 243 and ``a_243.jpg``
    included; the input's thumbnail was ``thumbs/STEM.jpg``, which could)."""
    return f"thumbs/{stem}_input.jpg"


def planned_files(stem: str, classes: list[int | str], stage1: bool, save_npy: bool, tag: str = "") -> list[str]:
    """Every file the outputs of one image will have, relative to the output folder (``classes``:
    its targets' keys)."""
    names = ([input_thumb(stem)] + [f"thumbs/{stem}_{c}.jpg" for c in classes]
             + [overlay_name(stem, c, tag) for c in classes])
    if stage1:
        names += [f"thumbs/{stem}_stage1.jpg"] + ([f"{stem}_stage1.npy"] if save_npy else [])
    if save_npy:
        names += [f"{stem}_{c}.npy" for c in classes]
    return names


def _short(name: str) -> str:
    """A class's first name ("Italian greyhound" of "Italian greyhound"; "tabby" of "tabby, tabby cat")."""
    return name.split(",")[0].strip() or name


def _finite(v: float, what: str, where: str) -> float | None:
    if math.isfinite(v):
        return v
    log.warning("%s: %s is %s; it is written as null", where, what, v)
    return None


class ImageWriter:
    """Writes one image's outputs into a :class:`gfi.runs.RunFolder` and returns its record."""

    def __init__(self, run, clf, settings: OutputSettings, method: str = "gfi", explainer=None) -> None:
        self.run, self.clf, self.settings, self.method = run, clf, settings, method
        self.explainer = explainer  # what the evidence check's advice reads (its settings)

    def _evidence_line(self, path: Path, name: str, t: dict, problem: str) -> str:
        """The one warning line of a map that fails the evidence check: the image, the class, what is
        wrong (with the two scores) and what to try (:func:`gfi.evidence.advice`)."""
        from gfi.evidence import PROBLEMS, advice

        ev = t["evidence"]
        what = PROBLEMS[problem]
        if problem == "kept_below_removed":
            p = "score" if t.get("target") else "p"  # a target's own score need not be a probability
            what += f" ({p} kept {format_prob(ev['prob_kept'])} < {p} removed {format_prob(ev['prob_removed'])})"
        elif t.get("collapsed"):
            what = "the map collapsed (all weights zero); it is written as zeros and holds none of the class's evidence"
        who = _short(name) if not t.get("target") else t.get("spec") or t["target"]
        return f"{path}, {who}: {what}; {advice(self.explainer, problem, None if t.get('target') else t.get('prob'))}"

    def _save(self, stem: str, name: str, write) -> str:
        return self.run.save(name, write, key=stem)

    def write(self, path: Path, image: torch.Tensor, e, row: int, probs: torch.Tensor, seconds: float,
              batch_images: int = 1, checked=None, keys: list[str] | None = None,
              specs: list[str | None] | None = None) -> dict:
        """Outputs of row ``row`` of the explanation ``e`` for ``image`` (its own size); ``seconds`` is
        the batch's time per image, ``batch_images`` how many images the batch explained together;
        ``checked`` the :class:`gfi.evidence.Evidence` of ``e`` (each target's record then carries
        its ``evidence``, and a map that fails is one warning line with what to try); ``keys`` the
        targets' keys in the output names (default: their class indices); ``specs`` each target's
        spec as the user gave it, when it is not a class (recorded as ``spec``)."""
        import numpy as np

        from gfi.viz.overlay import to_original_size
        from gfi.viz.report import thumbnail

        stem, s = safe_stem(path), self.settings
        size = tuple(image.shape[-2:])
        rec = self._image_record(path, size, probs, seconds)
        rec["batch_images"] = int(batch_images)
        rec["thumb_input"] = self._save(stem, input_thumb(stem), lambda p: p.write_bytes(thumbnail(image)))
        stage1 = to_original_size(e.get("stage1_map")[row], size) if e.get("stage1_map") is not None else None
        if stage1 is not None:
            rec["stage1_collapsed"] = bool(e.stage1_collapsed[row])
            rec["thumb_stage1"] = self._save(stem, f"thumbs/{stem}_stage1.jpg",
                                             lambda p: p.write_bytes(thumbnail(image, stage1, cmap=s.cmap)))
            if s.save_npy:
                rec["stage1_npy"] = self._save(stem, f"{stem}_stage1.npy",
                                               lambda p: np.save(p, stage1.numpy().astype(np.float32)))
        maps = to_original_size(e.maps[row], size)
        for k in range(e.targets.shape[1]):
            key = keys[k] if keys is not None else str(int(e.targets[row, k]))
            spec = specs[k] if specs is not None else None
            rec["targets"].append(self._target(path, stem, image, stage1, maps[k], e, row, k, checked, key, spec))
        return rec

    def _image_record(self, path: Path, size: tuple[int, int], probs: torch.Tensor | None, seconds: float) -> dict:
        """The image's record; ``probs`` None for a model without one score per class (segmentation,
        detection): no ``top5`` then."""
        rec = {"image": str(path), "status": "ok", "size": list(size), "seconds_per_image": round(seconds, 3),
               "top5": [] if probs is None else [
                   {"class": int(i), "class_name": self.clf.class_name(int(i)), "prob": round(float(probs[i]), 5)}
                   for i in probs.topk(min(5, probs.numel())).indices],
               "targets": []}
        if max(size) >= self.settings.max_side:  # reduced on reading (--max-side): say from what
            from gfi.data.images import image_size

            rec["original_size"] = list(image_size(path))
        return rec

    def _target(self, path, stem, image, stage1, m, e, row: int, k: int, checked=None, key: str = "",
                spec: str | None = None) -> dict:
        """The files and the record entry of target ``k`` (``key``: its part of the file names). A
        target that is not a plain class index is recorded with its description (``target``)."""
        import numpy as np

        from gfi.viz.overlay import save_explanation_figure
        from gfi.viz.report import thumbnail

        s = self.settings
        c = int(e.targets[row, k])
        key = key or str(c)
        described = e.target_descriptions[row][k] if e.target_descriptions is not None else None
        plain = key == str(c)  # a class index, or --contrastive's classes: named by the class
        name = self.clf.class_name(c) if c >= 0 else described
        where = f"{path}, class {name}" if plain else f"{path}, target {described}"
        t = {"class": c if c >= 0 else None, "class_name": name if c >= 0 else None,
             "prob": _finite(float(e.probs[row, k]), "the score", where)}
        if described is not None and described != f"class:{c}":
            t["target"] = described
        if spec:
            t["spec"] = spec
        if e.get("prob_kept") is not None:
            t.update(prob_kept=_finite(float(e.prob_kept[row, k]), "the score of the kept image", where),
                     prob_removed=_finite(float(e.prob_removed[row, k]), "the score of the removed image", where))
        if any(t.get(f) is None for f in ("prob", "prob_kept", "prob_removed") if f in t):
            t["nonfinite"] = True
        if not torch.isfinite(m).all():  # never written as NaN: zeros, flagged
            log.warning("%s: the map has NaN or inf; it is written as zeros and flagged", where)
            m = torch.zeros_like(m)
            t["nonfinite"] = True
        if e.collapsed is not None:
            t["collapsed"] = bool(e.collapsed[row, k])
        if checked is not None:
            t["evidence"] = checked.record(row, k)
            if not t["evidence"]["holds"]:
                log.warning("%s", self._evidence_line(path, name, t, checked.problem(row, k)))
        elif t.get("collapsed"):
            log.warning("%s: the map collapsed (all weights zero); it is written as zeros", where)
        shown = f"{name.split(',')[0]} ({c})" if c >= 0 else described
        if not plain and c >= 0:
            shown += f", {described}"
        title = f"{self.method}: {shown}, {'p' if plain and 'target' not in t else 'score'}={format_prob(t['prob'])}"
        t["overlay"] = self._save(stem, overlay_name(stem, key, s.method_tag), lambda p: save_explanation_figure(
            p, image, stage1, m, title, cmap=s.cmap, colorbar=s.colorbar))
        t["thumb"] = self._save(stem, f"thumbs/{stem}_{key}.jpg",
                                lambda p: p.write_bytes(thumbnail(image, m, cmap=s.cmap)))
        if s.save_npy:
            t["npy"] = self._save(stem, f"{stem}_{key}.npy", lambda p: np.save(p, m.numpy().astype(np.float32)))
        return t
