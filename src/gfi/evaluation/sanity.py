"""Model-randomisation sanity check (Adebayo et al. 2018, cascading randomisation).

The parameterised modules of the model (those holding weights themselves), taken from the
output backwards, are re-initialised one more at a time (``reset_parameters()``, seeded; a
BatchNorm's running statistics are reset too): level k has the top k modules random. The map of
the same class (ground truth, else the trained model's top-1) is computed on every level's
network and compared with the trained network's map at the image's size by Spearman's rank
correlation (average ranks for ties) and SSIM (7x7 uniform window, data range 1). A method that
passes shows correlations that fall as more layers are randomised. Randomised maps are not
cached; each level keeps its own copy of the model.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from gfi.evaluation.experiment import EvalRun, Experiment
from gfi.evaluation.metrics import spearman, ssim
from gfi.evaluation.plots import line_plot, mean
from gfi.models.classifier import Classifier
from gfi.settings import Settings, setting


def parameterised_modules(model: nn.Module) -> list[str]:
    """Names of modules holding parameters themselves, last (closest to the output) first."""
    names = [n for n, m in model.named_modules() if n and any(True for _ in m.parameters(recurse=False))]
    return names[::-1]


def cascade(clf: Classifier, levels: int, seed: int = 0) -> list[tuple[str, Classifier]]:
    """``levels`` classifiers, the k-th with the top k parameterised modules re-initialised."""
    names = parameterised_modules(clf.model)[:levels]
    model = copy.deepcopy(clf.model)
    out = []
    for k, name in enumerate(names, 1):
        module = model.get_submodule(name)
        g = torch.random.fork_rng(devices=[])
        with g:
            torch.manual_seed(seed + k)
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            else:
                for p in module.parameters(recurse=False):
                    nn.init.normal_(p, std=0.02)
            if hasattr(module, "reset_running_stats"):
                module.reset_running_stats()
        snap = copy.deepcopy(model).eval()
        rand = Classifier(snap, mean=clf.mean.flatten().tolist(), std=clf.std.flatten().tolist(),
                          input_size=clf.input_size, class_names=clf.class_names,
                          inversion_layer=clf.inversion_layer, channel_layer=clf.channel_layer,
                          multilabel=clf.multilabel, name=f"{clf.name}-random-top{k}")
        out.append((name, rand.to(clf.device)))
    return out


@dataclass(frozen=True)
class SanityOptions(Settings):
    """Options of ``gfi eval sanity``."""

    levels: int = setting(4, "randomise the top 1..N parameterised modules, cumulatively", low=1)
    target: Literal["label", "top1"] = setting(
        "label", "class: the ground truth where the data has it, or the trained model's top-1")
    seed: int = setting(0, "seed of the re-initialisation")


class Sanity(Experiment):
    name = "sanity"
    help = "cascading model randomisation (Adebayo et al. 2018)"
    needs_model = True
    options_class = SanityOptions
    headline_keys = ("spearman", "ssim")
    outputs = ("sanity.png",)

    def record_options(self, opts: SanityOptions) -> dict:
        return {"levels": opts.levels, "target": opts.target, "seed": opts.seed}

    def batch_extras(self, ctx, samples, images, x, targets):
        if "levels" not in ctx.cache:
            ctx.cache["levels"] = [(name, ctx.make_explainer(c))
                                   for name, c in cascade(ctx.clf, ctx.opts.levels, ctx.opts.seed)]
        t0 = time.perf_counter()
        sizes = [tuple(img.shape[-2:]) for img in images]
        maps = [(name, ctx.explain_now(ex, x, targets, sizes)[0]) for name, ex in ctx.cache["levels"]]
        return maps, time.perf_counter() - t0

    def score(self, ctx, sample, image, maps, j, extra) -> dict:
        c, trained = next(iter(maps.items()))
        levels = []
        for name, level_maps in extra:
            m = level_maps[j][c]
            levels.append({"layer": name, "spearman": spearman(trained, m), "ssim": ssim(trained, m)})
        return {"class": c, "levels": levels}

    def summarize(self, records, run: EvalRun, opts: SanityOptions) -> dict:
        n = len(records[0]["levels"])
        per = []
        for k in range(n):
            sp = [r["levels"][k]["spearman"] for r in records]
            per.append({"level": k + 1, "layer": records[0]["levels"][k]["layer"], "spearman": mean(sp),
                        "ssim": mean(r["levels"][k]["ssim"] for r in records),
                        "n_constant": sum(1 for v in sp if v != v)})
        line_plot(run.out / "sanity.png", [p["level"] for p in per],
                  {"Spearman": [p["spearman"] for p in per], "SSIM": [p["ssim"] for p in per]},
                  xlabel="top modules randomised", ylabel="similarity to the trained map",
                  title=f"{run.method} on {run.model}")
        return {"spearman": per[-1]["spearman"], "ssim": per[-1]["ssim"], "levels": per, "plot": "sanity.png"}
