"""Explanations of adversarial inputs (Sec. 4.1.3, Fig. 4).

FGSM (Goodfellow et al. 2015) on the true class at the model's input size:
``x_adv = clip(x + epsilon * sign(d L / d x), 0, 1)`` with ``L = -log f_c(x)`` (the cross-entropy
for a softmax model; ``-log sigmoid`` for ``--multilabel``), ``epsilon`` in pixel units of [0, 1].
The map of the true class on ``x_adv`` is brought to the image's size and scored by the pointing
game against the true class's boxes (``accuracy``); the clean image's map (cached, shared with
``gfi eval pointing``) gives ``accuracy_clean``. ``prediction_changed`` is how often the attack
changed the top-1 class, ``fooled`` how often a correct clean prediction became wrong.
The adversarial maps are not cached (they depend on epsilon).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from gfi.evaluation.experiment import EvalRun, Experiment
from gfi.evaluation.metrics import pointing_hit
from gfi.evaluation.plots import mean
from gfi.models.layers import frozen
from gfi.settings import Settings, setting


def fgsm(clf, x, targets: torch.Tensor, epsilon: float) -> torch.Tensor:
    """One signed-gradient step raising ``-log f_c`` of each image's class ``targets`` (B,)."""
    with frozen(clf.model), torch.enable_grad():
        xr = x.detach().clone().requires_grad_(True)
        scores = clf.scores(clf(xr).float()).gather(1, targets.view(-1, 1))
        loss = -torch.log(scores.clamp_min(1e-12)).sum()
        (grad,) = torch.autograd.grad(loss, xr)
    return (x + epsilon * grad.sign()).clamp(0, 1).detach()


@dataclass(frozen=True)
class AdversarialOptions(Settings):
    """Options of ``gfi eval adversarial``."""

    epsilon: float = setting(2 / 255, "FGSM step in pixel units of [0, 1] (2/255)", low=0, high=1)


class Adversarial(Experiment):
    name = "adversarial"
    help = "pointing on FGSM adversarial images (Sec. 4.1.3)"
    needs_model = True
    datasets = ("imagenet", "voc")
    options_class = AdversarialOptions
    headline_keys = ("accuracy", "prediction_changed")

    def record_options(self, opts: AdversarialOptions) -> dict:
        return {"epsilon": opts.epsilon}

    def batch_extras(self, ctx, samples, images, x, targets):
        t0 = time.perf_counter()
        clf = ctx.clf
        y = torch.tensor([t[0] for t in targets], device=x.device)
        x_adv = fgsm(clf, x, y, ctx.opts.epsilon)
        with torch.no_grad():
            pred = clf(x).argmax(-1).tolist()
            logits_adv = clf(x_adv).float()
            pred_adv = logits_adv.argmax(-1).tolist()
            prob_adv = clf.scores(logits_adv).gather(1, y.view(-1, 1))[:, 0].tolist()
        maps, _ = ctx.explain_now(ctx.explainer, x_adv, [t[:1] for t in targets],
                                  [tuple(img.shape[-2:]) for img in images])
        return {"maps": maps, "pred": pred, "pred_adv": pred_adv, "prob_adv": prob_adv}, time.perf_counter() - t0

    def score(self, ctx, sample, image, maps, j, extra) -> dict:
        c = sample.classes[0]
        boxes = sample.boxes_of(c)
        return {"class": c, "hit": int(pointing_hit(extra["maps"][j][c], boxes)),
                "hit_clean": int(pointing_hit(maps[c], boxes)),
                "pred": extra["pred"][j], "pred_adv": extra["pred_adv"][j], "prob_adv": extra["prob_adv"][j]}

    def summarize(self, records, run: EvalRun, opts: AdversarialOptions) -> dict:
        return {"accuracy": mean(r["hit"] for r in records),
                "accuracy_clean": mean(r["hit_clean"] for r in records),
                "prediction_changed": mean(int(r["pred"] != r["pred_adv"]) for r in records),
                "fooled": mean(int(r["pred"] == r["class"] and r["pred_adv"] != r["class"]) for r in records),
                "clean_top1_correct": mean(int(r["pred"] == r["class"]) for r in records),
                "epsilon": opts.epsilon}
