"""Pointing game (Sec. 4.3, Table 3; Zhang et al. 2016).

For every target class of an image (ImageNet: the ground-truth class; VOC: every class with an
object not marked difficult) the map's maximum is a hit when it lies inside a box of that class
(difficult boxes included). Accuracy is computed per category and averaged over the categories
(the paper's and Zhang et al.'s figure); the plain rate over all (image, class) pairs is reported
beside it.

``--protocol torchray`` makes the headline TorchRay's: a hit within 15 pixels (Euclidean distance
to a box) and, beside the full set, the difficult subset of Zhang et al.: (image, class) pairs
whose boxes cover less than a quarter of the image in an image holding another class. Both
protocols are recorded per image, so either summary comes from the same lines.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

from gfi.evaluation.experiment import EvalRun, Experiment
from gfi.evaluation.metrics import is_difficult_pointing, pointing_hit
from gfi.settings import Settings, setting

TORCHRAY_TOLERANCE = 15


def class_mean(points: list[dict], key: str) -> tuple[float | None, dict[int, float]]:
    per: dict[int, list[int]] = defaultdict(list)
    for p in points:
        per[p["class"]].append(p[key])
    rates = {c: sum(v) / len(v) for c, v in sorted(per.items())}
    return (sum(rates.values()) / len(rates) if rates else None), rates


@dataclass(frozen=True)
class PointingOptions(Settings):
    """Options of ``gfi eval pointing``."""

    protocol: Literal["paper", "torchray"] = setting(
        "paper", "headline: paper (inside a box) or torchray (within 15 px, plus the difficult subset)")


class Pointing(Experiment):
    name = "pointing"
    help = "pointing game accuracy (Sec. 4.3)"
    datasets = ("imagenet", "voc")
    options_class = PointingOptions
    headline_keys = ("accuracy",)

    def targets(self, sample, opts):
        return list(sample.classes)

    def score(self, ctx, sample, image, maps, j, extra) -> dict:
        h, w = image.shape[-2:]
        n_classes = len({int(c) for c in sample.labels})
        points = []
        for c in sample.classes:
            boxes = sample.boxes_of(c)
            points.append({"class": c, "hit": int(pointing_hit(maps[c], boxes)),
                           "hit_tol": int(pointing_hit(maps[c], boxes, TORCHRAY_TOLERANCE)),
                           "difficult": is_difficult_pointing(boxes, n_classes - 1, h, w)})
        return {"points": points}

    def summarize(self, records, run: EvalRun, opts: PointingOptions) -> dict:
        points = [p for r in records for p in r["points"]]
        paper, paper_per = class_mean(points, "hit")
        tray, tray_per = class_mean(points, "hit_tol")
        hard = [p for p in points if p["difficult"]]
        tray_hard, _ = class_mean(hard, "hit_tol")
        plain = sum(p["hit"] for p in points) / len(points)
        plain_tol = sum(p["hit_tol"] for p in points) / len(points)
        summary = {
            "protocol": opts.protocol,
            "accuracy": paper if opts.protocol == "paper" else tray,
            "accuracy_per_image": plain if opts.protocol == "paper" else plain_tol,
            "paper": {"accuracy": paper, "accuracy_per_image": plain, "per_class": paper_per},
            "torchray": {"tolerance_px": TORCHRAY_TOLERANCE, "accuracy": tray, "accuracy_per_image": plain_tol,
                         "accuracy_difficult": tray_hard, "n_difficult": len(hard), "per_class": tray_per},
            "n_points": len(points),
            "accuracy_per_image_ci95": 1.96 * (plain * (1 - plain) / len(points)) ** 0.5,
        }
        return summary
