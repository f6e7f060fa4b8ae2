"""Two names of one object (``gfi eval two-names``): what explaining two targets of one image together
does to their maps when both name the same object.

On a photo of one object, the model's top-1 and top-2 classes are mostly two names of that object
("tabby" and "tiger cat", two breeds of one dog). Each image's two classes are explained alone (one
call per class) and together (one call with both), the latter once per mode of GFI's ``joint``
setting (``--modes``; a method without the setting: once, as it explains several targets). Per
image and per map: ``mass``, the share of the map's positive mass inside the object's boxes (the
boxes of the image's label; chance is their area share, ``box_share``), and the two maps' cosine
similarity (as vectors of pixels); per mode, each map against its map alone (``identical``, the
largest absolute difference and the cosine similarity). A mode that treats the two names as two
objects pushes one map off the object the model classified; ``independent`` leaves both as they
are alone.

Only single objects are scored: an image whose label has more than ``--max-boxes`` boxes (default
1) or none is recorded as ``skipped`` and explains nothing. The top-1 alone is the loop's map (the
map store's); the top-2 alone and the joint maps are computed per batch and not cached (a rerun
resumes per image). Summary: means over the scored images, and each mode's differences from alone,
paired per image, with 95% intervals (1.96 standard errors).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from gfi.evaluation.experiment import EvalError, EvalRun, Experiment
from gfi.evaluation.grid import ci95
from gfi.settings import Settings, describe, setting

#: the metrics of a record paired against alone, by key in the summary
PAIRED = ("mass_top1", "mass_top2", "similarity")


@dataclass(frozen=True)
class TwoNamesOptions(Settings):
    """Options of ``gfi eval two-names``."""

    modes: str = setting("independent,contrastive,separate",
                         "comma list of the method's joint modes to explain the two classes together with "
                         "(GFI's joint setting; a method without it: explained together once)")
    max_boxes: int = setting(1, "score only images whose label has at most this many boxes (one object; 0: any "
                                "number)", low=0)


def box_mask(boxes: Tensor, height: int, width: int) -> Tensor:
    """(H, W) bool: the pixels inside any of the inclusive ``[xmin, ymin, xmax, ymax]`` ``boxes``."""
    b = boxes.reshape(-1, 4).float()
    ys, xs = torch.arange(height).float(), torch.arange(width).float()
    in_y = (ys[None, :] >= b[:, 1:2]) & (ys[None, :] <= b[:, 3:4])
    in_x = (xs[None, :] >= b[:, 0:1]) & (xs[None, :] <= b[:, 2:3])
    return (in_y[:, :, None] & in_x[:, None, :]).any(0)


def mass_inside(saliency: Tensor, mask: Tensor) -> float | None:
    """Share of the map's positive mass inside ``mask``; None for a map without mass."""
    m = saliency.detach().double().clamp(min=0)
    total = float(m.sum())
    return float(m[mask].sum()) / total if total > 0 else None


def cosine(a: Tensor, b: Tensor) -> float | None:
    """Cosine similarity of two maps as vectors of pixels; None when one has no mass."""
    a, b = a.detach().double().flatten(), b.detach().double().flatten()
    na, nb = float(a.norm()), float(b.norm())
    return float(a @ b) / (na * nb) if na > 0 and nb > 0 else None


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 6)


def mode_configs(run: EvalRun, modes_text: str) -> dict[str, Any]:
    """The method's settings for each mode of ``--modes``: the run's, with ``joint`` set (and the
    weights that mode does not read at their defaults, so that every mode is valid); a method
    without ``joint``: its settings once, as ``together``."""
    from gfi.evaluation.loop import method_config

    config, _ = method_config(run)
    modes = [m.strip() for m in modes_text.split(",") if m.strip()]
    if not modes:
        raise EvalError("--modes is empty; give e.g. independent,contrastive,separate")
    if "joint" not in type(config).names():
        return {"together": config}
    choices = next(i.choices for i in describe(type(config)) if i.name == "joint") or ()
    bad = [m for m in modes if m not in choices]
    if bad:
        raise EvalError(f"--modes {','.join(bad)}: not a joint mode of {run.method}; choose from {', '.join(choices)}")
    defaults = type(config)()
    terms: dict[str, tuple[str, ...]] = getattr(config, "JOINT_TERMS", {})
    weights = {w for read in terms.values() for w in read}
    return {mode: replace(config, joint=mode, **{w: getattr(defaults, w) for w in weights - set(terms.get(mode, ()))})
            for mode in dict.fromkeys(modes)}


