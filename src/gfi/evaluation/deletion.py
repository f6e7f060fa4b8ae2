"""Deletion and insertion (Petsiuk et al. 2018, RISE, Sec. 4.2 there).

Pixels are ordered by the map (descending; ties by position) at the model's input size (the
cached map, at the image's size, resized bilinearly). In ``--steps`` equal steps the top
``round(k * H * W / steps)`` pixels are deleted (replaced by the ``--deletion-background``: ``zero``
= black in pixel space, the default; ``mean`` = ImageNet's mean colour, which is what RISE's code
gets from zeros in normalized space; ``blur``) or inserted into a blurred copy of the image (RISE:
Gaussian, kernel 11, sigma 5). The class score f_c (softmax, or sigmoid for ``--multilabel``) of
every step's image is computed in batches; the area under each curve by the trapezoid rule over
[0, 1] is ``deletion_auc`` (lower is better) and ``insertion_auc`` (higher is better).
The class is the ground-truth class where the dataset has one (``--target label``), else top-1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from gfi.evaluation.experiment import EvalRun, Experiment
from gfi.evaluation.metrics import step_masks, trapezoid_auc
from gfi.evaluation.plots import line_plot, mean
from gfi.masks.backgrounds import gaussian_blur, make_background
from gfi.settings import Settings, setting


def curves(clf, x, saliency, target: int, steps: int, deletion_background: str = "zero",
           batch: int = 64) -> tuple[list[float], list[float]]:
    """Deletion and insertion curves (``steps + 1`` scores each) for one model-size image ``x``
    (3, H, W) and a map ``saliency`` (H, W) at the same size."""
    masks = step_masks(saliency.to(x.device), steps)[:, None]  # (S+1, 1, H, W)
    xb = x[None]
    if deletion_background == "zero":
        removed = torch.zeros_like(xb)
    else:
        removed = make_background(xb, "blur" if deletion_background == "blur" else "mean")
    blurred = gaussian_blur(xb, 11, 5.0)
    out = []
    with torch.no_grad():
        for start, fill in ((xb, removed), (blurred, xb)):
            scores = []
            for s0 in range(0, masks.shape[0], batch):
                m = masks[s0:s0 + batch]
                imgs = torch.where(m, fill, start)
                scores.append(clf.scores(clf(imgs).float())[:, target])
            out.append(torch.cat(scores).cpu().tolist())
    return out[0], out[1]


@dataclass(frozen=True)
class DeletionOptions(Settings):
    """Options of ``gfi eval deletion``."""

    steps: int = setting(50, "steps of each curve", low=1)
    deletion_background: Literal["zero", "mean", "blur"] = setting("zero", "what deleted pixels become")
    target: Literal["label", "top1"] = setting(
        "label", "class: the ground truth where the data has it, or the model's top-1")
    step_batch: int = setting(64, "step images per forward", low=1)


class Deletion(Experiment):
    name = "deletion"
    help = "deletion / insertion areas (Petsiuk et al. 2018)"
    needs_model = True
    options_class = DeletionOptions
    headline_keys = ("deletion_auc", "insertion_auc")
    outputs = ("deletion_insertion.png",)

    def record_options(self, opts: DeletionOptions) -> dict:
        return {"steps": opts.steps, "deletion_background": opts.deletion_background, "target": opts.target}

    def batch_extras(self, ctx, samples, images, x, targets):
        return {"x": x}, 0.0

    def score(self, ctx, sample, image, maps, j, extra) -> dict:
        c, sal = next(iter(maps.items()))
        x = extra["x"][j]
        small = F.interpolate(sal[None, None].float(), size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
        d, i = curves(ctx.clf, x, small, c, ctx.opts.steps, ctx.opts.deletion_background, ctx.opts.step_batch)
        return {"class": c, "deletion_auc": trapezoid_auc(torch.tensor(d)),
                "insertion_auc": trapezoid_auc(torch.tensor(i)), "deletion_curve": d, "insertion_curve": i}

    def summarize(self, records, run: EvalRun, opts: DeletionOptions) -> dict:
        n = len(records[0]["deletion_curve"])
        xs = [k / (n - 1) for k in range(n)]
        del_mean = [mean(r["deletion_curve"][k] for r in records) for k in range(n)]
        ins_mean = [mean(r["insertion_curve"][k] for r in records) for k in range(n)]
        line_plot(run.out / "deletion_insertion.png", xs, {"deletion": del_mean, "insertion": ins_mean},
                  xlabel="fraction of pixels deleted / inserted", ylabel="class score (mean over images)",
                  title=f"{run.method} on {run.model}")
        return {"deletion_auc": mean(r["deletion_auc"] for r in records),
                "insertion_auc": mean(r["insertion_auc"] for r in records),
                "steps": opts.steps, "deletion_background": opts.deletion_background,
                "mean_curves": {"deletion": del_mean, "insertion": ins_mean}, "plot": "deletion_insertion.png"}
