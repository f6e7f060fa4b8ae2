"""Salient-object detection with GFI's stage 1 (Sec. 4.4.2, Fig. 8).

The map of the model's top-1 class (for ``gfi-stage1``, the default method, the class-agnostic
inversion map) is binarized at twice its mean (Achanta et al. 2009); precision, recall, F-beta
(beta^2 = 0.3) and the MAE of the continuous map against the binary mask are computed per image
and **averaged over images** (the headline keys). The set-level figures (true positives summed
over all images before dividing) are reported beside them as ``*_set``. The precision-recall
curve uses fixed thresholds 0, 0.01, ..., 1 on the map; per-image precision and recall are
averaged at each threshold, and ``f_beta_max`` is the largest F-beta on that mean curve
(the usual "max F"). An image with no predicted pixel has precision 0.
"""

from __future__ import annotations

import json

import torch

from gfi.data.samples import DataError
from gfi.data.sod import read_mask
from gfi.evaluation.experiment import EvalRun, Experiment
from gfi.evaluation.metrics import PR_THRESHOLDS, f_beta, pr_counts, saliency_scores
from gfi.evaluation.plots import line_plot, mean
from gfi.persist import atomic_write_text


class Saliency(Experiment):
    name = "saliency"
    help = "salient-object F-beta, MAE and PR curve (Sec. 4.4.2)"
    default_method = "gfi-stage1"
    datasets = ("sod",)
    headline_keys = ("f_beta", "precision", "recall", "mae")
    outputs = ("pr_curve.json", "pr_curve.png")

    def targets(self, sample, opts):
        return None

    def score(self, ctx, sample, image, maps, j, extra) -> dict:
        gt = read_mask(sample.mask_path)
        if tuple(gt.shape) != tuple(image.shape[-2:]):
            raise DataError(f"{sample.mask_path}: mask is {gt.shape[1]}x{gt.shape[0]}, its image "
                            f"{sample.path.name} is {image.shape[-1]}x{image.shape[-2]}")
        sal = next(iter(maps.values()))
        s = saliency_scores(sal, gt)
        pred = sal >= 2 * sal.mean()
        tp, npred, _ = pr_counts(sal, gt)
        return {**s, "tp": int((pred & gt).sum()), "pred": int(pred.sum()), "gt": int(gt.sum()),
                "pr_tp": tp.tolist(), "pr_pred": npred.tolist()}

    def summarize(self, records, run: EvalRun, opts) -> dict:
        summary = {k: mean(r[k] for r in records) for k in ("f_beta", "precision", "recall", "mae")}
        tp, pred, gt = (sum(r[k] for r in records) for k in ("tp", "pred", "gt"))
        p_set, r_set = tp / max(pred, 1), tp / max(gt, 1)
        summary.update(averaging="per image (headline); *_set: counts summed over the set",
                       precision_set=p_set, recall_set=r_set, f_beta_set=float(f_beta(p_set, r_set)))
        tps = torch.tensor([r["pr_tp"] for r in records], dtype=torch.float64)
        preds = torch.tensor([r["pr_pred"] for r in records], dtype=torch.float64)
        gts = torch.tensor([r["gt"] for r in records], dtype=torch.float64)[:, None]
        prec = torch.where(preds > 0, tps / preds.clamp_min(1), torch.zeros_like(tps)).mean(0)
        rec = (tps / gts.clamp_min(1)).mean(0)
        fb = f_beta(prec, rec)
        curve = {"thresholds": list(PR_THRESHOLDS), "precision": prec.tolist(), "recall": rec.tolist(),
                 "f_beta": fb.tolist()}
        atomic_write_text(run.out / "pr_curve.json", json.dumps(curve))
        line_plot(run.out / "pr_curve.png", curve["recall"], {run.method: curve["precision"]}, xlabel="recall",
                  ylabel="precision", title=f"{run.method} on {run.model} (thresholds 0..1)")
        i = int(fb.argmax())
        summary.update(f_beta_max=float(fb[i]), f_beta_max_threshold=PR_THRESHOLDS[i],
                       pr_curve="pr_curve.json", plot="pr_curve.png")
        return summary