class TwoNames(Experiment):
    name = "two-names"
    help = "the model's top-1 and top-2 on single objects, explained together (per joint mode) and alone"
    datasets = ("imagenet",)
    default_method = "gfi"
    needs_model = True
    options_class = TwoNamesOptions
    headline_keys = ("similarity_alone", "mass_top2_alone", "n_scored")

    def record_options(self, opts: TwoNamesOptions) -> dict:
        return {"two_names": {"modes": [m.strip() for m in opts.modes.split(",") if m.strip()],
                              "max_boxes": opts.max_boxes}}

    def check(self, run: EvalRun, opts: TwoNamesOptions, dataset: Any) -> None:
        super().check(run, opts, dataset)
        mode_configs(run, opts.modes)  # a bad --modes: one line before any work

    def _skip(self, sample: Any, opts: TwoNamesOptions) -> str | None:
        if not sample.classes:
            return "no label"
        n = len(sample.boxes_of(sample.label))
        if n == 0:
            return "no box of its label"
        if opts.max_boxes and n > opts.max_boxes:
            return f"{n} boxes of its label (--max-boxes {opts.max_boxes})"
        return None

    def targets(self, sample: Any, opts: TwoNamesOptions) -> list[int] | None:
        return [] if self._skip(sample, opts) else None  # the model's top-1; nothing for a skipped image

    def batch_extras(self, ctx: Any, samples: list, images: list[Tensor], x: Tensor | None,
                     targets: list[list[int]]) -> tuple[dict[int, dict], float]:
        from gfi.methods.registry import get_method

        rows = [j for j, t in enumerate(targets) if t]
        if not rows:
            return {}, 0.0
        if "explainers" not in ctx.cache:
            ctx.cache["explainers"] = {mode: get_method(ctx.run.method, ctx.clf, cfg, options=ctx.run_options)
                                       for mode, cfg in mode_configs(ctx.run, ctx.opts.modes).items()}
        xs = x[rows]
        with torch.no_grad():
            probs = ctx.clf.scores(ctx.clf(xs).float())
        top1 = [targets[j][0] for j in rows]
        second = probs.scatter(1, torch.tensor(top1, device=probs.device).view(-1, 1), float("-inf")).argmax(1)
        top2 = [int(c) for c in second]
        sizes = [tuple(images[j].shape[-2:]) for j in rows]
        t0 = time.perf_counter()
        alone2, _ = ctx.explain_now(ctx.explainer, xs, [[c] for c in top2], sizes)  # the run's own settings
        joint = {mode: ctx.explain_now(e, xs, [[a, b] for a, b in zip(top1, top2, strict=True)], sizes)[0]
                 for mode, e in ctx.cache["explainers"].items()}
        seconds = time.perf_counter() - t0
        out = {}
        for i, j in enumerate(rows):
            pair = [top1[i], top2[i]]
            out[j] = {"classes": pair, "probs": [float(probs[i, c]) for c in pair],
                      "alone_top2": alone2[i][top2[i]].clamp(0, 1),  # as the map store keeps the top-1's
                      "together": {mode: [maps[i][c].clamp(0, 1) for c in pair] for mode, maps in joint.items()}}
        return out, seconds

    def score(self, ctx: Any, sample: Any, image: Tensor, maps: dict[int, Tensor], j: int, extra: Any) -> dict:
        reason = self._skip(sample, ctx.opts)
        if reason is not None:
            return {"skipped": reason}
        e = extra[j]
        c1, c2 = e["classes"]
        inside = box_mask(sample.boxes_of(sample.label), *image.shape[-2:])
        alone = [maps[c1], e["alone_top2"]]
        rec: dict[str, Any] = {
            "label": sample.label, "classes": [c1, c2], "probs": [_round(p) for p in e["probs"]],
            "names": [ctx.clf.class_name(c) for c in (c1, c2)],
            "box_share": _round(float(inside.float().mean())),
            "alone": {"mass": [_round(mass_inside(m, inside)) for m in alone],
                      "similarity": _round(cosine(*alone))},
            "together": {}}
        for mode, pair in e["together"].items():
            rec["together"][mode] = {
                "mass": [_round(mass_inside(m, inside)) for m in pair], "similarity": _round(cosine(*pair)),
                "identical": [bool(torch.equal(m, a)) for m, a in zip(pair, alone, strict=True)],
                "max_diff": [float((m - a).abs().max()) for m, a in zip(pair, alone, strict=True)],
                "same_as_alone": [_round(cosine(m, a)) for m, a in zip(pair, alone, strict=True)]}
        return rec

    def summarize(self, records: list[dict], run: EvalRun, opts: TwoNamesOptions) -> dict:
        scored = [r for r in records if "skipped" not in r]
        out: dict[str, Any] = {"n_scored": len(scored), "n_skipped": len(records) - len(scored),
                               "max_boxes": opts.max_boxes}
        if not scored:
            return out

        def values(part: dict) -> dict[str, float | None]:
            return {"mass_top1": part["mass"][0], "mass_top2": part["mass"][1], "similarity": part["similarity"]}

        alone = [values(r["alone"]) for r in scored]
        out["alone"] = _means(alone)
        out["similarity_alone"], out["mass_top2_alone"] = out["alone"]["similarity"], out["alone"]["mass_top2"]
        out["n_top1_is_label"] = sum(1 for r in scored if r["classes"][0] == r["label"])
        out["n_top2_is_label"] = sum(1 for r in scored if r["classes"][1] == r["label"])
        out["box_share"] = _mean([r["box_share"] for r in scored])
        together: dict[str, Any] = {}
        for mode in scored[0]["together"]:
            rows = [r["together"][mode] for r in scored if mode in r["together"]]
            now = [values(p) for p in rows]
            paired = {}
            for key in PAIRED:
                diffs = [b[key] - a[key] for a, b in zip(alone, now, strict=True)
                         if a[key] is not None and b[key] is not None]
                paired[key] = {"difference": _mean(diffs), "ci95": ci95(diffs), "n": len(diffs)}
            together[mode] = {
                **_means(now),
                "min_mass_top2": min((v["mass_top2"] for v in now if v["mass_top2"] is not None), default=None),
                "minus_alone": paired,
                "n_identical_to_alone": sum(1 for p in rows if all(p["identical"])),
                "max_diff_from_alone": max(max(p["max_diff"]) for p in rows),
                "similarity_to_alone": _mean([s for p in rows for s in p["same_as_alone"] if s is not None])}
        out["together"] = together
        out["note"] = ("mass: share of each map's positive mass inside the label's boxes (top1, top2 = the model's "
                       "classes); similarity: cosine of the two maps; minus_alone: paired per image, ci95 = 1.96 "
                       "standard errors")
        return out

    def headline(self, summary: dict) -> str:
        s = summary
        parts = []
        if "alone" in s:
            a = s["alone"]
            parts.append(f"alone: similarity={_fmt(a['similarity'])} mass_top2={_fmt(a['mass_top2'])}")
        for mode, t in s.get("together", {}).items():
            d = t["minus_alone"]["mass_top2"]
            parts.append(f"{mode}: similarity={_fmt(t['similarity'])} mass_top2={_fmt(t['mass_top2'])} "
                         f"({_fmt(d['difference'], '+.3f')} vs alone) identical={t['n_identical_to_alone']}")
        return (f"{self.name} {s['method']} on {s['model']}: " + "; ".join(parts)
                + f" n_scored={s.get('n_scored')} skipped={s.get('n_skipped')} failed={s['n_failed']}")


def _mean(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return sum(vals) / len(vals) if vals else None


def _means(rows: list[dict[str, float | None]]) -> dict[str, float | None]:
    return {k: _mean([r[k] for r in rows]) for k in PAIRED}


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "n/a" if v is None else format(v, spec)
